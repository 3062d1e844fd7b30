"""A restart of the strategy service over damaged session folders skips each one with a line in
its log, resumes the sound ones and serves: a FIFO for `session.json` or the journal, a file that is not JSON or holds
the wrong types, a journal of fills no book could make, a session folder that is a link or holds another
folder's session."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from mesh.paper.session import Record, Spec
from tests.meshproc import Mesh, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

T = 1_796_400_000 * 10**9


def _running(folder: Path, name: str) -> None:
    folder.mkdir(parents=True)
    spec = Spec(name=name, strategy="ma-crossover", params={}, symbols=["AAPL"])
    record = Record(spec=spec, started_ns=T, recording=f"paper-{name}")
    (folder / "session.json").write_bytes(msgspec.json.encode(record))


def test_a_restart_over_damaged_sessions_skips_each_and_serves(tmp_path: Path) -> None:
    data = tmp_path / "data"
    paper = data / "paper"
    _running(paper / "fifojson", "fifojson")
    (paper / "fifojson" / "session.json").unlink()
    os.mkfifo(paper / "fifojson" / "session.json")
    _running(paper / "fifojournal", "fifojournal")
    os.mkfifo(paper / "fifojournal" / "journal.jsonl")
    (paper / "notjson").mkdir()
    (paper / "notjson" / "session.json").write_bytes(b"\x00{not json")
    (paper / "types").mkdir()
    (paper / "types" / "session.json").write_bytes(
        b'{"spec": {"name": "../../x", "strategy": "ma-crossover", "params": {}, '
        b'"symbols": ["AAPL"], "cash": 1e999}, "state": "running"}'
    )
    _running(paper / "hostile", "hostile")
    huge = f'["fill","hostile","AAPL",1,1e308,1e308,1.0,0.0,{T},1e308,0.0]'
    (paper / "hostile" / "journal.jsonl").write_text(f'{huge}\n["fill","hostile","AA')
    _running(paper / "good", "good")
    _running(paper / "renamed", "good")  # a copy of good's folder under another name
    outside = tmp_path / "outside"
    _running(outside / "linked", "linked")
    (paper / "linked").symlink_to(outside / "linked")
    before = sorted(p.name for p in (outside / "linked").iterdir())

    with Mesh(data) as mesh:
        mesh.start("bus")
        mesh.wait_up(["bus"], 20)
        proc = mesh.start("strategy")
        mesh.wait_up(["strategy"], 30)
        sessions = mesh.call("strategy", "status")["sessions"]
        assert [(s["name"], s["state"]) for s in sessions] == [("good", "running")]
        for name in ("fifojson", "fifojournal", "notjson", "types", "hostile", "linked", "renamed"):
            wait_for(lambda name=name: f"/paper/{name}" in proc.output(), 10, 0.2, name)
        assert "holds fills no book could have made" in proc.output()
        assert "Traceback" not in proc.output()
        assert mesh.call("strategy", "ping")
    assert sorted(p.name for p in (outside / "linked").iterdir()) == before
