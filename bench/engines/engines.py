"""What a distributed engine costs on this machine: Ray, Dask distributed, and the stdlib process pool.

Needs the scratch virtualenvs that `bash bench/engines/setup.sh` makes (the engines are not in
the project's venv); run each engine with its own venv's interpreter:

    /tmp/venv-ray/bin/python bench/engines/engines.py ray
    /tmp/venv-dask/bin/python bench/engines/engines.py dask
    /tmp/venv-dask/bin/python bench/engines/engines.py pool      # concurrent.futures, for reference

Each measures, on a local cluster of 2 single-threaded worker processes:

- import: `import ray` / `import dask.distributed` in a fresh interpreter (median of 3);
- start: the cluster up and a first task answered by each worker (median of 3 starts);
- tasks/s: 1,000 no-op tasks submitted at once and gathered (best of 3), so 1/that is the fixed
  cost of one task; for Dask both `client.map` and the `concurrent.futures` executor
  (`client.get_executor()`, what mesh/parallel.py hands its callers);
- a 10 MB float64 array given to a task that sums it: pickled as the argument, versus the path
  of an .npy file the task reads (median of 5 each, per task);
- a worker process SIGKILLed 1 s into a run of 8 two-second tasks: whether every task still
  returns, how long the run took, and what the caller saw.

The last stdout line is one JSON object with every figure.

Ray's processes (its GCS, raylet and workers) connect to each other over the machine's own
network interface address even when given `_node_ip_address="127.0.0.1"` (or `ray start --head
--node-ip-address=127.0.0.1`): check with `ss -tnp` that this is acceptable where you run it.
Dask's LocalCluster here listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

WORKERS = 2
NOOPS = 1_000
ARRAY_MB = 10
IMPORTS = {
    "ray": "import ray",
    "dask": "import dask.distributed",
    "pool": "import concurrent.futures",
}


def noop(x: Any = None) -> Any:
    return x


def pid(_: Any = None) -> int:
    return os.getpid()


def total(a: np.ndarray) -> float:
    return float(a.sum())


def total_of_file(path: str) -> float:
    return float(np.load(path).sum())


def sleepy(i: int) -> tuple[int, int]:
    time.sleep(2.0)
    return i, os.getpid()


def import_seconds(engine: str) -> float:
    code = (
        f"import time; t = time.perf_counter(); {IMPORTS[engine]}; print(time.perf_counter() - t)"
    )
    runs = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(3)
    ]
    return statistics.median(runs)


class Engine:
    """One engine's local cluster: start, submit many, submit one, kill a worker."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def map(self, fn: Callable[..., Any], args: list[Any]) -> list[Any]: ...
    def worker_pids(self) -> list[int]: ...


class Ray(Engine):
    def start(self) -> None:
        import ray

        self.ray = ray
        ray.init(
            num_cpus=WORKERS,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            _node_ip_address="127.0.0.1",  # loopback only
        )
        self.remote: dict[Any, Any] = {}
        self.map(pid, [None] * WORKERS)

    def stop(self) -> None:
        self.ray.shutdown()

    def _remote(self, fn: Callable[..., Any]) -> Any:
        if fn not in self.remote:
            self.remote[fn] = self.ray.remote(num_cpus=1)(fn)
        return self.remote[fn]

    def map(self, fn: Callable[..., Any], args: list[Any]) -> list[Any]:
        f = self._remote(fn)
        return list(self.ray.get([f.remote(a) for a in args], timeout=120))

    def worker_pids(self) -> list[int]:
        return sorted(set(self.map(pid, [None] * 20)))


class Dask(Engine):
    def __init__(self, executor: bool = False) -> None:
        self.executor = executor

    def start(self) -> None:
        from dask.distributed import Client, LocalCluster

        self.cluster = LocalCluster(
            n_workers=WORKERS,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        self.client = Client(self.cluster)
        self.client.wait_for_workers(WORKERS)
        self.pool = self.client.get_executor()
        self.map(pid, list(range(WORKERS)))

    def stop(self) -> None:
        self.client.close()
        self.cluster.close()

    def map(self, fn: Callable[..., Any], args: list[Any]) -> list[Any]:
        if self.executor:
            return [f.result(timeout=120) for f in [self.pool.submit(fn, a) for a in args]]
        return list(self.client.gather(self.client.map(fn, args, pure=False)))

    def worker_pids(self) -> list[int]:
        return sorted(self.client.run(os.getpid).values())


class Pool(Engine):
    def start(self) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawned, as mesh/parallel.py starts them: a fresh interpreter per worker
        self.pool = ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("spawn"))
        self.map(pid, [None] * WORKERS)

    def stop(self) -> None:
        self.pool.shutdown(cancel_futures=True)

    def map(self, fn: Callable[..., Any], args: list[Any]) -> list[Any]:
        return [f.result(timeout=120) for f in [self.pool.submit(fn, a) for a in args]]

    def worker_pids(self) -> list[int]:
        return sorted(p.pid for p in self.pool._processes.values())  # noqa: SLF001


