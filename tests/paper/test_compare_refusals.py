"""`massive paper compare` of a session it cannot compare: one line naming why, a non-zero exit,
no traceback, and nothing read outside the paper folder."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from mesh.paper.session import Record, Spec, State
from tests.meshproc import massive

T = 1_796_400_000 * 10**9


def _session(paper: Path, name: str, state: State) -> None:
    folder = paper / name
    folder.mkdir(parents=True)
    spec = Spec(name=name, strategy="ma-crossover", params={}, symbols=["AAPL"])
    record = Record(
        spec=spec, state=state, recording=f"paper-{name}", first_ts={"AAPL": T}, last_ts={"AAPL": T}
    )
    (folder / "session.json").write_bytes(msgspec.json.encode(record))


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("nope", "no paper session 'nope'"),
        ("live", "still running"),
        ("gone", "not a recording"),
        ("x" * 5000, "names are 1-48 letters"),
        ("../outside", "names are 1-48 letters"),
    ],
    ids=["unknown", "running", "recording-deleted", "long-name", "path-traversal"],
)
def test_compare_of_a_session_it_cannot_compare_is_one_line(
    tmp_path: Path, name: str, says: str
) -> None:
    data = tmp_path / "data"
    _session(data / "paper", "live", State.RUNNING)
    _session(data / "paper", "gone", State.STOPPED)
    _session(data, "outside", State.STOPPED)  # a session beside the paper folder
    done = massive({**os.environ, "MESH_DATA_DIR": str(data)}, "paper", "compare", name)
    assert done.returncode != 0
    assert says in done.stderr and "Traceback" not in done.stderr + done.stdout
    assert len(done.stderr.strip().splitlines()) == 1
