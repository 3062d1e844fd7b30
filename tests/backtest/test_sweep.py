"""`massive backtest` sweeps: the same table in the same order serially, on a process pool and on a
real Dask cluster; the results table, its files, its best runs; bad input in one line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh import cli
from tests.backtest.sweep_helpers import (
    results,
    spec,
    sweep_ids,
    user_strategy,
)

GRID = ["-p", "fast=5,10", "-p", "slow=30,60"]


def sweep(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert cli.main(["backtest", "mins", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def dask_cluster() -> Iterator[str]:
    """A real Dask cluster of two single-threaded worker processes on 127.0.0.1."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as cluster:
        yield cluster.scheduler_address


@pytest.mark.timeout(240)
def test_serial_process_pool_and_dask_cluster_give_the_same_table_in_the_same_order(
    root: Path,
    dask_cluster: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv = ["-s", "ma-crossover", "-s", user_strategy(root), *GRID, "--per-symbol", "--top", "2"]
    serial = sweep(capsys, *argv, "--workers", "1")
    pool = sweep(capsys, *argv, "--workers", "2")
    on_dask = sweep(capsys, *argv, "--cluster", dask_cluster)
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", dask_cluster)  # the cluster without --cluster
    by_env = sweep(capsys, *argv)

    tables = [results(root, doc["sweep_id"]) for doc in (serial, pool, on_dask, by_env)]
    assert tables[0].num_rows == 2 * 4 * 3
    assert all(t.equals(tables[0]) for t in tables[1:])
    rows = tables[0].to_pylist()
    assert [r["run"] for r in rows] == list(range(24))
    # serial order: strategy, then the grid in order, then the symbol
    assert [(r["fast"], r["slow"], r["symbol"]) for r in rows[:4]] == [
        (5, 30, "AAA"),
        (5, 30, "BBB"),
        (5, 30, "CCC"),
        (5, 60, "AAA"),
    ]
    assert [r["strategy"] for r in rows] == ["ma-crossover"] * 12 + [user_strategy(root)] * 12
    assert {"total_return", "sharpe", "max_drawdown", "trades", "params"} <= set(rows[0])
    assert json.loads(rows[0]["params"])["fast"] == 5

    for doc in (serial, pool, on_dask):
        saved = spec(root, doc["sweep_id"])
        assert (saved["state"], saved["total"], saved["done"]) == ("done", 24, 24)
        # the best two by sharpe are also ordinary run folders
        best = sorted(rows, key=lambda r: -r["sharpe"])[:2]
        assert sorted(t["run"] for t in saved["top"]) == sorted(r["run"] for r in best)
        for top in saved["top"]:
            assert (Path(top["run_dir"]) / "equity.parquet").is_file()
        assert [t["run"] for t in doc["top"]] == [r["run"] for r in best]
    # the pool's workers saved its best runs: the same folders as the serial run's, bit for bit
    import pyarrow.parquet as pq

    assert [r["metrics"] for r in pool["runs"]] == [r["metrics"] for r in serial["runs"]]
    tops = (spec(root, serial["sweep_id"])["top"], spec(root, pool["sweep_id"])["top"])
    for a, b in zip(*tops, strict=True):
        for name in ("equity.parquet", "trades.parquet", "fills.parquet"):
            assert pq.read_table(Path(a["run_dir"]) / name).equals(
                pq.read_table(Path(b["run_dir"]) / name)
            )


def test_a_portfolio_sweep_has_one_row_per_parameter_set(
    root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["backtest", "mins", "-s", "ma-crossover", *GRID, "--workers", "1"]) == 0
    out = capsys.readouterr().out
    # four runs, no more than --top: the side-by-side comparison, as for a handful of strategies
    assert "fast=5 slow=30" in out and "fast=10 slow=60" in out
    (sweep_id,) = sweep_ids(root)
    rows = results(root, sweep_id).to_pylist()
    assert [(r["fast"], r["slow"], r["symbol"]) for r in rows] == [
        (5, 30, "portfolio"),
        (5, 60, "portfolio"),
        (10, 30, "portfolio"),
        (10, 60, "portfolio"),
    ]
    assert len(list((root / "backtests").iterdir())) == 4


def test_the_sweep_table_sorts_filters_and_lists(
    root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    doc = sweep(capsys, "-s", "ma-crossover", *GRID, "--per-symbol", "--workers", "1")
    sweep_id = doc["sweep_id"]

    assert cli.main(["backtest", "--sweeps"]) == 0
    listing = capsys.readouterr().out
    assert sweep_id in listing and "done" in listing and "12/12" in listing

    argv = ["backtest", "--sweep", sweep_id]
    assert (
        cli.main([*argv, "--sort", "total_return", "--symbol", "bbb", "--limit", "3", "--json"])
        == 0
    )
    shown = json.loads(capsys.readouterr().out)["rows"]
    assert len(shown) == 3 and {r["symbol"] for r in shown} == {"BBB"}
    returns = [r["total_return"] for r in shown]
    assert returns == sorted(returns, reverse=True)
    every_bbb = [r for r in results(root, sweep_id).to_pylist() if r["symbol"] == "BBB"]
    assert returns[0] == max(r["total_return"] for r in every_bbb)

    assert cli.main([*argv, "--sort", "trades", "--limit", "5"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert "5 of 12 shown by trades" in text[0]
    header = text[1].split()
    assert header[:4] == ["run", "strategy", "fast", "slow"] and "symbol" in header
    trades = [int(line.split()[header.index("trades")]) for line in text[2:]]
    assert len(trades) == 5 and trades == sorted(trades, reverse=True)

    assert cli.main([*argv, "--sort", "luck"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot sort by 'luck'" in err[0]
    assert cli.main(["backtest", "--sweep", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no sweep 'nope'" in err[0]


@pytest.mark.parametrize(
    "option, wrong, says",
    [
        ("--workers", "0", "expected a positive number, got 0"),
        ("--workers", "abc", "expected a whole number, got 'abc'"),
        ("--cluster", "garbage", "expected local or a Dask scheduler address"),
        ("--cluster", "tcp://127.0.0.1", "expected a host and port"),
    ],
)
def test_bad_sweep_options_are_one_line(
    root: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
    wrong: str,
    says: str,
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["backtest", "mins", "-s", "ma-crossover", *GRID, option, wrong])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and option in err[0] and says in err[0], err
    assert sweep_ids(root) == []


def test_an_unreachable_cluster_is_one_line_and_writes_nothing(
    root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("distributed")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    code = cli.main(
        ["backtest", "mins", "-s", "ma-crossover", *GRID, "--cluster", f"tcp://127.0.0.1:{port}"]
    )
    took = time.monotonic() - started
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in err[0]
    assert took < 20  # generous: a busy machine; Dask's own retries would take far longer
    assert sweep_ids(root) == [] and not (root / "backtests").exists()


def test_without_the_cluster_extra_a_cluster_sweep_says_how_to_install_it(root: Path) -> None:
    # dask made unimportable in a fresh process, as on a machine without the extra
    program = (
        "import sys; sys.modules['dask'] = sys.modules['distributed'] = None; "
        "from mesh.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    argv = ["backtest", "mins", "-s", "ma-crossover", *GRID, "--cluster", "local"]
    done = subprocess.run(
        [sys.executable, "-c", program, *argv], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "pip install 'massive-mesh[cluster]'" in err[0], done.stderr
    assert sweep_ids(root) == []


def test_a_sweep_shows_even_when_its_strategy_file_is_gone(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = sweep(capsys, "-s", user_strategy(root), *GRID, "--workers", "1", "--no-save")
    assert doc["sweep_id"] is None and sweep_ids(root) == []
    doc = sweep(capsys, "-s", user_strategy(root), *GRID, "--workers", "1")
    (root.parent / "strats" / "slowcross.py").unlink()
    assert cli.main(["backtest", "--sweep", doc["sweep_id"], "--sort", "slow"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "4 of 4 shown by slow" in lines[0]
    assert [line.split()[3] for line in lines[2:]] == ["60", "60", "30", "30"]


def test_a_large_sweep_sent_in_chunks_gives_the_serial_table(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mesh.backtest.sweep import chunk_size

    grid = ["-p", "fast=" + ",".join(map(str, range(2, 18))), "-p", "slow=30,40,50,60,70"]
    argv = ["-s", "ma-crossover", *grid, "--per-symbol", "--top", "1"]
    assert chunk_size(16 * 5 * 3) > 1  # several runs per task
    serial = sweep(capsys, *argv, "--workers", "1")
    pool = sweep(capsys, *argv, "--workers", "2")
    assert serial["total"] == pool["ran"] == 240
    expected = results(root, serial["sweep_id"])
    assert results(root, pool["sweep_id"]).equals(expected)
    assert expected.column("run").to_pylist() == list(range(240))


PROBE = '''
"""Writes, at each call, the worker's pid and whether its dataset was loaded before its first run."""

import os
from pathlib import Path

import numpy as np

from mesh.backtest import sweep


def probe(bars, fast: int = 5):
    """Flat; notes the calling process and its dataset cache.

    fast: unused
    """
    info = sweep._market.cache_info()
    with open(Path(__file__).with_name("calls.txt"), "a") as out:
        out.write(f"{os.getpid()} {info.hits} {info.misses}\\n")
    return np.zeros(len(bars.close))
'''


@pytest.mark.timeout(120)
def test_pool_workers_find_the_dataset_loaded_before_their_first_run(root: Path) -> None:
    """The pool's fork server reads the dataset once; no worker reads it again for itself."""
    probe = root.parent / "strats" / "probe.py"
    probe.write_text(PROBE)
    argv = ["backtest", "mins", "-s", f"{probe}:probe", "-p", "fast=1,2,3,4,5,6"]
    done = subprocess.run(
        [sys.executable, "-m", "mesh.cli", *argv, "--per-symbol", "--workers", "2", "--no-save"],
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr
    first: dict[str, tuple[int, int]] = {}
    for line in probe.with_name("calls.txt").read_text().splitlines():
        pid, hits, misses = line.split()
        first.setdefault(pid, (int(hits), int(misses)))
    assert first  # the runs ran in the pool's workers
    for hits, misses in first.values():
        # the worker's first run found the dataset in the cache it was forked with
        assert (hits, misses) == (1, 1), first


ENV_PROBE = '''
"""Writes, at each call, what the worker and a process it starts see of the fork server's
dataset variable."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def probe(bars, fast: int = 5):
    """Flat.

    fast: unused
    """
    seen = "import os; print(os.environ.get('_MESH_POOL_DATASET'))"
    child = subprocess.run([sys.executable, "-c", seen], capture_output=True, text=True)
    with open(Path(__file__).with_name("env.txt"), "a") as out:
        out.write(f"{os.environ.get('_MESH_POOL_DATASET')} {child.stdout.strip()}\\n")
    return np.zeros(len(bars.close))
'''


@pytest.mark.timeout(120)
def test_pool_workers_and_what_they_start_do_not_inherit_the_fork_servers_dataset(
    root: Path,
) -> None:
    """The dataset named to the fork server is for it alone: a process a run starts (another
    sweep's command, say) must not read it again."""
    probe = root.parent / "strats" / "envprobe.py"
    probe.write_text(ENV_PROBE)
    argv = ["backtest", "mins", "-s", f"{probe}:probe", "-p", "fast=1,2,3,4"]
    done = subprocess.run(
        [sys.executable, "-m", "mesh.cli", *argv, "--workers", "2", "--no-save"],
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr
    lines = probe.with_name("env.txt").read_text().splitlines()
    assert lines and all(line == "None None" for line in lines), lines
