"""Garbage quotes on `md.quote.stocks` while a paper session runs: crossed, empty and NaN quotes
are left out, and one quote stamped far in the future does not make every later quote late
(which would stop the session's bars for good); the session goes on, its numbers finite."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest

from mesh import topics
from mesh.client import Publisher
from mesh.schema import QuoteBatch
from tests.meshproc import Mesh, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

YEAR_2099 = 4_070_908_800 * 10**9


def _batch(rows: list[tuple[int, float, float]]) -> QuoteBatch:
    k = len(rows)
    return QuoteBatch(
        symbol=["AAPL"] * k,
        bid_price=[r[1] for r in rows],
        bid_size=[300] * k,
        ask_price=[r[2] for r in rows],
        ask_size=[200] * k,
        bid_exchange=[11] * k,
        ask_exchange=[12] * k,
        condition=[0] * k,
        tape=[3] * k,
        sequence=list(range(k)),
        ts_event=[r[0] for r in rows],
        ts_recv=[r[0] for r in rows],
    )


def _session(mesh: Mesh) -> dict[str, Any]:
    return mesh.call("strategy", "status")["sessions"][0]


def test_garbage_quotes_are_left_out_and_the_session_goes_on(tmp_path: Path) -> None:
    with Mesh(tmp_path / "data") as mesh:
        mesh.start("bus")
        mesh.wait_up(["bus"], 20)
        mesh.start("recorder")
        mesh.start("strategy")
        mesh.wait_up(["recorder", "strategy"], 60)
        pub = Publisher("feed", config=mesh.config)
        mid = 100.0

        def quote(extra: list[tuple[int, float, float]] | None = None) -> None:
            nonlocal mid
            mid += 0.01 if int(time.time() * 10) % 3 else -0.02
            rows = [(time.time_ns(), mid - 0.01, mid + 0.01), *(extra or [])]
            pub.publish(topics.quotes(), _batch(rows))
            time.sleep(0.05)

        try:
            for _ in range(20):
                quote()
            mesh.call(
                "strategy", "start", name="hostile", strategy="ma-crossover",
                params={"fast": 2, "slow": 3}, symbols=["AAPL"], timeout=15,
            )  # fmt: skip
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                quote()
            now = time.time_ns()
            quote([(now, 101.0, 100.0), (now, 0.0, 100.0), (YEAR_2099, 99.0, 99.1)])
            quote([(now, math.nan, 100.0)])
            bars = _session(mesh)["bars"]
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                quote()
            wait_for(lambda: _session(mesh)["bars"] >= bars + 2, 10, 0.2, "bars after garbage")
        finally:
            pub.close()
        session = _session(mesh)
        assert session["state"] == "running" and session["late_quotes"] == 0
        assert all(math.isfinite(session[k]) for k in ("cash", "equity"))
        assert mesh.call("strategy", "counters")["ahead_quotes"] >= 1
