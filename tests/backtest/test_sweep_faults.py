"""Sweeps under faults: a worker process killed mid-sweep (process pool and Dask cluster) and
Ctrl-C to the command, then --resume: the results are those of an undisturbed run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh import cli
from mesh.backtest import sweep as sweeps
from mesh.backtest.errors import BacktestError
from mesh.backtest.runner import Options
from tests.backtest.sweep_helpers import (
    cmdline,
    descendants,
    pause,
    pool_workers,
    results,
    spec,
    sweep_ids,
    user_strategy,
)

GRID = ["fast=5,10,20,40", "slow=30,60"]


def reference(root: Path) -> sweeps.Sweep:
    """The same sweep run serially in this process, undisturbed."""
    s = sweeps.new_sweep(
        "mins", [user_strategy(root)], GRID, Options(), root, per_symbol=True, no_save=True
    )
    return sweeps.run_sweep(s, workers=1)


def rows(s: sweeps.Sweep) -> list[dict]:
    return [s.rows[i] for i in range(s.total)]


@pytest.fixture
def dask_client() -> Iterator[object]:
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.mark.timeout(240)
def test_a_pool_worker_killed_mid_sweep_changes_nothing_in_the_results(
    root: Path,
) -> None:
    expected = rows(reference(root))
    pause(root, 0.2)  # runs long enough to be killed in the middle of one
    killed: list[int] = []

    def kill_one(s: sweeps.Sweep, index: int) -> None:
        if s.done == 3 and not killed:
            workers = pool_workers()
            assert workers, "no pool worker found"
            os.kill(workers[0], signal.SIGKILL)
            killed.append(workers[0])
            pause(root, None)  # the rest may go fast

    s = sweeps.new_sweep("mins", [user_strategy(root)], GRID, Options(), root, per_symbol=True)
    sweeps.run_sweep(s, workers=2, on_result=kill_one)
    assert killed and not Path(f"/proc/{killed[0]}").exists()
    assert (s.state, s.done, s.total) == ("done", 24, 24)
    assert rows(s) == expected
    assert results(root, s.sweep_id).to_pylist() == expected


@pytest.mark.timeout(240)
def test_a_dask_worker_killed_mid_sweep_changes_nothing_in_the_results(
    root: Path,
    dask_client: object,
) -> None:
    client = dask_client
    expected = rows(reference(root))
    pause(root, 0.2)
    killed: list[int] = []

    def kill_one(s: sweeps.Sweep, index: int) -> None:
        if s.done == 3 and not killed:
            pids = client.run(os.getpid)  # type: ignore[attr-defined]
            victim = sorted(pids.values())[0]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
            pause(root, None)

    address = client.scheduler.address  # type: ignore[attr-defined]
    s = sweeps.new_sweep("mins", [user_strategy(root)], GRID, Options(), root, per_symbol=True)
    sweeps.run_sweep(s, cluster=address, on_result=kill_one)
    assert killed
    assert (s.state, s.done, s.total) == ("done", 24, 24)
    assert rows(s) == expected
    assert results(root, s.sweep_id).to_pylist() == expected


@pytest.mark.timeout(240)
def test_ctrl_c_keeps_the_finished_runs_and_resume_finishes_the_same_table(
    root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["-s", user_strategy(root), "-p", GRID[0], "-p", GRID[1], "--per-symbol", "--top", "3"]
    # the undisturbed run, for comparison
    assert cli.main(["backtest", "mins", *argv, "--workers", "1"]) == 0
    undisturbed_out = capsys.readouterr().out
    (undisturbed,) = sweep_ids(root)

    pause(root, 0.4)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mesh.cli", "backtest", "mins", *argv, "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        sweep_id = None
        while time.monotonic() < deadline and proc.poll() is None:
            fresh = [i for i in sweep_ids(root) if i != undisturbed]
            if fresh and (root / "sweeps" / fresh[0] / "results.parquet").exists():
                sweep_id = fresh[0]
                if spec(root, sweep_id)["done"] >= 2:
                    break
            time.sleep(0.05)
        assert sweep_id and proc.poll() is None, "the sweep did not get going"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"resume with: massive backtest --resume {sweep_id}" in lines[0]
    saved = spec(root, sweep_id)
    assert saved["state"] == "interrupted" and 2 <= saved["done"] < saved["total"] == 24
    partial = results(root, sweep_id).to_pylist()
    assert len(partial) == saved["done"]
    assert not (root / "backtests").exists() or len(list((root / "backtests").iterdir())) == 3

    pause(root, None)
    assert cli.main(["backtest", "--resume", sweep_id, "--workers", "2"]) == 0
    resumed_out = capsys.readouterr().out
    assert spec(root, sweep_id)["state"] == "done"
    finished = results(root, sweep_id)
    assert finished.equals(results(root, undisturbed))
    # the rows saved before Ctrl-C are kept as they were
    assert finished.to_pylist()[: len(partial)] != [] and all(
        row in finished.to_pylist() for row in partial
    )
    # the same best-runs table
    table = resumed_out.split("\n\n")[0]
    assert table == undisturbed_out.split("\n\n")[0] and "best 3 of 24 runs" in table
    assert json.loads((root / "sweeps" / sweep_id / "sweep.json").read_text())["top"]


KILLER = '''
import os
import signal

import numpy as np


def crash(bars, fast: int = 5):
    """Kills its own process for fast=10.

    fast: a number
    """
    if fast == 10:
        os.kill(os.getpid(), signal.SIGKILL)
    return np.ones(len(bars.close))
'''


def test_a_run_that_kills_its_worker_every_time_fails_the_sweep_in_one_line(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (root.parent / "strats" / "killer.py").write_text(KILLER)
    strategy = f"{root.parent / 'strats' / 'killer.py'}:crash"
    argv = ["backtest", "mins", "-s", strategy, "-p", "fast=5,10,20", "--workers", "2"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "run 1 (" in err[0] and "fast=10 on portfolio) stopped the sweep" in err[0]
    # how many times it is retried depends on which runs shared the pool when it broke
    assert re.search(
        r"stopped the sweep: it killed its worker process \d+ times; 2 of 3 runs saved", err[0]
    ), err
    # the runs beside it finished: only the one that kills its worker is missing
    (sweep_id,) = sweep_ids(root)
    saved = spec(root, sweep_id)
    assert saved["state"] == "failed" and saved["done"] == 2
    assert [r["fast"] for r in results(root, sweep_id).to_pylist()] == [5, 20]


CLUSTER = """
import time
from distributed import LocalCluster

