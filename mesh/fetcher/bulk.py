"""Flat-file days fetched in parallel: one task per day file, each worker spending through the ledger.

The unit of work is one trading day's flat file: a worker process downloads it into the day-file
cache (or finds it there) and converts it into that day's minute bars of the requested symbols,
which come back to the fetching process; the fetch then puts the days together in calendar order,
exactly as a serial fetch does, so the bars are the same whatever the number of workers.

The quota ledger stays the one authority: each worker opens the same SQLite file
(data/state/quota.sqlite) and reserves a file's bytes in its own `BEGIN IMMEDIATE` transaction
before downloading it (mesh/fetcher/ledger.py), so workers racing for the last bytes of the month
can never overspend it; a day the ledger refuses comes back as `refused`. A worker on another
machine cannot open that file and is refused: it checks that it runs on the fetching machine and
sees the very same ledger file (device and inode) before it spends anything, and otherwise
answers `elsewhere`, which stops the fetch with one line (docs/fetcher.md, "Parallel fetch").

Tasks are small picklable records and `fetch_day` is module-level, so any
`concurrent.futures.Executor` runs them: the serial one, a process pool or Dask's. A process pool
whose worker dies (`BrokenExecutor`) is re-created and only the unfinished days are submitted
again, a bounded number of times; the dead worker's reservation stays in the ledger (counted as
spent: the ledger may refuse work that would have fitted, never allow work that would not).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from collections.abc import Callable
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa

from mesh.fetcher.errors import FetchError, FlatFileError, QuotaExceeded
from mesh.fetcher.flatfiles import DayFile, FlatFiles
from mesh.fetcher.ledger import LedgerError, Limits, QuotaLedger
from mesh.fetcher.minutefile import DamagedFile

log = logging.getLogger(__name__)

OK = "ok"
REFUSED = "refused"  # the quota ledger refused the day's bytes
DAMAGED = "damaged"  # the file is not what the bucket listed (truncated, bad gzip, bad rows)
FAILED = "failed"  # the bucket could not be read for that day (access, network, worker died)
ELSEWHERE = "elsewhere"  # the worker cannot reach the quota ledger (another machine)

RETRIES = 3  # times a process pool is re-created after a worker process died


@dataclass(frozen=True)
class Place:
    """Where a worker reads and spends: the bucket, the cache, and the one quota ledger."""

    data_dir: str
    endpoint: str
    bucket: str
    ledger: str
    ledger_id: tuple[int, int]  # (st_dev, st_ino) of the ledger file on the fetching machine
    host: str
    limits: Limits
    credentials: tuple[str, str] | None  # None: the worker takes its own environment's
    served: bool = False  # the fetcher service answered: workers elsewhere spend through it


@dataclass(frozen=True)
class DayTask:
    place: Place
    day: dt.date
    key: str
    size: int
    symbols: tuple[str, ...]


@dataclass
class DayResult:
    day: dt.date
    status: str
    message: str = ""
    table: pa.Table | None = None
    downloaded: int = 0  # bytes that came over the network for this day
    cached: bool = False  # read from the day-file cache, nothing downloaded


@dataclass(frozen=True)
class DayExecutor:
    """How to run day tasks: `open()` gives an Executor (as mesh.parallel.open_executor does);
    None runs them one after the other in this process."""

    open: Callable[[], AbstractContextManager[Executor]] | None
    workers: int
    remote: bool = False  # workers may run on other machines: no credentials in the tasks


def place_of(config: object, ledger: QuotaLedger, *, remote: bool) -> Place:
    stat = os.stat(ledger.path)
    return Place(
        data_dir=str(Path(getattr(config, "data_dir")).absolute()),  # noqa: B009
        endpoint=str(getattr(config, "s3_endpoint")),  # noqa: B009
        bucket=str(getattr(config, "s3_bucket")),  # noqa: B009
        ledger=str(ledger.path.absolute()),
        ledger_id=(stat.st_dev, stat.st_ino),
        host=socket.gethostname(),
        limits=ledger.limits,
        credentials=None if remote else getattr(config, "s3_credentials", None),
        served=remote and _fetcher_answers(config),
    )


def _fetcher_answers(config: object) -> bool:
    from mesh import client
    from mesh.control import ControlError

    try:
        return bool(client.call("fetcher", "ping", config=config, timeout=2) == "pong")  # type: ignore[arg-type]
    except ControlError:
        return False


class ServedLedger:
    """The fetching machine's quota ledger, spent through its fetcher service's control channel
    (`ledger-reserve`, `ledger-settle`), for a worker on another machine: the same transaction
    there decides, so workers anywhere cannot overspend it. The worker's own environment names
    the bus (MESH_BUS_CTL and its keys, docs/scaling.md)."""

    def reserve_bytes(self, key: str, nbytes: int) -> int:
        reply = self._call("ledger-reserve", key=key, nbytes=int(nbytes))
        if "refused" in reply:
            raise QuotaExceeded(str(reply["refused"]), limit=str(reply.get("limit", "")))
        return int(reply["row"])

    def settle_bytes(self, row_id: int, actual: int) -> None:
        self._call("ledger-settle", row=int(row_id), nbytes=int(actual))

    def _call(self, cmd: str, **args: Any) -> dict[str, Any]:
        from mesh import client
        from mesh.control import ControlError

        try:
            reply = client.call("fetcher", cmd, args, timeout=10)
        except ControlError as exc:
            raise LedgerError(f"the quota ledger served by the fetcher service: {exc}") from None
        if not isinstance(reply, dict):
            raise LedgerError(f"the fetcher service answered {cmd} with {type(reply).__name__}")
        return reply


def _ledger_here(place: Place) -> str:
    """'' when this process can spend through the fetching machine's ledger, else why not."""
    host = socket.gethostname()
    try:
        stat = os.stat(place.ledger)
        same = (stat.st_dev, stat.st_ino) == place.ledger_id
    except OSError:
        same = False
    if host != place.host or not same:
        return (
            f"a worker on {host} cannot reach the quota ledger {place.ledger} of {place.host}: "
            "flat-file days are fetched by workers on the fetching machine only "
            "(--cluster local or --workers N), unless the fetcher service runs there "
            "(`massive run fetcher`): workers elsewhere then spend through it "
            "(docs/fetcher.md, Parallel fetch)"
        )
    return ""


