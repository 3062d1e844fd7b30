"""The mesh the paper-trading suites run: bus, the sim at 10x from 10:00 ET, recorder, strategy
service and ingest of quotes, with quotes reaching the strategy service."""

from __future__ import annotations

from tests.meshproc import Mesh, wait_for

SYMBOLS = "AAPL,MSFT,SPY"


def start_paper_mesh(mesh: Mesh) -> None:
    mesh.point_at_sim()
    mesh.start("bus")
    mesh.wait_up(["bus"], 20)
    mesh.start(
        "sim", *mesh.sim_args("--at", "2026-12-04T10:00", "--speed", "10", "--symbols", SYMBOLS)
    )
    mesh.start("recorder")
    mesh.start("strategy")
    mesh.wait_up(["sim", "recorder", "strategy"], 60)
    mesh.start("ingest", "--subscriptions", "Q.*")
    wait_for(lambda: mesh.call("strategy", "counters").get("quotes", 0) > 0, 60, 0.3, "quotes")
