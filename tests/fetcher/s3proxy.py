"""An HTTP proxy on 127.0.0.1 in front of the simulator's S3: slows or damages chosen day files.

The fetcher talks to it as to the bucket (MASSIVE_S3_ENDPOINT); requests go through unchanged
(SigV4 signs the Host header, which is passed on as sent), and object bodies come back whole,
slowly (`slow`, seconds per download) or with bytes flipped in the middle (`damage`, keys whose
bodies keep their length but no longer decompress). `downloads` records each object GET as it
starts: (key, the client's port), so a test can find the process that is downloading.
"""

from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit


class S3Proxy:
    def __init__(self, upstream: str, *, slow: float = 0.0, damage: tuple[str, ...] = ()) -> None:
        self.upstream = urlsplit(upstream)
        self.slow = slow
        self.damage = set(damage)
        self.downloads: list[tuple[str, int]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy._forward(self, "GET")

            def do_HEAD(self) -> None:
                proxy._forward(self, "HEAD")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> S3Proxy:
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _forward(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        key = urlsplit(handler.path).path.lstrip("/").partition("/")[2]
        is_object = method == "GET" and key.endswith(".csv.gz")
        if is_object:
            self.downloads.append((key, handler.client_address[1]))
        upstream = http.client.HTTPConnection(
            self.upstream.hostname or "127.0.0.1", self.upstream.port, timeout=60
        )
        try:
            upstream.request(method, handler.path, headers=dict(handler.headers.items()))
            response = upstream.getresponse()
            body = response.read()
        finally:
            upstream.close()
        if is_object and response.status == 200 and key in self.damage:
            middle = len(body) // 2
            body = (
                body[:middle]
                + bytes(b ^ 0x5A for b in body[middle : middle + 4096])
                + body[middle + 4096 :]
            )
        handler.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if method == "HEAD":
            return
        if not (is_object and self.slow):
            handler.wfile.write(body)
            return
        pieces = 20
        step = max(1, len(body) // pieces + 1)
        for start in range(0, len(body), step):
            handler.wfile.write(body[start : start + step])
            handler.wfile.flush()
            time.sleep(self.slow / pieces)