def fetch_day(task: DayTask) -> DayResult:
    """Download (or read from the cache) one day file and convert it to the symbols' minute bars."""
    place = task.place
    why = _ledger_here(place)
    if why and not place.served:
        return DayResult(task.day, ELSEWHERE, why)
    files = _flatfiles(place, served=bool(why))
    before_bytes, before_files = files.bytes_downloaded, files.files_downloaded
    file = DayFile(task.day, task.key, task.size, cached=False)
    status, message, table = OK, "", None
    try:
        table = files.read(file, list(task.symbols))
    except QuotaExceeded as exc:
        status, message = REFUSED, str(exc)
    except DamagedFile as exc:
        status, message = DAMAGED, str(exc)
    except (FlatFileError, LedgerError) as exc:
        status, message = FAILED, str(exc)
    return DayResult(
        task.day,
        status,
        message,
        table=table,
        downloaded=files.bytes_downloaded - before_bytes,
        cached=status == OK and files.files_downloaded == before_files,
    )


_FLATFILES: dict[Place, FlatFiles] = {}  # per worker process: one S3 client for all its days


def _flatfiles(place: Place, *, served: bool = False) -> FlatFiles:
    files = _FLATFILES.get(place)
    if files is None:
        credentials = place.credentials
        if credentials is None:
            from mesh.config import Config

            credentials = Config.load().s3_credentials
        config = SimpleNamespace(
            data_dir=place.data_dir,
            s3_endpoint=place.endpoint,
            s3_bucket=place.bucket,
            s3_credentials=credentials,
        )
        ledger: Any = ServedLedger() if served else QuotaLedger(Path(place.ledger), place.limits)
        files = _FLATFILES[place] = FlatFiles(config, ledger)
    return files


def run_days(
    executor: DayExecutor,
    tasks: list[DayTask],
    on_result: Callable[[DayResult], None],
    *,
    retries: int = RETRIES,
) -> tuple[dict[dt.date, DayResult], bool]:
    """(every finished task's result by day, whether Ctrl-C stopped the run).

    The tasks go through `mesh.parallel.run_tasks`: a process pool broken by a dead worker is
    re-opened and only the unfinished days go again (at most `retries` times; then they are
    `failed`). A worker answering `elsewhere` stops the run at once. A task that raises (Dask's
    KilledWorker after its own retries, say) stops it too, and the unfinished days are `failed`
    with that line. KeyboardInterrupt cancels the days not started and returns what finished.
    """
    from mesh import parallel

    results: dict[dt.date, DayResult] = {}

    def finished(_: int, result: DayResult) -> None:
        results[result.day] = result
        on_result(result)
        if result.status == ELSEWHERE:
            raise _Elsewhere(result.message)

    opener = executor.open if executor.open is not None else parallel.SerialExecutor
    try:
        parallel.run_tasks(opener, tasks, fetch_day, finished, retries=retries)
    except KeyboardInterrupt:
        return results, True
    except _Elsewhere:
        pass
    except parallel.ExecutorError as exc:
        if not results:  # no executor at all (Dask missing, scheduler unreachable): one line
            raise FetchError(str(exc)) from None
        _fail_unfinished(tasks, results, on_result, str(exc))
    except Exception as exc:  # a task raised: Dask's KilledWorker after its own retries, say
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _fail_unfinished(tasks, results, on_result, why)
    return results, False


def _fail_unfinished(
    tasks: list[DayTask],
    results: dict[dt.date, DayResult],
    on_result: Callable[[DayResult], None],
    why: str,
) -> None:
    for task in tasks:
        if task.day not in results:
            result = DayResult(task.day, FAILED, f"{task.key}: {why}")
            results[task.day] = result
            on_result(result)


class _Elsewhere(Exception):
    """A worker cannot reach the quota ledger: the run stops."""
