"""A WSGI app on werkzeug's threaded server in a background thread, logging no request lines.

The simulator's REST API and its S3 gateway both serve this way; request lines are never logged
because they can carry credentials (`apiKey=` on REST, presigned S3 URLs).
"""

from __future__ import annotations

import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class BackgroundServer:
    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        name: str,
        handler: type[WSGIRequestHandler] = WSGIRequestHandler,
    ) -> None:
        class Quiet(handler):  # type: ignore[valid-type,misc]
            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                pass

        self.server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=Quiet
        )
        self.port = self.server.server_port
        self._thread = threading.Thread(target=self.server.serve_forever, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
