"""No remote code through the control channel: the backtester service (a real `massive run
backtester` on a real bus) runs built-ins and files inside MESH_STRATEGY_PATH only; everything
else is refused with one line before it is imported. The local CLI still runs the user's code."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mesh import cli, client
from mesh.backtest.errors import StrategyError
from mesh.backtest.strategy_path import StrategyPath, strategy_dirs
from mesh.bus import Bus
from mesh.config import Config
from mesh.control import ControlError
from tests.backtest.helpers import write_history
from tests.meshproc import Proc, wait_for

GOOD = textwrap.dedent('''
    import numpy as np

    def above_open(bars, margin: float = 0.0):
        """Long while the close is above the open.

        margin: how far above, as a fraction of the open
        """
        return (bars.close > bars.open * (1 + margin)).astype(float)
''')


def marking(marker: Path) -> str:
    """A strategy module that leaves `marker` behind the moment it is imported or called."""
    return textwrap.dedent(f"""
        from pathlib import Path

        Path({str(marker)!r}).write_text("imported")

        def f(bars):
            Path({str(marker)!r}).write_text("called")
            return [0.0] * len(bars)
    """)


@dataclass(frozen=True)
class Layout:
    """strats/ is MESH_STRATEGY_PATH; outside/ is on PYTHONPATH but not in it."""

    strats: Path
    outside: Path
    markers: Path

    def marker(self, name: str) -> Path:
        return self.markers / name


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    strats, outside, markers = tmp_path / "strats", tmp_path / "outside", tmp_path / "markers"
    for folder in (strats, outside, markers, strats / "sub"):
        folder.mkdir()
    (strats / "mine.py").write_text(GOOD)
    (strats / "sub" / "deep.py").write_text(GOOD)
    (strats / "loud.py").write_text(marking(markers / "loud"))  # inside, but marks when loaded
    (outside / "evil.py").write_text(marking(markers / "evil"))
    (outside / "evil_mod.py").write_text(marking(markers / "evil_mod"))
    (strats / "link.py").symlink_to(outside / "evil.py")
    return Layout(strats, outside, markers)


@pytest.fixture
def backtester(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str], layout: Layout
) -> Iterator[Proc]:
    write_history(mesh_config.data_dir, "daily", n=120)
    env = {
        **mesh_environ,
        "MESH_STRATEGY_PATH": str(layout.strats),
        "PYTHONPATH": str(layout.outside),
    }
    proc = Proc(env, "backtester")
    try:
        wait_for(lambda: _answers(mesh_config), 30, 0.1, "the backtester to answer ping")
        yield proc
    finally:
        proc.stop()


def _answers(config: Config) -> bool:
    try:
        return client.call("backtester", "ping", config=config, timeout=0.5) == "pong"
    except ControlError:
        return False


def run(config: Config, strategy: str | list[str], **args: Any) -> Any:
    return client.call(
        "backtester",
        "run",
        {"dataset": "daily", "strategy": strategy, "save": False, **args},
        config=config,
        timeout=10,
    )


def finished(config: Config, job_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = next(
            j for j in client.call("backtester", "jobs", config=config) if j["job_id"] == job_id
        )
        return job if job["state"] not in ("queued", "running") else None

    return wait_for(done, 20, 0.05, f"job {job_id} to finish")  # type: ignore[no-any-return]


def test_code_outside_the_strategy_path_is_refused_over_the_control_channel_and_never_runs(
    backtester: Proc, mesh_config: Config, layout: Layout
) -> None:
    evil = layout.outside / "evil.py"
    references = [
        "os:system",
        "subprocess:call",
        "builtins:eval",
        "evil_mod:f",  # importable (it is on the service's PYTHONPATH), but not in the path
        "evil:f",
        f"{evil}:f",  # an absolute path elsewhere
        "../outside/evil.py:f",  # climbs out of the directory
        f"{layout.strats}/../outside/evil.py:f",
        "link.py:f",  # a symlink inside that points outside
        "link:f",
        "os.path:join",
        "mine:os.system",
        "x" * 5000 + ".py:f",
        ["mine:above_open", "loud:f", "os:system"],  # one bad reference: nothing is loaded
    ]
    for reference in references:
        with pytest.raises(ControlError) as refused:
            run(mesh_config, reference)
        message = str(refused.value)
        assert "refused" in message and "MESH_STRATEGY_PATH" in message, message
        assert str(layout.strats) in message and "\n" not in message
    time.sleep(0.3)  # anything loaded in the background would have written its marker by now
    assert sorted(p.name for p in layout.markers.iterdir()) == []
    assert client.call("backtester", "jobs", config=mesh_config) == []
    assert backtester.alive and _answers(mesh_config)


def test_a_strategy_file_inside_the_strategy_path_runs_over_the_service(
    backtester: Proc, mesh_config: Config, layout: Layout
) -> None:
    reply = run(
        mesh_config,
        ["buy-and-hold", "mine:above_open", "mine.py:above_open", "sub/deep.py:above_open"],
        params={"margin": 0.001},
    )
    job = finished(mesh_config, reply["job_id"])
    assert job["state"] == "done", job["error"]
    result = client.call("backtester", "result", {"job_id": reply["job_id"]}, config=mesh_config)
    labels = [r["label"] for r in result["runs"]]
    assert labels == [
        "buy-and-hold",
        "mine:above_open margin=0.001",
        "mine.py:above_open margin=0.001",
        "sub/deep.py:above_open margin=0.001",
    ]
    assert result["runs"][1]["metrics"] == result["runs"][2]["metrics"]
    assert result["runs"][1]["metrics"]["trades"] > 0
    # loading a file inside the path runs it: the marker proves the other test's refusals meant it
    loud = run(mesh_config, "loud:f")
    assert finished(mesh_config, loud["job_id"])["state"] == "done"
    assert layout.marker("loud").read_text() == "called"


def test_the_service_refuses_to_start_on_a_strategy_path_that_is_not_a_directory(
    mesh_environ: dict[str, str], tmp_path: Path
) -> None:
    proc = Proc({**mesh_environ, "MESH_STRATEGY_PATH": str(tmp_path / "nowhere")}, "backtester")
    assert proc.proc.wait(30) == 2
    proc.stop()
    assert f"MESH_STRATEGY_PATH entry '{tmp_path / 'nowhere'}' is not a directory" in proc.output()
    assert "Traceback" not in proc.output()


def test_without_a_strategy_path_only_built_ins_load(layout: Layout, tmp_path: Path) -> None:
    nothing = StrategyPath.from_environ({}, cwd=tmp_path)
    assert nothing.dirs == () and nothing.load("bh").name == "buy-and-hold"
    with pytest.raises(
        StrategyError, match=r"'mine.py:above_open' refused: .*MESH_STRATEGY_PATH \(not set\)"
    ):
        nothing.load("mine.py:above_open")
    with pytest.raises(StrategyError, match=r"unknown strategy 'moon'.*MESH_STRATEGY_PATH"):
        nothing.load("moon")
    env = {"MESH_STRATEGY_PATH": os.pathsep.join(["", "strats", str(layout.strats)])}
    assert strategy_dirs(env, cwd=tmp_path) == (layout.strats.resolve(),)
    assert (
        StrategyPath.from_environ(env, cwd=tmp_path).load("mine:above_open").params[0].name
        == "margin"
    )


def test_the_local_cli_still_runs_the_users_own_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    for key in ("MESH_DATA_DIR", "MASSIVE_API_KEY", "MESH_STRATEGY_PATH"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MESH_DATA_DIR", str(root))
    monkeypatch.chdir(tmp_path)
    write_history(root, "daily", n=120)
    (tmp_path / "my_local_strats.py").write_text(GOOD)
    try:
        argv = [
            "backtest",
            "daily",
            "-s",
            "my_local_strats:above_open",
            "-s",
            "./my_local_strats.py:above_open",
        ]
        assert cli.main([*argv, "--json", "--no-save"]) == 0
    finally:
        sys.modules.pop("my_local_strats", None)
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [r["strategy"] for r in runs] == [
        "my_local_strats:above_open",
        "./my_local_strats.py:above_open",
    ]
    assert runs[0]["metrics"] == runs[1]["metrics"] and runs[0]["metrics"]["trades"] > 0
