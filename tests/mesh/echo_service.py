"""A minimal service for runtime tests: counts its commands and echoes arguments back."""

from __future__ import annotations

import sys
import time
from typing import Any

from mesh.config import Config
from mesh.service import Service, run_service, setup_logging


class EchoService(Service):
    name = "echo"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.echoes = 0

    def counters(self) -> dict[str, Any]:
        return {"echoes": self.echoes}

    def cmd_echo(self, text: str) -> str:
        self.echoes += 1
        return text

    def cmd_fail(self) -> None:
        raise ValueError("asked to fail")

    def cmd_hog(self, seconds: float) -> str:
        """Holds the event loop, as a service busy with a firehose does between awaits."""
        time.sleep(seconds)
        return "done"


if __name__ == "__main__":
    setup_logging()
    sys.exit(run_service(EchoService(Config.load())))
