"""One fetch from request to bars: pick the method, spend within the quota, fall back, resample.

This is the only place that decides between REST and flat files at run time. The flat-file path
reads each trading day's file; a day whose file is missing or damaged, or every day if the bucket
cannot be used at all (no credentials, 403), is fetched over REST instead when the REST quota
allows it, and the report says so. Unknown symbols are caught before REST calls are spent (by the
small day-aggregates file when flat files are reachable) and, at the latest, when no source has
a single bar for them.

Bars are split-adjusted unless the request says otherwise: REST asks Massive for `adjusted=true`
(or `false`); flat files are as traded, so an adjusted flat-file fetch reads each symbol's splits
once over REST and adjusts the minute bars of the files itself (mesh/fetcher/splits.py), before
resampling. The day-file cache holds the files as published (as traded) and nothing converted, so
an adjusted fetch and an as-traded one of the same span read the same files and differ only in
what is done with them after.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from mesh import calendar
from mesh.fetcher import bulk
from mesh.fetcher import plan as planning
from mesh.fetcher.bars import MINUTE_SCHEMA, resample
from mesh.fetcher.bulk import DayExecutor
from mesh.fetcher.errors import (
    BadRequest,
    Cancelled,
    FetchError,
    FlatFileError,
    NoData,
    QuotaExceeded,
    RestError,
)
from mesh.fetcher.flatfiles import DayFile, FlatFiles, key_for
from mesh.fetcher.ledger import QuotaLedger, human_bytes
from mesh.fetcher.minutefile import DamagedFile
from mesh.fetcher.request import FetchRequest
from mesh.fetcher.rest import RestClient
from mesh.fetcher.splits import Split, adjust_minutes

log = logging.getLogger(__name__)

# progress(fraction 0..1, message, bytes done, bytes total)
ProgressFn = Callable[[float, str, int, int], None]


@dataclass
class FetchReport:
    """What a fetch did: the method and why, any fallback, and what it spent."""

    method: str
    reason: str
    fallback: str = ""  # why (part of) the flat-file path went to REST
    rest_days: list[str] = field(default_factory=list)
    rest_calls: int = 0
    bytes_downloaded: int = 0
    files_downloaded: int = 0
    files_cached: int = 0
    rows: int = 0
    minutes: int = 0
    seconds: float = 0.0
    adjusted: bool = True
    adjusted_as_of: str = ""  # YYYY-MM-DD: the day whose executed splits adjust the bars
    split_calls: int = 0  # REST calls that read splits to adjust flat-file bars (in rest_calls)
    workers: int = 1  # processes that fetched flat-file days at once
    # days a parallel flat-file fetch could not get and REST did not stand in for:
    # [{"day", "status" (refused, damaged, failed), "reason"}]; the bars hold the other days
    failed_days: list[dict[str, str]] = field(default_factory=list)

    @property
    def prices(self) -> str:
        """How the prices are to be read: `split-adjusted as of YYYY-MM-DD` or `as traded`."""
        return prices_text(self.adjusted, self.adjusted_as_of)

    @property
    def method_used(self) -> str:
        if self.method == "flat_file" and self.rest_days:
            return (
                "flat_file+rest" if self.files_downloaded + self.files_cached else "rest (fallback)"
            )
        return self.method

    def summary(self) -> str:
        """The one line `massive fetch` ends with."""
        text = f"{self.rows:,} rows via {self.method_used}; {self.rest_calls} REST call(s), {human_bytes(self.bytes_downloaded)} downloaded"
        if self.files_cached:
            text += f", {self.files_cached} file(s) from cache"
        if self.workers > 1:
            text += f", {self.workers} workers"
        if self.failed_days:
            text += f", {len(self.failed_days)} day(s) missing"
        return text + f" in {self.seconds:.1f} s ({self.prices})"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["method_used"] = self.method_used
        out["prices"] = self.prices
        return out


class Interrupted(Cancelled):
    """Ctrl-C stopped a parallel flat-file fetch; `tables` holds the days that had finished."""

    def __init__(self, report: FetchReport, tables: list[pa.Table]) -> None:
        kept = report.files_downloaded + report.files_cached
        missing = len(report.failed_days)
        super().__init__(
            f"interrupted: {kept} day(s) fetched, {missing} not; rerunning the same command fetches only what is missing (fetched day files are read from the cache)"
        )
        self.report = report
        self.tables = tables
        self.bars: pa.Table | None = None


def prices_text(adjusted: bool, as_of: str) -> str:
    """The manifest's human line about prices."""
    return f"split-adjusted as of {as_of}" if adjusted else "as traded"


