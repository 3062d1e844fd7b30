"""`sim`: a local Massive-compatible server (WebSocket feed, REST API, S3 flat files).

With no MASSIVE_API_KEY every service talks to it instead of Massive. `massive run sim` runs it
as a mesh service (`mesh.sim.service`); tests start `mesh.sim.server.SimServer` in-process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mesh.config import Config
    from mesh.sim.server import SimServer

__all__ = ["SimServer", "main"]


def main(config: Config, argv: list[str] | None = None) -> int:
    """Entry point of `massive run sim`."""
    from mesh.sim.service import main as run

    return run(config, argv)


def __getattr__(name: str) -> object:
    if name == "SimServer":
        from mesh.sim.server import SimServer

        return SimServer
    raise AttributeError(name)
