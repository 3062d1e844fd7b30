"""Hostile `start`/`stop` requests to the strategy service over its control channel: each is
answered with one line and the service serves on; starts of one name at once make one session."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from mesh.control import ControlError
from tests.meshproc import Mesh

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

BAD_STARTS: list[dict[str, Any]] = [
    {"name": "a", "strategy": "ma-crossover", "params": [1], "symbols": ["AAPL"]},
    {"name": "a", "strategy": "ma-crossover", "symbols": [["AAPL"]]},
    {"name": "a", "strategy": "ma-crossover", "symbols": ["AAPL"] * 50_000},
    {"name": "a", "strategy": "ma-crossover", "symbols": ["AAPL"], "cash": [1]},
    {"name": "a", "strategy": "ma-crossover", "symbols": ["AAPL"], "cash": "nan"},
    {"name": ["a"], "strategy": "ma-crossover", "symbols": ["AAPL"]},
    {"name": "../../x", "strategy": "ma-crossover", "symbols": ["AAPL"]},
    {"name": "a\x00", "strategy": "ma-crossover", "symbols": ["AAPL"]},
    {"name": "a" * 10_000, "strategy": "ma-crossover", "symbols": ["AAPL"]},
    {"name": "a", "strategy": "os:system", "symbols": ["AAPL"]},
    {"name": "a", "strategy": "/etc/passwd:x", "symbols": ["AAPL"]},
]


def test_hostile_requests_get_one_line_and_one_name_makes_one_session(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Mesh(data) as mesh:
        mesh.start("bus")
        mesh.wait_up(["bus"], 20)
        mesh.start("recorder")
        proc = mesh.start("strategy")
        mesh.wait_up(["recorder", "strategy"], 60)
        for args in BAD_STARTS:
            with pytest.raises(ControlError) as refused:
                mesh.call("strategy", "start", timeout=10, **args)
            assert "\n" not in str(refused.value) and len(str(refused.value)) < 400
        for name in (["x"], {"a": 1}, 5, "x" * 10_000):
            with pytest.raises(ControlError, match="no running paper session"):
                mesh.call("strategy", "stop", name=name)

        mesh.call("recorder", "start", name="rec", symbols=["AAPL"], timeout=10)
        answers: list[str] = []

        def start() -> None:
            try:
                mesh.call(
                    "strategy", "start", name="dup", strategy="ma-crossover",
                    symbols=["AAPL"], timeout=15,
                )  # fmt: skip
                answers.append("started")
            except ControlError as exc:
                answers.append(str(exc))

        threads = [threading.Thread(target=start) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers.count("started") == 1
        assert all("already" in a for a in answers if a != "started"), answers
        sessions = mesh.call("strategy", "status")["sessions"]
        assert [(s["name"], s["state"]) for s in sessions] == [("dup", "running")]
        assert mesh.call("strategy", "ping") == "pong"
        assert "Traceback" not in proc.output()
    assert sorted(p.name for p in (data / "paper").iterdir()) == ["dup"]