class Fetcher:
    """Runs `FetchRequest`s for one configuration; safe to use from one thread at a time."""

    def __init__(
        self,
        config: Any,
        *,
        ledger: QuotaLedger | None = None,
        cancel: threading.Event | None = None,
        rest_transport: Any = None,
        days: DayExecutor | None = None,
    ) -> None:
        """`days`: run the flat-file days on that executor (mesh/fetcher/bulk.py), one task a day."""
        self.config = config
        self.days = days
        self.ledger = ledger or QuotaLedger.for_config(config)
        self.cancel = cancel
        self.flatfiles = FlatFiles(config, self.ledger, cancel=cancel)
        self._rest_transport = rest_transport

    def plan(self, request: FetchRequest) -> planning.Plan:
        """Method and cost of `request`; raises `LedgerDamaged` when the quota cannot be known."""
        self.ledger.check()
        return planning.make_plan(request, self.ledger, self.flatfiles)

    def _rest(self, say: Callable[[str], None]) -> RestClient:
        return RestClient(
            self.config.rest_url,
            self.config.api_key,
            self.ledger,
            cancel=self.cancel,
            on_wait=say,
            transport=self._rest_transport,
        )

    def run(
        self,
        request: FetchRequest,
        *,
        progress: ProgressFn | None = None,
        fallback: bool = True,
        check_symbols: bool = True,
    ) -> tuple[pa.Table, FetchReport]:
        """Bars for `request` (mesh/bar_schema.py) and the report of what was spent."""
        started = time.monotonic()
        self.ledger.check()  # a damaged ledger stops here, before anything is spent
        method, reason = planning.choose(request)
        as_of = request.as_of or calendar.today_et()
        report = FetchReport(
            method,
            reason,
            adjusted=request.adjusted,
            adjusted_as_of=as_of.isoformat() if request.adjusted else "",
        )
        state = {"bytes": 0, "total": 0, "fraction": 0.0}

        def say(
            message: str,
            fraction: float | None = None,
            nbytes: int | None = None,
            total: int | None = None,
        ) -> None:
            if fraction is not None:
                state["fraction"] = fraction
            if nbytes is not None:
                state["bytes"] = nbytes
            if total is not None:
                state["total"] = total
            if progress is not None:
                progress(
                    float(state["fraction"]), message, int(state["bytes"]), int(state["total"])
                )

        log.info(
            "%s %s..%s %s: %s",
            ",".join(request.symbols),
            request.start,
            request.end,
            request.interval,
            reason,
        )
        say(reason, 0.0)
        parts: list[pa.Table] = []
        if method == "rest":
            if check_symbols:
                try:
                    self._check_symbols(request)
                finally:
                    report.bytes_downloaded = self.flatfiles.bytes_downloaded
            self.ledger.check_rest(planning.rest_calls_needed(request))
            parts += self._rest_days(request, list(request.trading_days), report, say, 0.0, 1.0)
        elif self.days is not None:
            try:
                parts += self._flat_days(request, report, say, fallback, self.days)
            except Interrupted as exc:
                if exc.tables:  # the finished days, as bars, for the caller to keep
                    with contextlib.suppress(NoData):  # a symbol none of them has: keep nothing
                        exc.bars = self._bars(request, exc.tables, report, started)
                raise
        else:
            parts += self._flat(request, report, say, fallback)
        bars = self._bars(request, parts, report, started)
        say(report.summary(), 1.0)
        return bars, report

    def _bars(
        self, request: FetchRequest, parts: list[pa.Table], report: FetchReport, started: float
    ) -> pa.Table:
        """The request's bars from its minute bars (in day order)."""
        minutes = pa.concat_tables(parts) if parts else MINUTE_SCHEMA.empty_table()
        report.minutes = minutes.num_rows
        self._require_all_symbols(request, minutes)
        bars = resample(minutes, request.interval, request.start, request.end)
        report.rows = bars.num_rows
        report.seconds = round(time.monotonic() - started, 3)
        return bars

    # --- REST ----------------------------------------------------------------------------------

    def _rest_days(
        self,
        request: FetchRequest,
        days: list[dt.date],
        report: FetchReport,
        say: Callable[..., None],
        lo: float,
        hi: float,
    ) -> list[pa.Table]:
        """Minute bars of every symbol over `days`, one request chain per contiguous run of days."""
        runs = _runs(days, request.trading_days)
        steps = max(1, len(runs) * len(request.symbols))
        tables: list[pa.Table] = []
        client = self._rest(lambda text: say(text))
        try:
            step = 0
            for first, last in runs:
                for symbol in request.symbols:
                    say(f"REST {symbol} {first}..{last}", lo + (hi - lo) * step / steps)
                    tables.append(
                        client.minute_bars(symbol, first, last, adjusted=request.adjusted)
                    )
                    step += 1
        finally:
            report.rest_calls += client.calls
            client.close()
        return tables

    def _check_symbols(self, request: FetchRequest) -> None:
        """Refuse symbols that did not trade on the range's last (or first) day, before REST is spent."""
        if self.config.s3_credentials is None:
            return
        days = [request.trading_days[-1]] + (
            [request.trading_days[0]] if len(request.trading_days) > 1 else []
        )
        known: set[str] = set()
        for day in days:
            tickers = self.flatfiles.tickers_on(day)
            if tickers is None:
                return  # cannot tell; REST will say
            known |= tickers
            unknown = [s for s in request.symbols if s not in known]
            if not unknown:
                return
        raise BadRequest(
            f"unknown symbol{'s' * (len(unknown) > 1)} {', '.join(unknown)}: not traded on {' or '.join(str(d) for d in days)} (nothing was spent on REST)"
        )

    # --- flat files ----------------------------------------------------------------------------

    def _plan_flat(self, request: FetchRequest) -> tuple[list[Any], list[dt.date], str | None]:
        """The request's day files in the bucket, the days to take elsewhere, and the error that
        sends every day elsewhere (None when the bucket could be listed)."""
        try:
            files, missing = self.flatfiles.plan(request.trading_days)
        except FlatFileError as exc:
            return [], list(request.trading_days), str(exc)
        return list(files), list(missing), None

    def _flat(
        self, request: FetchRequest, report: FetchReport, say: Callable[..., None], fallback: bool
    ) -> list[pa.Table]:
        symbols = list(request.symbols)
        tables: list[pa.Table] = []
        files, rest_days, error = self._plan_flat(request)
        reasons = [error or _not_in_bucket(rest_days)] if rest_days else []
        to_get = sum(f.size for f in files if not f.cached)
        limit_left = self.ledger.bytes_left()
        if files and limit_left is not None and to_get > limit_left:
            reasons.append(
                f"the monthly flat-file allowance has {human_bytes(limit_left)} left, {human_bytes(to_get)} needed"
            )
            rest_days += [f.day for f in files]
            files = []
        if request.adjusted and files:  # the splits' REST calls must fit before bytes are spent
            self._check_split_calls(request)
        total = sum(f.size for f in files) or 1
        done = {"bytes": 0}
        for index, file in enumerate(files):
            name = file.key.rsplit("/", 1)[-1]

            def on_bytes(
                n: int, label: str = f"{'reading' if file.cached else 'downloading'} {name}"
            ) -> None:
                done["bytes"] += n
                say(label, 0.9 * done["bytes"] / total)

            say(
                f"{'reading cached' if file.cached else 'downloading'} {name} ({index + 1}/{len(files)})",
                0.9 * done["bytes"] / total,
            )
            try:
                before = self.flatfiles.bytes_downloaded
                tables.append(self.flatfiles.read(file, symbols, on_bytes=on_bytes))
                if self.flatfiles.bytes_downloaded > before:
                    report.files_downloaded += 1
                else:
                    report.files_cached += 1
            except (FlatFileError, QuotaExceeded) as exc:
                rest_days.append(file.day)
                reasons.append(str(exc))
                if not isinstance(exc, DamagedFile) and "no such file" not in str(exc):
                    # access refused or unreachable: the other files will fail the same way
                    rest_days += [f.day for f in files[index + 1 :]]
                    break
            finally:
                report.bytes_downloaded = self.flatfiles.bytes_downloaded
        if request.adjusted and tables:
            tables = self._adjusted(request, tables, report, say, complete=not rest_days)
        if rest_days:
            rest_days = sorted(set(rest_days))
            why = "; ".join(dict.fromkeys(reasons))
            if not fallback:
                raise FlatFileError(f"flat files failed for {len(rest_days)} day(s): {why}")
            needed = planning.rest_calls_needed(request, len(rest_days))
            try:
                self.ledger.check_rest(needed)
            except QuotaExceeded as exc:
                raise FlatFileError(
                    f"flat files failed ({why}) and the REST quota does not allow the fallback: {exc}"
                ) from None
            report.fallback = f"falling back to REST for {len(rest_days)} day(s): {why}"
            log.warning("%s", report.fallback)
            say(report.fallback)
            report.rest_days = [d.isoformat() for d in rest_days]
            tables += self._rest_days(request, rest_days, report, say, 0.9, 1.0)
        return tables

    def _flat_days(
        self,
        request: FetchRequest,
        report: FetchReport,
        say: Callable[..., None],
        fallback: bool,
        executor: DayExecutor,
    ) -> list[pa.Table]:
        """The flat-file path with each day file a task on `executor` (mesh/fetcher/bulk.py).

        Unlike the serial path, a span whose bytes do not all fit the month's allowance is not
        sent to REST as a whole: each worker reserves its day's bytes, and the days the ledger
        refuses are handled as failed days. A failed day goes to REST when `fallback` allows and
        the REST quota covers it; otherwise the fetch keeps the days it has and lists the others
        in `report.failed_days` (also what a Ctrl-C does, with status `interrupted`).
        """
        tables: list[pa.Table] = []
        report.workers = executor.workers
        files, rest_days, error = self._plan_flat(request)
        reasons = [error or _not_in_bucket(rest_days)] if rest_days else []
        failed: dict[dt.date, tuple[str, str]] = {
            day: ("failed", error)
            if error
            else ("missing", f"{key_for(day)}: no such file in the bucket")
            for day in rest_days
        }
        if request.adjusted and files:  # the splits' REST calls must fit before bytes are spent
            self._check_split_calls(request)
        interrupted = False
        if files:
            results, interrupted = self._run_days(request, files, report, say, executor)
            for answer in results.values():
                if answer.status == bulk.ELSEWHERE:
                    raise FlatFileError(answer.message)
            groups: dict[str, list[str]] = {}
            for file in files:
                result = results.get(file.day)
                if result is None:
                    status, reason = "interrupted", "not fetched: the fetch was interrupted"
                elif result.status == bulk.OK and result.table is not None:
                    tables.append(result.table)
                    continue
                else:
                    status, reason = result.status, result.message
                failed[file.day] = (status, reason)
                groups.setdefault(status, []).append(reason)
                if status != "interrupted":
                    rest_days.append(file.day)
            for status, lines in groups.items():
                if status != "interrupted":
                    more = " ..." if len(lines) > 1 else ""
                    reasons.append(f"{len(lines)} day file(s) {status} ({lines[0]}{more})")
        if request.adjusted and tables:
            tables = self._adjusted(
                request, tables, report, say, complete=not rest_days and not interrupted
            )
        if rest_days and fallback and not interrupted:
            rest_days = sorted(set(rest_days))
            why = "; ".join(dict.fromkeys(reasons))
            try:
                self.ledger.check_rest(planning.rest_calls_needed(request, len(rest_days)))
            except QuotaExceeded as exc:
                reasons.append(f"the REST quota does not allow the fallback: {exc}")
            else:
                report.fallback = f"falling back to REST for {len(rest_days)} day(s): {why}"
                log.warning("%s", report.fallback)
                say(report.fallback)
                report.rest_days = [d.isoformat() for d in rest_days]
                return tables + self._rest_days(request, rest_days, report, say, 0.9, 1.0)
        if failed:
            report.failed_days = [
                {"day": day.isoformat(), "status": status, "reason": reason}
                for day, (status, reason) in sorted(failed.items())
            ]
            if interrupted:
                raise Interrupted(report, tables)
            if not tables:
                why = "; ".join(dict.fromkeys(reasons))
                raise FlatFileError(f"flat files failed for {len(failed)} day(s): {why}")
        return tables

    def _run_days(
        self,
        request: FetchRequest,
        files: list[DayFile],
        report: FetchReport,
        say: Callable[..., None],
        executor: DayExecutor,
    ) -> tuple[dict[dt.date, bulk.DayResult], bool]:
        """Each day file as one task on `executor`; progress is days done and their bytes."""
        place = bulk.place_of(self.config, self.ledger, remote=executor.remote)
        tasks = [bulk.DayTask(place, f.day, f.key, f.size, tuple(request.symbols)) for f in files]
        sizes = {f.day: f.size for f in files}
        total = sum(sizes.values())
        done = {"days": 0, "bytes": 0}

        def on_result(result: bulk.DayResult) -> None:
            done["days"] += 1
            done["bytes"] += sizes[result.day]
            report.bytes_downloaded += result.downloaded
            if result.status == bulk.OK:
                if result.cached:
                    report.files_cached += 1
                else:
                    report.files_downloaded += 1
            else:
                log.info("%s %s: %s", result.day, result.status, result.message)
            say(
                f"days {done['days']}/{len(files)}",
                done["bytes"] / max(1, total),  # the bar shows the days' bytes as they are
                done["bytes"],
                total,
            )

        say(f"days 0/{len(files)}, {executor.workers} worker(s)", 0.0, 0, total)
        return bulk.run_days(executor, tasks, on_result)

    def _check_split_calls(self, request: FetchRequest) -> None:
        """Refuse an adjusted flat-file fetch whose splits' REST calls do not fit today."""
        calls = len(request.symbols)
        try:
            self.ledger.check_rest(calls)
        except QuotaExceeded as exc:
            raise QuotaExceeded(
                f"flat files are as traded and adjusting them needs {calls} REST call(s) for the splits: {exc}; fetch with --unadjusted for bars as traded",
                limit=exc.limit,
                retry_after=exc.retry_after,
            ) from None

    def _adjusted(
        self,
        request: FetchRequest,
        tables: list[pa.Table],
        report: FetchReport,
        say: Callable[..., None],
        complete: bool,
    ) -> list[pa.Table]:
        """The flat files' minute bars split-adjusted, reading the splits of the symbols they hold.

        When the files were the whole request (`complete`), a symbol they do not hold is refused
        here, before a REST call is spent on splits.
        """
        minutes = pa.concat_tables(tables)
        if complete:
            self._require_all_symbols(request, minutes)
        held = set(minutes["symbol"].unique().to_pylist())
        splits = self._splits([s for s in request.symbols if s in held], report, say)
        as_of = dt.date.fromisoformat(report.adjusted_as_of)
        return [adjust_minutes(minutes, splits, as_of)]

    def _splits(
        self, symbols: list[str], report: FetchReport, say: Callable[..., None]
    ) -> dict[str, list[Split]]:
        """Each symbol's splits (one REST call each), to adjust the as-traded flat files."""
        out: dict[str, list[Split]] = {}
        if not symbols:
            return out
        client = self._rest(lambda text: say(text))
        before = client.calls
        try:
            for symbol in symbols:
                say(f"REST {symbol} splits (flat files are as traded)")
                out[symbol] = client.splits(symbol)
        except RestError as exc:
            raise type(exc)(
                f"cannot adjust the flat files for splits: {exc}; fetch with --unadjusted for bars as traded",
                status=exc.status,
            ) from None
        finally:
            report.split_calls += client.calls - before
            report.rest_calls += client.calls - before
            client.close()
        return out

    def _require_all_symbols(self, request: FetchRequest, minutes: pa.Table) -> None:
        seen = set(minutes["symbol"].unique().to_pylist()) if minutes.num_rows else set()
        absent = [s for s in request.symbols if s not in seen]
        if absent:
            where = f"between {request.start} and {request.end}"
            raise NoData(
                f"no bars for {', '.join(absent)} {where}: unknown symbol{'s' * (len(absent) > 1)}, or no trading in the range"
            )


def _runs(days: list[dt.date], trading: tuple[dt.date, ...]) -> list[tuple[dt.date, dt.date]]:
    """Contiguous runs of `days` in the trading calendar, as (first, last) pairs."""
    index = {d: i for i, d in enumerate(trading)}
    runs: list[tuple[dt.date, dt.date]] = []
    for day in sorted(days):
        if runs and index.get(day, -2) == index.get(runs[-1][1], -5) + 1:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


__all__ = ["Fetcher", "FetchReport", "FetchError"]


def _not_in_bucket(days: list[dt.date]) -> str:
    """Why days go elsewhere when their files are not in the bucket (the first three named)."""
    shown = ", ".join(str(d) for d in days[:3])
    return f"{len(days)} day file(s) not in the bucket ({shown}{' ...' if len(days) > 3 else ''})"
