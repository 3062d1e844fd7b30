"""How many runs one task should carry: bench/sweep.py's sweep through `mesh.parallel`, B runs a task.

    python bench/sweep_batching.py [--scale F] [--batches 1,10,100] [--modes pool,dask]

The same dataset and grid as bench/sweep.py (`--scale` as there), the same run records
(`mesh.backtest.sweep.new_sweep`), run in this process through `mesh.parallel.run_tasks` with B
consecutive runs in one task (`run_chunk`, the task `massive backtest` sends, which picks B
itself: 20 for these 2,000 runs). Timed: opening the executor (pool or local Dask cluster) and
every run; not the interpreter's start, the dataset check in this process or writing
results. Serial (`workers=1`, one run a task) is the baseline. `dask` needs the `cluster` extra.
The last stdout line is the JSON summary: per mode and B, seconds and speedup per core.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.sweep import DATASET, SYMBOLS, grid, write_history  # noqa: E402
from mesh import parallel  # noqa: E402
from mesh.backtest.runner import Options  # noqa: E402
from mesh.backtest.sweep import PRELOAD, new_sweep, run_chunk  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batches", default="1,10,100")
    parser.add_argument("--modes", default="pool,dask")
    args = parser.parse_args()
    fast, slow, days = grid(args.scale)
    sizes = [int(b) for b in args.batches.split(",")]
    out: dict[str, Any] = {"load_avg_1m_start": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="mesh-bench-batching-") as tmp:
        write_history(Path(tmp), days)
        sweep = new_sweep(
            DATASET,
            ["ma-crossover"],
            ["fast=" + ",".join(map(str, fast)), "slow=" + ",".join(map(str, slow))],
            Options(symbols=list(SYMBOLS)),
            tmp,
            per_symbol=True,
        )
        tasks = sweep.tasks
        out["runs"] = len(tasks)

        def timed(workers: int, cluster: str | None, size: int) -> float:
            batches = [tuple(tasks[i : i + size]) for i in range(0, len(tasks), size)]
            t0 = time.perf_counter()
            results = parallel.run_tasks(
                lambda: parallel.open_executor(workers, cluster, preload=PRELOAD),
                batches,
                run_chunk,
            )
            seconds = time.perf_counter() - t0
            assert sum(len(r) for r in results) == len(tasks)
            return seconds

        serial = timed(1, None, 1)
        out["serial_s"] = round(serial, 2)
        print(f"serial: {serial:.1f} s for {len(tasks)} runs", file=sys.stderr)
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            for size in sizes:
                seconds = timed(args.workers, "local" if mode == "dask" else None, size)
                per_core = serial / seconds / args.workers
                out[f"{mode}_B{size}"] = {
                    "seconds": round(seconds, 2),
                    "per_core": round(per_core, 3),
                }
                print(
                    f"{mode}, {size} runs a task: {seconds:.1f} s, {per_core:.2f} per core",
                    file=sys.stderr,
                )
    out["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
