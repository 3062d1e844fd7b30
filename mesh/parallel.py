"""Many small tasks on every core of this machine, or on a Dask cluster: one executor, one loop.

    with open_executor(workers=8) as ex:            # a process pool (workers=1: in this process)
        ...
    run_tasks(lambda: open_executor(cluster="local"), tasks, fn, on_result)

`open_executor` yields a `concurrent.futures.Executor`:

- `cluster=None`: `workers` (default: every core) processes of the standard library's process
  pool, or this process alone when `workers == 1` (no pickling, no start-up);
- `cluster="local"`: a Dask `LocalCluster` of `workers` single-threaded worker processes started
  here and stopped at the end; `cluster="tcp://host:port"` (or, with no `cluster`, the address in
  `DASK_SCHEDULER_ADDRESS`): an existing Dask scheduler. Either way the executor is the client's
  `get_executor()`. Dask is the optional extra `massive-mesh[cluster]`, imported only here and
  only when asked for.

Callers submit module-level functions with small picklable arguments: data moves by reference (a
dataset path plus a symbol) and each worker process loads and caches what it reads.

`run_tasks` runs a list of tasks through a fresh executor and hands each result back with its
index, in completion order. A worker process that dies breaks a process pool (`BrokenProcessPool`):
the finished results are kept, a new pool is opened and only the unfinished tasks go again (at
most `retries` times). Dask reschedules a dead worker's tasks on the others by itself.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

ADDRESS_VAR = "DASK_SCHEDULER_ADDRESS"
CONNECT_TIMEOUT_S = 5.0
INSTALL_HINT = "pip install 'massive-mesh[cluster]'"


class ExecutorError(Exception):
    """An executor cannot be had (bad worker count, bad address, Dask missing or unreachable), or
    a task kills its worker process every time it runs (`index`: which task)."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class SerialExecutor(cf.Executor):
    """Runs each task at once, in this process, when it is submitted."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        future: cf.Future[Any] = cf.Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # KeyboardInterrupt and the like go to the caller
            future.set_exception(exc)
        return future


MAX_WORKERS = 4096


def check_workers(workers: Any) -> int:
    """A worker count from the command line or a caller: a whole number from 1 to MAX_WORKERS."""
    try:
        n = int(workers)
    except (TypeError, ValueError):
        raise ExecutorError(
            f"workers must be a whole number of at least 1, got {workers!r}"
        ) from None
    if isinstance(workers, bool) or str(n) != str(workers).strip() or n < 1:
        raise ExecutorError(f"workers must be a whole number of at least 1, got {workers!r}")
    if n > MAX_WORKERS:  # a local cluster would try to start them all at once
        raise ExecutorError(f"workers must be at most {MAX_WORKERS}, got {workers!r}")
    return n


def check_cluster(cluster: str) -> str:
    """`local` or a scheduler address `tcp://host:port` (also tls://, ws://, inproc://)."""
    text = cluster.strip()
    if text == "local":
        return text
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("tcp", "tls", "ws", "wss", "ucx") or not rest:
        raise ExecutorError(
            f"cluster {cluster!r}: expected local or a Dask scheduler address such as tcp://127.0.0.1:8786"
        )
    host, colon, port = rest.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ExecutorError(
            f"cluster {cluster!r}: expected a host and port, such as tcp://127.0.0.1:8786"
        )
    return text


SERVER = "mesh.parallel_server"  # imported first by every fork server started here


def _preload(modules: Sequence[str]) -> list[str]:
    return [SERVER, *(m for m in modules if m != SERVER)]


def _ignore_sigint() -> None:
    """Pool workers leave Ctrl-C to the process that started them, which stops the work."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_pool_early(preload: Sequence[str]) -> None:
    """Start the fork server of a process pool that will preload `preload`, now, in the
    background: it imports them while this process goes on (parsing, importing, reading the
    data), and the pool opened later forks its workers from it at once. Nothing happens where
    there is no fork server (the pool then spawns its workers).

    The server starts with Ctrl-C ignored, as its workers run: a Ctrl-C at the terminal reaches
    every process of the command, and the server, still importing, would die of it with a
    traceback under the command's own line (it ignores Ctrl-C of itself only once its imports
    are done). The command stops the work; the server ends with it."""
    import multiprocessing
    import multiprocessing.forkserver
    import multiprocessing.resource_tracker

    if preload and "forkserver" in multiprocessing.get_all_start_methods():
        multiprocessing.get_context("forkserver").set_forkserver_preload(_preload(preload))
        # The resource tracker first, outside the window below: starting it unblocks Ctrl-C
        # (multiprocessing's own SIG_UNBLOCK), which inside the window would leave a Ctrl-C of
        # that moment ignored, not held, and the command would run on as if it had not come.
        multiprocessing.resource_tracker.ensure_running()
        # the server inherits "ignored" through its exec; here a Ctrl-C of that moment is held
        # back (pending, not ignored), and comes through once the handler is back
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                multiprocessing.forkserver.ensure_running()
            finally:
                signal.signal(signal.SIGINT, handler)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)


@contextmanager
def open_executor(
    workers: int | None = None, cluster: str | None = None, *, preload: Sequence[str] = ()
) -> Iterator[cf.Executor]:
    """An executor for `workers` on this machine, or for a Dask cluster (see the module's notes).

    `preload` names modules the task functions need: a process pool then starts its workers from
    a fork server that imported them once (`multiprocessing`'s forkserver), so a new worker is
    ready at once instead of importing them again.
    """
    n = check_workers(workers) if workers is not None else (os.cpu_count() or 1)
    address = cluster if cluster is not None else os.environ.get(ADDRESS_VAR) or None
    if address is None:
        if n == 1:
            yield SerialExecutor()
            return
        import multiprocessing

        context: Any
        if preload and "forkserver" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(_preload(preload))
        else:
            context = multiprocessing.get_context("spawn")
        pool = cf.ProcessPoolExecutor(n, mp_context=context, initializer=_ignore_sigint)
        try:
            yield pool
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return
    address = check_cluster(address)
    with _dask_client(address, n) as client:
        executor = client.get_executor()
        try:
            yield executor
        finally:
            executor.shutdown(wait=False)


@contextmanager
def _dask_client(address: str, workers: int) -> Iterator[Any]:
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ExecutorError(f"the Dask cluster engine is not installed: {INSTALL_HINT}") from None
    import logging

    # A worker that dies or a scheduler that goes away is reported by the caller in one line;
    # distributed's own warnings and tracebacks (its reconnection attempts) would only repeat it.
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    with contextlib.ExitStack() as stack:
        if address == "local":
            # the same for the worker processes, which read it at start
            os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",  # this machine only, any free port
                )
            )
            client = stack.enter_context(Client(cluster))
        else:
            try:
                _probe(address)
                client = Client(address, timeout=f"{CONNECT_TIMEOUT_S}s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise ExecutorError(
                    f"cannot reach the Dask scheduler at {address}: {_first_line(exc)}"
                ) from None
            stack.enter_context(client)
        yield client


def _probe(address: str) -> None:
    """A TCP address that refuses connections fails at once, not after Dask's retries."""
    scheme, _, rest = address.partition("://")
    if scheme != "tcp":
        return
    host, _, port = rest.rpartition(":")
    import socket

    with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
        pass


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def run_tasks(
    executor_factory: Callable[[], AbstractContextManager[cf.Executor]],
    tasks: Sequence[T],
    fn: Callable[[T], R],
    on_result: Callable[[int, R], None] | None = None,
    *,
    retries: int = 3,
    window: int = 1024,
) -> list[R]:
    """`fn(task)` for every task; `on_result(index, result)` as each finishes; the results in task order.

    `executor_factory()` opens an executor (`lambda: open_executor(4)`, or an Executor itself).
    At most `window` tasks are in flight at once (on a process pool, twice its workers). A task
    that raises stops the run: the tasks not started are cancelled and its exception is raised
    here. Ctrl-C cancels what has not started and propagates; what finished was already handed
    to `on_result`.

    A dead worker breaks a process pool and every task in flight with it. The finished results
    are kept, a new pool is opened, the tasks that were in flight run again one at a time (so a
    break is the fault of the one task running), then the rest as before. A task that breaks the
    pool on its own more than `retries` times is not run again; once every other task has
    finished, `ExecutorError` is raised (its `index` says which).
    """
    results: dict[int, R] = {}
    suspects: list[int] = []  # in flight when a pool broke: run alone next
    alone_breaks: dict[int, int] = {}
    killers: list[int] = []  # tasks that broke the pool alone too often: not run again
    rounds = 0

    def keep(index: int, future: cf.Future[R]) -> bool:
        """Record a finished task's result; False if its pool broke; its own error is raised."""
        exc = future.exception()
        if isinstance(exc, BrokenProcessPool):
            return False
        if exc is not None:
            raise exc
        results[index] = future.result()
        if on_result is not None:
            on_result(index, results[index])
        return True

    while len(results) + len(killers) < len(tasks):
        rounds += 1
        if rounds > 10 * (retries + 1) + len(tasks):
            raise ExecutorError(
                f"worker processes keep dying; {len(tasks) - len(results)} of {len(tasks)} tasks unfinished"
            )
        with executor_factory() as executor:
            limit = window
            if isinstance(executor, cf.ProcessPoolExecutor):
                limit = min(window, 2 * getattr(executor, "_max_workers", window))
            alone = [i for i in suspects if i not in results and i not in killers]
            suspects = []
            broken = False
            for index in alone:
                future = executor.submit(fn, tasks[index])
                try:
                    cf.wait([future])
                    if keep(index, future):
                        continue
                except BrokenProcessPool:
                    pass
                alone_breaks[index] = alone_breaks.get(index, 0) + 1
                if alone_breaks[index] > retries:
                    killers.append(index)  # reported once the others have finished
                suspects = [i for i in alone if i not in results and i not in killers]
                broken = True
                break
            if broken:
                continue
            pending: dict[cf.Future[R], int] = {}
            queue = (i for i in range(len(tasks)) if i not in results and i not in killers)
            try:
                while True:
                    for index in queue:
                        future = executor.submit(fn, tasks[index])
                        if future.done():  # an in-process executor ran it already
                            if not keep(index, future):
                                suspects.append(index)
                                broken = True
                                break
                        else:
                            pending[future] = index
                        if len(pending) >= limit:
                            break
                    if broken or not pending:
                        break
                    done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                    for future in done:
                        index = pending.pop(future)
                        if not keep(index, future):
                            suspects.append(index)
                            broken = True
                    if broken:
                        break
            except BrokenProcessPool:  # raised by submit on a pool that just broke
                broken = True
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
            finally:
                if broken:  # what finished before the pool broke is kept; the rest are suspects
                    for future, index in pending.items():
                        if future.done() and not future.cancelled() and not future.exception():
                            keep(index, future)
                        else:
                            future.cancel()
                            suspects.append(index)
    if killers:
        index = min(killers)
        raise ExecutorError(
            f"task {index} killed its worker process {alone_breaks[index]} times", index=index
        )
    return [results[i] for i in range(len(tasks))]
