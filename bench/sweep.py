"""A parameter sweep through `massive backtest --per-symbol`: serial, the process pool, a local Dask cluster.

    python bench/sweep.py [--scale F] [--workers N] [--modes serial,pool,dask]

The sweep: the built-in `ma-crossover` with fast in 20 values (2..40) x slow in 10 values
(50..140), i.e. 200 parameter sets, on 10 symbols of one year (the 2025 NYSE sessions) of
synthetic 1-minute bars, one backtest per (parameter set, symbol): 2,000 runs on about 98,000
bars each. The bars are written into a temporary MESH_DATA_DIR as a historical dataset, by the
fetcher's own writer (`mesh.fetcher.datasets.write_dataset`), which the backtester reads as it
reads any fetched history. `--scale F` shrinks the sweep for a quick check: the first
max(1, 20F) fast values and the first max(5, 252F) sessions (the 10 slow values and the 10
symbols stay).

Each mode runs `massive backtest ... --per-symbol` as a whole process, as a user runs it, and its
wall time is measured from the command's start to its exit:

- serial: `--workers 1`;
- pool: `--workers N` (N = this machine's cores), the standard library's process pool;
- dask: `--cluster local --workers N`, a local Dask cluster started by the command; needs the
  `cluster` extra in the interpreter that runs this script (`pip install -e '.[cluster]'`);
  without it the mode is reported with the command's one-line error and skipped.

Every mode also runs the same command with one parameter set (10 runs, one per symbol): what is
left of it is the mode's fixed cost (the interpreter and imports, reading the dataset, starting
the pool or the cluster). The per-run cost is (full - one) / (runs - 10). Every mode's
`results.parquet` must hold the same rows with the same metrics as the serial one's. The machine may be shared: the load
average at the start and at the end is reported with the figures, and so is each mode's CPU time
(the command and every process under it, with psutil when installed), which others' load does
not change: `cpu_efficiency` = serial CPU s / the mode's CPU s is the share of its work that is
the runs themselves, so N x that is the speedup the mode would reach on N idle cores. Each
mode's `steal_pct` is the share of the cores the hypervisor gave to other machines during it.

The figure is the speedup per core of the best parallel mode, (serial s / parallel s) / N;
target >= 0.8 (of linear). baseline = the serial wall time (s); ratio = the best parallel mode's
speedup over it. The last stdout line is the JSON summary.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import cpu_stolen_s, report, steal_pct  # noqa: E402
from mesh import calendar  # noqa: E402
from mesh.fetcher.datasets import write_dataset  # noqa: E402

DATASET = "sweep-bench"
SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "JPM", "XOM", "UNH")
FAST = tuple(range(2, 42, 2))  # 20 values
SLOW = tuple(range(50, 150, 10))  # 10 values
YEAR = (dt.date(2025, 1, 1), dt.date(2025, 12, 31))
MINUTE = 60_000_000_000
SESSION_OPEN = (9 * 60 + 30) * MINUTE  # after 00:00 New York
BARS_PER_DAY = 390
TARGET = 0.8
KEYS = ("run", "strategy", "params", "symbol")


def grid(scale: float) -> tuple[tuple[int, ...], tuple[int, ...], list[dt.date]]:
    days = calendar.trading_days(*YEAR)
    fast = FAST[: max(1, round(len(FAST) * scale))]
    return fast, SLOW, days[: max(5, round(len(days) * scale))]


def minute_bars(symbol: str, days: list[dt.date], seed: int) -> pa.Table:
    """A random walk of 1-minute bars over each session's 390 minutes, in the one bar schema."""
    rng = np.random.default_rng(seed)
    opens = np.array([calendar.midnight_ns(d) + SESSION_OPEN for d in days], dtype=np.int64)
    ts = (opens[:, None] + np.arange(BARS_PER_DAY, dtype=np.int64) * MINUTE).ravel()
    n = len(ts)
    close = 50.0 * (1 + seed) * np.exp(np.cumsum(rng.normal(0.0, 0.0008, n)))
    open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0.0, 0.0002, n))
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.0003, n)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.0003, n)))
    time_type = pa.timestamp("ns", tz="UTC")
    return pa.table(
        {
            "symbol": pa.array([symbol] * n),
            "ts_start": pa.array(ts).cast(time_type),
            "ts_end": pa.array(ts + MINUTE).cast(time_type),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.integers(100, 10_000, n).astype(np.float64),
            "vwap": (high + low + close) / 3,
            "transactions": rng.integers(1, 100, n),
            "ts_recv": pa.nulls(n, time_type),
        }
    )


