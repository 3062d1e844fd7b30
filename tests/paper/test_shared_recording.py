"""Two paper sessions on one recording: the one that started it stopping first leaves it running
for the other, and the last of them to stop stops it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.meshproc import Mesh, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_the_recording_a_session_started_outlives_it_while_another_session_records_into_it(
    tmp_path: Path,
) -> None:
    with Mesh(tmp_path / "data") as mesh:
        mesh.start("bus")
        mesh.wait_up(["bus"], 20)
        mesh.start("recorder")
        mesh.start("strategy")
        mesh.wait_up(["recorder", "strategy"], 60)
        for name in ("first", "second"):
            mesh.call(
                "strategy", "start", name=name, strategy="ma-crossover",
                symbols=["AAPL"], timeout=15,
            )  # fmt: skip
        assert mesh.session()["state"] == "recording"
        assert mesh.session()["session"] == "paper-first"

        mesh.call("strategy", "stop", name="first", timeout=15)
        assert mesh.session()["state"] == "recording"  # the second session still records into it

        mesh.call("strategy", "stop", name="second", timeout=15)
        wait_for(lambda: mesh.session().get("state") == "stopped", 30, 0.3, "the recording to stop")