cluster = LocalCluster(
    n_workers=1,
    threads_per_worker=1,
    processes=False,
    protocol="tcp://",
    host="127.0.0.1",
    dashboard_address="127.0.0.1:0",
)
print(cluster.scheduler_address, flush=True)
time.sleep(300)
"""


@pytest.mark.timeout(240)
def test_a_scheduler_lost_mid_sweep_is_one_line_and_resume_finishes_it(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("distributed")
    expected = rows(reference(root))
    # a whole Dask cluster in one process of its own, so that one kill takes it all down
    cluster = subprocess.Popen(
        [sys.executable, "-c", CLUSTER],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        address = cluster.stdout.readline().strip()  # type: ignore[union-attr]
        assert address.startswith("tcp://127.0.0.1:")
        pause(root, 0.2)

        def kill_cluster(s: sweeps.Sweep, index: int) -> None:
            if s.done == 2:
                cluster.kill()
                pause(root, None)

        s = sweeps.new_sweep("mins", [user_strategy(root)], GRID, Options(), root, per_symbol=True)
        with pytest.raises(BacktestError) as stopped:
            sweeps.run_sweep(s, cluster=address, on_result=kill_cluster)
    finally:
        cluster.kill()
        cluster.wait()
    message = str(stopped.value)
    assert f"lost the Dask scheduler at {address}" in message
    assert f"resume with: massive backtest --resume {s.sweep_id}" in message
    saved = spec(root, s.sweep_id)
    assert saved["state"] == "failed" and 2 <= saved["done"] < 24
    assert results(root, s.sweep_id).to_pylist() == [r for r in expected if r["run"] in s.rows]

    assert cli.main(["backtest", "--resume", s.sweep_id, "--workers", "1"]) == 0
    assert spec(root, s.sweep_id)["state"] == "done"
    assert results(root, s.sweep_id).to_pylist() == expected


def test_a_sweep_runs_in_one_process_at_a_time(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import fcntl

    def interrupt(s: sweeps.Sweep, index: int) -> None:
        if s.done == 2:
            raise KeyboardInterrupt

    s = sweeps.new_sweep("mins", [user_strategy(root)], GRID, Options(), root, per_symbol=True)
    with pytest.raises(sweeps.SweepInterrupted):
        sweeps.run_sweep(s, workers=1, on_result=interrupt)
    assert spec(root, s.sweep_id)["state"] == "interrupted"

    with open(root / "sweeps" / s.sweep_id / ".lock", "a") as held:  # as another process would
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert cli.main(["backtest", "--resume", s.sweep_id, "--workers", "1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"sweep {s.sweep_id} is running in another process" in err[0]
        assert spec(root, s.sweep_id)["state"] == "interrupted"
    assert cli.main(["backtest", "--resume", s.sweep_id, "--workers", "1"]) == 0
    assert spec(root, s.sweep_id)["done"] == 24


SAVE_KILLER = '''
import os
import signal
import sys
from pathlib import Path

from mesh.backtest import indicators


def cross(bars, fast: int = 5, slow: int = 30):
    """A moving-average cross whose process dies while one of its best runs is saved, as many
    times as the file `kills` beside it says (each death takes one off).

    fast: bars in the fast average
    slow: bars in the slow average
    """
    frame = sys._getframe()
    while frame is not None and frame.f_code.co_name != "save_run":
        frame = frame.f_back
    kills = Path(__file__).with_name("kills")
    if frame is not None and kills.exists():
        left = int(kills.read_text())
        if left > 0:  # written whole (replaced), as two workers may read it at once
            spare = kills.with_name(f"kills.{os.getpid()}")
            spare.write_text(str(left - 1))
            os.replace(spare, kills)
            os.kill(os.getpid(), signal.SIGKILL)
    return (indicators.sma(bars.close, fast) > indicators.sma(bars.close, slow)).astype(float)
'''


def _saved_tops(root: Path, sweep_id: str) -> list[dict]:
    import pyarrow.parquet as pq

    tops = []
    for top in spec(root, sweep_id)["top"]:
        folder = Path(top["run_dir"])
        tables = {n: pq.read_table(folder / n) for n in ("equity.parquet", "trades.parquet")}
        tops.append({"run": top["run"], **tables})
    return tops


@pytest.mark.timeout(180)
def test_a_pool_worker_killed_while_the_best_runs_are_saved_changes_nothing(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (root.parent / "strats" / "savekill.py").write_text(SAVE_KILLER)
    strategy = f"{root.parent / 'strats' / 'savekill.py'}:cross"
    argv = ["backtest", "mins", "-s", strategy, "-p", "fast=5,10,20,40", "--top", "3"]
    assert cli.main([*argv, "--workers", "1"]) == 0
    serial_out = capsys.readouterr().out
    (root.parent / "strats" / "kills").write_text("1")
    assert cli.main([*argv, "--workers", "2"]) == 0
    out, err = capsys.readouterr()
    assert (root.parent / "strats" / "kills").read_text() == "0"  # a worker did die
    assert "Traceback" not in err
    serial_id, pool_id = sweep_ids(root)
    assert results(root, pool_id).equals(results(root, serial_id))
    # the best runs' folders are all there, the same as the serial command's
    serial_tops, pool_tops = _saved_tops(root, serial_id), _saved_tops(root, pool_id)
    assert len(pool_tops) == 3
    for a, b in zip(serial_tops, pool_tops, strict=True):
        assert a["run"] == b["run"]
        assert a["equity.parquet"].equals(b["equity.parquet"])
        assert a["trades.parquet"].equals(b["trades.parquet"])
    assert out.split("\n\n")[0] == serial_out.split("\n\n")[0]


@pytest.mark.timeout(180)
def test_a_best_run_that_kills_its_worker_every_time_it_is_saved_is_one_line(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (root.parent / "strats" / "savekill.py").write_text(SAVE_KILLER)
    (root.parent / "strats" / "kills").write_text("1000")
    strategy = f"{root.parent / 'strats' / 'savekill.py'}:cross"
    argv = ["backtest", "mins", "-s", strategy, "-p", "fast=5,10,20", "--workers", "2"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "the best runs were not saved" in err[0] and "--resume" in err[0], err
    # the sweep's rows are kept: a resume saves the best runs
    (sweep_id,) = sweep_ids(root)
    assert spec(root, sweep_id)["done"] == 3
    (root.parent / "strats" / "kills").write_text("0")
    assert cli.main(["backtest", "--resume", sweep_id, "--workers", "2"]) == 0
    assert len(spec(root, sweep_id)["top"]) == 3


@pytest.mark.timeout(180)
def test_ctrl_c_while_the_pool_starts_is_one_line(root: Path) -> None:
    """Ctrl-C at the terminal reaches the command's fork server too, while it is still importing
    and reading the dataset: only the command's own line is shown."""
    argv = ["backtest", "mins", "-s", user_strategy(root), "-p", GRID[0], "-p", GRID[1]]
    for wait in (0.1, 0.3):  # while it imports (a second or so), once this command is past it
        proc = subprocess.Popen(
            [sys.executable, "-m", "mesh.cli", *argv, "--per-symbol", "--workers", "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a group of its own, as a terminal's Ctrl-C reaches it
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                if any("forkserver" in cmdline(p) for p in descendants(proc.pid)):
                    break
                time.sleep(0.01)
            assert proc.poll() is None, "the command ended before its pool started"
            time.sleep(wait)
            os.killpg(proc.pid, signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # ended by the Ctrl-C, never run on to the end: exit 130, or killed by the SIGINT itself
        # (seen once under load, with nothing printed); a shell shows both as 130
        assert proc.returncode in (130, -signal.SIGINT), (wait, err, out[-300:])
        # the command's own line at most (none yet before its sweep has begun)
        assert "Traceback" not in err and len(err.strip().splitlines()) <= 1, err