def make(engine: str, executor: bool = False) -> Engine:
    return {"ray": Ray, "dask": lambda: Dask(executor), "pool": Pool}[engine]()  # type: ignore[no-any-return]


def timed(fn: Callable[..., Any], *args: Any) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def kill_a_worker(engine: Engine) -> dict[str, Any]:
    victim = engine.worker_pids()[0]
    t0 = time.perf_counter()
    outcome: dict[str, Any] = {"killed_pid": victim}
    import threading

    def kill() -> None:
        time.sleep(1.0)
        os.kill(victim, signal.SIGKILL)

    threading.Thread(target=kill, daemon=True).start()
    try:
        results = engine.map(sleepy, list(range(8)))
        outcome.update(
            all_returned=sorted(i for i, _ in results) == list(range(8)),
            ran_on_victim=sum(p == victim for _, p in results),
            seconds=round(time.perf_counter() - t0, 2),
            ideal_seconds=8 * 2.0 / WORKERS,
        )
    except BaseException as exc:  # what the caller sees: the point of the measurement
        outcome.update(
            all_returned=False,
            error=f"{type(exc).__name__}: {str(exc)[:200]}",
            seconds=round(time.perf_counter() - t0, 2),
        )
    return outcome


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "dask"
    load_before = os.getloadavg()[0]  # the machine is shared: how busy it was
    out: dict[str, Any] = {"engine": name, "workers": WORKERS, "cores": os.cpu_count()}
    out["import_s"] = round(import_seconds(name), 3)
    print(f"{name}: import {out['import_s']:.2f} s", file=sys.stderr)

    starts = []
    for _ in range(3):
        engine = make(name)
        starts.append(timed(engine.start))
        engine.stop()
    out["start_s"] = round(statistics.median(starts), 2)
    out["start_all_s"] = [round(s, 2) for s in starts]
    print(f"{name}: cluster start {out['start_s']:.2f} s ({out['start_all_s']})", file=sys.stderr)

    modes = [("tasks", False)] + ([("executor_tasks", True)] if name == "dask" else [])
    for key, executor in modes:
        engine = make(name, executor)
        engine.start()
        engine.map(noop, list(range(100)))  # warm
        best = min(timed(engine.map, noop, list(range(NOOPS))) for _ in range(3))
        out[f"{key}_per_s"] = round(NOOPS / best, 1)
        out[f"{key}_overhead_ms"] = round(best / NOOPS * 1000, 3)
        print(
            f"{name}: {key} {NOOPS / best:,.0f}/s ({best / NOOPS * 1000:.2f} ms each)",
            file=sys.stderr,
        )
        if executor:
            engine.stop()
            continue

        array = np.random.default_rng(1).random(ARRAY_MB * 1024 * 1024 // 8)
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "a.npy")
            np.save(path, array)
            engine.map(total_of_file, [path])
            by_value = [timed(engine.map, total, [array]) for _ in range(5)]
            by_path = [timed(engine.map, total_of_file, [path]) for _ in range(5)]
        out["array_mb"] = ARRAY_MB
        out["pickled_ms"] = round(statistics.median(by_value) * 1000, 1)
        out["path_ms"] = round(statistics.median(by_path) * 1000, 1)
        print(
            f"{name}: 10 MB array pickled {out['pickled_ms']} ms, by path {out['path_ms']} ms",
            file=sys.stderr,
        )
        out["sigkill"] = kill_a_worker(engine)
        print(f"{name}: SIGKILL {out['sigkill']}", file=sys.stderr)
        try:
            engine.stop()
        except BaseException as exc:  # a pool whose worker died may refuse a clean stop
            out["sigkill"]["stop_error"] = f"{type(exc).__name__}: {exc}"
    out["load_avg_1m"] = [round(os.getloadavg()[0], 2), round(load_before, 2)]  # end, start
    print(json.dumps(out))


if __name__ == "__main__":
    main()