def write_history(data_dir: Path, days: list[dt.date]) -> Path:
    """The sweep's bars as a historical dataset, written as `massive fetch` writes one."""
    bars = pa.concat_tables(minute_bars(s, days, k) for k, s in enumerate(SYMBOLS))
    return write_dataset(
        bars,
        data_dir,
        DATASET,
        {
            "symbols": list(SYMBOLS),
            "interval": "1m",
            "start": days[0].isoformat(),
            "end": days[-1].isoformat(),
            "method": "synthetic",
        },
    )


def massive() -> list[str]:
    """The `massive` of the interpreter running this script (its venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("massive")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("massive")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from mesh.cli import main; sys.exit(main())"]


def command(fast: tuple[int, ...], slow: tuple[int, ...], mode: str, workers: int) -> list[str]:
    cmd = [
        *massive(),
        "backtest",
        DATASET,
        "--strategy",
        "ma-crossover",
        "--param",
        "fast=" + ",".join(map(str, fast)),
        "--param",
        "slow=" + ",".join(map(str, slow)),
        "--symbols",
        ",".join(SYMBOLS),
        "--per-symbol",
        "--json",
    ]
    if mode == "serial":
        return [*cmd, "--workers", "1"]
    if mode == "pool":
        return [*cmd, "--workers", str(workers)]
    return [*cmd, "--cluster", "local", "--workers", str(workers)]


def tree_cpu_seconds(proc: subprocess.Popen[str]) -> float | None:
    """Wait for `proc`; the CPU seconds (user + system) it and every process under it used.

    Sampled every 0.1 s with psutil (None without it): a worker's last tenth of a second may be
    missed, nothing else. Wall time on a shared machine depends on the others' load; CPU time
    does not, so the two together tell contention from the engine's own cost.
    """
    try:
        import psutil
    except ImportError:
        proc.wait(timeout=3600)
        return None
    seen: dict[tuple[int, float], float] = {}
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for p in family:
            try:
                times = p.cpu_times()
                seen[(p.pid, p.create_time())] = times.user + times.system
            except psutil.Error:
                pass
        time.sleep(0.1)
    return sum(seen.values())


def run_sweep(cmd: list[str], data_dir: Path) -> dict[str, Any]:
    """One whole `massive backtest` process: its wall time, its exit, and the sweep it wrote."""
    sweeps = data_dir / "sweeps"
    before = set(sweeps.iterdir()) if sweeps.exists() else set()
    env = {**os.environ, "MESH_DATA_DIR": str(data_dir)}
    t0, stolen = time.perf_counter(), cpu_stolen_s()
    with tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        cpu = tree_cpu_seconds(proc)
        seconds = time.perf_counter() - t0
        stderr.seek(0)
        err = stderr.read()
    out: dict[str, Any] = {
        "seconds": seconds,
        "cpu_s": cpu,
        "code": proc.returncode,
        "steal_pct": steal_pct(stolen, seconds),
    }
    if proc.returncode != 0:
        lines = [line for line in err.splitlines() if line.strip()]
        out["error"] = lines[-1] if lines else f"exit {proc.returncode}"
        return out
    new = sorted(set(sweeps.iterdir()) - before) if sweeps.exists() else []
    if len(new) != 1:
        out["error"] = f"expected one new sweep under {sweeps}, found {len(new)}"
        return out
    out["results"] = pq.read_table(new[0] / "results.parquet")
    return out


def same_results(a: pa.Table, b: pa.Table) -> bool:
    """The same runs in the same order with the same metrics (NaN equal to NaN)."""
    if a.num_rows != b.num_rows or set(a.column_names) != set(b.column_names):
        return False
    for name in a.column_names:
        x, y = a.column(name).to_pylist(), b.column(name).to_pylist()
        if x != y and not all(u == v or (u != u and v != v) for u, v in zip(x, y, strict=True)):
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the sweep (default 1)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--modes", default="serial,pool,dask", help="any of serial,pool,dask")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if "serial" not in modes:
        modes.insert(0, "serial")  # the baseline every figure is relative to

    fast, slow, days = grid(args.scale)
    runs = len(fast) * len(slow) * len(SYMBOLS)
    bars = len(days) * BARS_PER_DAY
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mesh-bench-sweep-") as tmp:
        data_dir = Path(tmp)
        t0 = time.perf_counter()
        write_history(data_dir, days)
        print(
            f"dataset: {len(SYMBOLS)} symbols x {bars:,} 1-minute bars ({len(days)} sessions), "
            f"written in {time.perf_counter() - t0:.1f} s; sweep: {len(fast)} x {len(slow)} "
            f"parameter sets x {len(SYMBOLS)} symbols = {runs:,} runs, {args.workers} workers",
            file=sys.stderr,
        )
        results: dict[str, dict[str, Any]] = {}
        for mode in modes:
            one = run_sweep(command(fast[:1], slow[:1], mode, args.workers), data_dir)
            if "error" in one:
                print(f"{mode}: skipped: {one['error']}", file=sys.stderr)
                results[mode] = {"error": one["error"]}
                continue
            full = run_sweep(command(fast, slow, mode, args.workers), data_dir)
            if "error" in full:
                print(f"{mode}: failed: {full['error']}", file=sys.stderr)
                results[mode] = {"error": full["error"]}
                continue
            got = full["results"]
            entry: dict[str, Any] = {
                "seconds": round(full["seconds"], 2),
                "cpu_s": round(full["cpu_s"], 1) if full["cpu_s"] is not None else None,
                "one_param_set_s": round(one["seconds"], 2),
                "per_run_ms": round((full["seconds"] - one["seconds"]) / (runs - 10) * 1000, 2)
                if runs > 10
                else None,
                "rows": got.num_rows,
                "steal_pct": full["steal_pct"],
            }
            if mode != "serial" and "results" in results.get("serial", {}):
                entry["same_results_as_serial"] = same_results(got, results["serial"]["results"])
            results[mode] = {**entry, "results": got}
            print(
                f"{mode}: {full['seconds']:.1f} s for {runs:,} runs "
                f"({runs / full['seconds']:,.1f} runs/s, steal {full['steal_pct']}% of the CPU); "
                f"one parameter set {one['seconds']:.1f} s",
                file=sys.stderr,
            )

    serial = results["serial"]
    if "error" in serial:
        raise SystemExit(f"the serial sweep failed: {serial['error']}")
    assert serial["rows"] == runs, (serial["rows"], runs)
    speedups = {
        m: serial["seconds"] / r["seconds"]
        for m, r in results.items()
        if m != "serial" and "seconds" in r
    }
    for m, s in speedups.items():
        if serial.get("cpu_s") and results[m].get("cpu_s"):
            results[m]["cpu_efficiency"] = round(serial["cpu_s"] / results[m]["cpu_s"], 3)
        results[m]["speedup"] = round(s, 3)
        results[m]["speedup_per_core"] = round(s / args.workers, 3)
        print(f"{m}: {s:.2f}x serial, {s / args.workers:.2f} per core", file=sys.stderr)
    best = max(speedups, key=lambda m: speedups[m]) if speedups else "serial"
    value = speedups[best] / args.workers if speedups else 1.0 / args.workers
    report(
        "sweep",
        "speedup_per_core",
        value,
        "x linear",
        serial["seconds"],
        f">= {TARGET} of linear on {args.workers} cores",
        ratio=round(speedups.get(best, 1.0), 3),
        best_mode=best,
        scale=args.scale,
        runs=runs,
        bars_per_run=bars,
        workers=args.workers,
        cores=os.cpu_count(),
        load_avg_1m={"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)},
        modes={m: {k: v for k, v in r.items() if k != "results"} for m, r in results.items()},
    )


if __name__ == "__main__":
    main()
