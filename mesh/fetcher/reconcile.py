"""Reconciling a recording: how much of what Massive has for its span did it record, exactly?

`reconcile(session, config)` reads the recording (through `recorded`, the one place that reads
it), works out what to compare from its manifest — the symbols it asked for (or, for a wildcard
session, the ones it recorded), the tables it has (a quotes-only session reconciles quotes), and
the span of each run — fetches Massive's own rows for that span over REST or from the day's
flat files, compares them row for row (mesh/fetcher/compare.py), and stores the result in the
session's `audit.json` (mesh/datasets/audit.py) under its lock. The recorder keeps writing the
manifest meanwhile; neither file is written by the other's writer.

The span of a run is its wall-clock start to its end (or, for a run still going, the session's
last event). A run that recorded a played day (the simulator's `--at`, or a replay) received
events whose times are far from its clock; its span is then the event time of the first to the
last row it received. Spans are cut at New York midnight: a flat file holds one day.

Method `auto`: flat files when every day's files exist and the span is large (more than 5
symbols, or more than 30 minutes), REST otherwise; whichever fits in the quota when the other
does not. The cost is worked out before anything is sent, `dry_run` spends nothing, and a
reconcile that does not fit is refused before its first call.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mesh import bounds, calendar, datasets
from mesh.datasets import TableKind, audit, storage
from mesh.datasets.audit import Cost, EventKind, Method, Reconciliation
from mesh.datasets.layout import DatasetKind
from mesh.fetcher.compare import COLUMNS, Comparison, compare
from mesh.fetcher.errors import BadRequest, FetchError, FlatFileError, QuotaExceeded
from mesh.fetcher.flatfiles import DayFile, FlatFiles
from mesh.fetcher.ledger import QuotaLedger, human_bytes
from mesh.fetcher.rest import TICKS_LIMIT, RestClient
from mesh.fetcher.ticks import day_files, empty, from_flat_file, from_rest

NS_PER_MS = 1_000_000
AUTO_MAX_SYMBOLS = 5
AUTO_MAX_MINUTES = 30
PLAYED_OFFSET_NS = 60 * 1_000_000_000  # events this far from their receipt came from a played day
METHODS = ("auto", "rest", "flat_file")

Progress = Callable[[float, str], None]


class ReconcileError(FetchError):
    """The session cannot be reconciled as asked (not a recording, nothing recorded, ...)."""


@dataclass(frozen=True)
class Piece:
    """One compared window of event time on one New York day (ns, inclusive)."""

    day: dt.date
    from_ns: int
    to_ns: int

    @property
    def minutes(self) -> float:
        return (self.to_ns - self.from_ns) / 60e9

    def rest_bounds(self) -> tuple[int, int]:
        """The window widened to whole milliseconds, as the comparison counts it."""
        return (
            self.from_ns // NS_PER_MS * NS_PER_MS,
            self.to_ns // NS_PER_MS * NS_PER_MS + NS_PER_MS - 1,
        )


@dataclass(frozen=True)
class ReconcilePlan:
    """What a reconcile compares, by which method and why, and what it costs."""

    method: Method
    reason: str
    symbols: tuple[str, ...]
    kinds: tuple[EventKind, ...]
    pieces: tuple[Piece, ...]
    rest_calls: int  # at least this many (one per symbol, kind and piece; more when pages run over)
    files: int = 0  # flat-file day files read
    files_cached: int = 0
    s3_bytes: int = 0  # flat-file bytes to download (the cache holds the rest)
    problems: tuple[str, ...] = ()  # why it does not fit in the quota

    @property
    def fits(self) -> bool:
        return not self.problems

    @property
    def cost(self) -> Cost:
        return Cost(rest_calls=self.rest_calls, s3_bytes=self.s3_bytes)

    def lines(self) -> list[str]:
        span = ", ".join(
            f"{p.day.isoformat()} {clock(p.from_ns)}–{clock(p.to_ns)} ET" for p in self.pieces
        )
        out = [
            f"compare   {', '.join(k.value for k in self.kinds)} of {len(self.symbols)} symbol(s) ({','.join(self.symbols)})",
            f"span      {span or 'nothing'}",
            f"method    {self.method.value}: {self.reason}",
        ]
        if self.method is Method.FLAT_FILE:
            out.append(
                f"cost      {self.files} day file(s); {self.files_cached} cached, {human_bytes(self.s3_bytes)} to download; no REST calls"
            )
        else:
            out.append(f"cost      at least {self.rest_calls} REST call(s)")
        out += [f"WILL NOT FIT: {p}" for p in self.problems]
        return out

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            method=self.method.value,
            kinds=[k.value for k in self.kinds],
            pieces=[
                {"day": p.day.isoformat(), "from_ns": p.from_ns, "to_ns": p.to_ns}
                for p in self.pieces
            ],
            fits=self.fits,
        )
        return out


@dataclass(frozen=True)
class ReconcileReport:
    """A reconcile's outcome: its plan, and (unless a dry run) the stored reconciliation."""

    session: str
    path: Path
    plan: ReconcilePlan
    dry_run: bool
    reconciliation: Reconciliation | None = None
    missing: dict[EventKind, pa.Table] = field(default_factory=dict)  # Massive's rows not recorded

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "session": self.session,
            "path": str(self.path),
            "dry_run": self.dry_run,
            "plan": self.plan.as_dict(),
        }
        if self.reconciliation is not None:
            out["reconciliation"] = msgspec.to_builtins(self.reconciliation)
        return out


# --- reading the recording -----------------------------------------------------------------------


def recorded(dataset: datasets.Dataset, kind: EventKind, symbols: Sequence[str]) -> pa.Table:
    """The session's `kind` rows of `symbols`: the one place reconciliation reads a recording.

    The capture and the healed layer together (unless the dataset was opened `capture_only`);
    healed rows carry their `source`, so each result counts how many of its rows a heal added.
    """
    table = dataset.table(TableKind(kind.value))
    if table is None:
        return empty(kind)
    columns = [*COLUMNS[kind], "ts_recv"]
    return datasets.read_table(table, columns=columns, symbols=list(symbols), source=True)


# --- what to compare ------------------------------------------------------------------------------


def session_symbols(dataset: datasets.Dataset, asked: Sequence[str] | None) -> tuple[str, ...]:
    """The symbols the session subscribed to (for a wildcard, the ones it recorded), or those of
    them `asked` for; a symbol the session never had is a BadRequest."""
    manifest = dataset.manifest
    requested = manifest.get("symbols_requested")
    if isinstance(requested, list) and requested and "*" not in requested:
        known = tuple(sorted(dict.fromkeys(str(s) for s in requested)))
    else:
        known = tuple(sorted(str(s) for s in manifest.get("symbols") or ()))
    if not asked:
        return known
    chosen = tuple(dict.fromkeys(s.strip().upper() for s in asked if s.strip()))
    foreign = [s for s in chosen if s not in known]
    if foreign:
        shown = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "")
        raise BadRequest(
            f"{', '.join(foreign)}: not a symbol of {dataset.name} (it has {shown or 'none'})"
        )
    return tuple(sorted(chosen))


def session_kinds(dataset: datasets.Dataset) -> tuple[EventKind, ...]:
    return tuple(k for k in EventKind if dataset.table(TableKind(k.value)) is not None)


def run_windows(manifest: dict[str, Any], tables: Sequence[pa.Table]) -> list[tuple[int, int]]:
    """Each run's window of event time (see the module docstring), overlaps merged."""
    recv = np.concatenate([_ns(t, "ts_recv") for t in tables]) if tables else np.zeros(0)
    event = np.concatenate([_ns(t, "ts_event") for t in tables]) if tables else np.zeros(0)
    sane = (event >= bounds.TS_MIN) & (event < bounds.TS_MAX)  # a row of 1970 or 2262 spans nothing
    recv, event = recv[sane], event[sane]
    last = manifest.get("last_event_ns")
    windows: list[tuple[int, int]] = []
    runs = [r for r in manifest.get("runs") or () if isinstance(r, dict)]
    for run in runs:
        start, end = run.get("started_ns"), run.get("ended_ns")
        if not isinstance(start, int):
            continue
        if not isinstance(end, int):
            end = max(last if isinstance(last, int) else 0, start)
        inside = (recv >= start) & (recv <= end)
        if inside.any() and np.median(recv[inside] - event[inside]) > PLAYED_OFFSET_NS:
            windows.append((int(event[inside].min()), int(event[inside].max())))
        else:
            windows.append((start, end))
    if not runs and len(event):  # a recording from before runs were noted: its events' span
        windows.append((int(event.min()), int(event.max())))
    windows.sort()
    merged: list[tuple[int, int]] = []
    for lo, hi in windows:
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def day_pieces(windows: Sequence[tuple[int, int]]) -> list[Piece]:
    """The windows cut at New York midnight."""
    pieces = []
    for lo, hi in windows:
        day = calendar.et_date_of_ns(lo)
        while True:
            next_midnight = calendar.midnight_ns(day + dt.timedelta(days=1))
            pieces.append(Piece(day, lo, min(hi, next_midnight - 1)))
            if hi < next_midnight:
                break
            lo, day = next_midnight, day + dt.timedelta(days=1)
    return pieces


def _ns(table: pa.Table, name: str) -> np.ndarray:
    if name not in table.column_names or table.num_rows == 0:
        return np.zeros(0, np.int64)
    return table.column(name).cast(pa.int64()).to_numpy()


# --- method and cost -------------------------------------------------------------------------------


def plan_reconcile(
    method: str,
    symbols: Sequence[str],
    kinds: Sequence[EventKind],
    pieces: Sequence[Piece],
    rows: dict[EventKind, pa.Table],
    ledger: QuotaLedger,
    flatfiles: FlatFiles | None,
) -> tuple[ReconcilePlan, list[tuple[EventKind, DayFile]]]:
    """The plan, and the flat files it would read (empty for REST)."""
    if method not in METHODS:
        raise ValueError(f"method {method!r}: expected one of {', '.join(METHODS)}")
    rest_calls = _rest_calls(symbols, kinds, pieces, rows)
    files, unavailable = _flat_files(flatfiles, kinds, pieces) if method != "rest" else ([], "")
    minutes = sum(p.minutes for p in pieces)
    size = f"{len(symbols)} symbol{'s' * (len(symbols) != 1)}, {minutes:,.0f} minute(s)"
    large = len(symbols) > AUTO_MAX_SYMBOLS or minutes > AUTO_MAX_MINUTES
    to_download = sum(f.size for _, f in files if not f.cached)
    rest_left, _ = ledger.rest_room()
    bytes_left = ledger.bytes_left()
    rest_fits = rest_left is None or rest_calls <= rest_left
    flat_fits = not unavailable and (bytes_left is None or to_download <= bytes_left)
    if method == "rest":
        chosen, reason = Method.REST, f"REST requested ({size})"
    elif method == "flat_file":
        if unavailable:
            raise FlatFileError(f"flat files cannot be used: {unavailable}")
        chosen, reason = Method.FLAT_FILE, f"flat files requested ({size})"
    elif large and not unavailable and (flat_fits or not rest_fits):
        chosen = Method.FLAT_FILE
        reason = f"auto: large span ({size}; more than {AUTO_MAX_SYMBOLS} symbols or {AUTO_MAX_MINUTES} minutes) and the day's flat files exist"
    elif not rest_fits and flat_fits:
        chosen = Method.FLAT_FILE
        reason = f"auto: {size}; REST would need at least {rest_calls} call(s) but {rest_left} are left today, and the day's flat files exist"
    elif large:
        chosen, reason = Method.REST, f"auto: large span ({size}) but {unavailable}"
    else:
        chosen = Method.REST
        reason = f"auto: small span ({size}; REST when <= {AUTO_MAX_SYMBOLS} symbols and <= {AUTO_MAX_MINUTES} minutes)"
    problems: list[str] = []
    if chosen is Method.REST:
        files = []
        if not rest_fits:
            problems.append(f"at least {rest_calls} REST call(s) needed but {rest_left} left today")
    elif bytes_left is not None and to_download > bytes_left:
        problems.append(
            f"{human_bytes(to_download)} of flat files to download but {human_bytes(bytes_left)} of the monthly allowance left"
        )
    plan = ReconcilePlan(
        method=chosen,
        reason=reason,
        symbols=tuple(symbols),
        kinds=tuple(kinds),
        pieces=tuple(pieces),
        rest_calls=rest_calls if chosen is Method.REST else 0,
        files=len(files),
        files_cached=sum(f.cached for _, f in files),
        s3_bytes=to_download if chosen is Method.FLAT_FILE else 0,
        problems=tuple(problems),
    )
    return plan, files


def _rest_calls(
    symbols: Sequence[str],
    kinds: Sequence[EventKind],
    pieces: Sequence[Piece],
    rows: dict[EventKind, pa.Table],
) -> int:
    """At least one call per symbol, kind and piece; more where the recording alone fills pages."""
    calls = 0
    for kind in kinds:
        table = rows[kind]
        times = _ns(table, "ts_event")
        for piece in pieces:
            inside = (times >= piece.from_ns) & (times <= piece.to_ns)
            counts: dict[str, int] = {}
            if inside.any():
                found = pc.value_counts(table.column("symbol").filter(pa.array(inside)))
                counts = {str(v["values"]): int(v["counts"]) for v in found.to_pylist()}
            calls += sum(max(1, math.ceil(counts.get(s, 0) / TICKS_LIMIT)) for s in symbols)
    return calls


def _flat_files(
    flatfiles: FlatFiles | None, kinds: Sequence[EventKind], pieces: Sequence[Piece]
) -> tuple[list[tuple[EventKind, DayFile]], str]:
    """(the day files of every piece's day, or why flat files cannot serve them)."""
    if flatfiles is None:
        return [], "flat files are not configured"
    days = sorted({p.day for p in pieces if calendar.is_trading_day(p.day)})
    today = calendar.today_et()
    if any(day >= today for day in days):
        return [], "the day's flat files are published only after it ends"
    found: list[tuple[EventKind, DayFile]] = []
    try:
        for kind in kinds:
            files, missing = day_files(flatfiles, kind, days)
            if missing:
                shown = ", ".join(d.isoformat() for d in missing[:3])
                return [], f"no {kind.value} flat file for {shown} in the bucket"
            found += [(kind, f) for f in files]
    except FlatFileError as exc:
        return [], str(exc)
    return found, ""


# --- the run ---------------------------------------------------------------------------------------


def reconcile(
    session: str | Path,
    config: Any,
    *,
    symbols: Sequence[str] | None = None,
    method: str = "auto",
    dry_run: bool = False,
    ledger: QuotaLedger | None = None,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> ReconcileReport:
    """Compare the recording `session` with Massive's record and store the result (see module doc).

    Raises DatasetError for a session that cannot be opened, BadRequest for a symbol the session
    does not have, QuotaExceeded when the work does
    not fit in what is left of the quota (nothing is sent then), other FetchErrors for a source
    that fails.
    """
    say = progress or (lambda fraction, message: None)
    storage.require_local(config.data_location, "reconciling a recording")
    dataset = datasets.resolve(str(session), config.data_dir)
    if dataset.kind is not DatasetKind.RECORDING:
        raise ReconcileError(
            f"{dataset.name} is a {dataset.kind.value} dataset; only recordings reconcile"
        )
    chosen_symbols = session_symbols(dataset, symbols)
    kinds = session_kinds(dataset)
    if not kinds:
        raise ReconcileError(f"{dataset.name} holds no trades or quotes to reconcile")
    if not chosen_symbols:
        raise ReconcileError(f"{dataset.name} names no symbols to reconcile")
    say(0.0, f"reading {dataset.name}")
    rows = {kind: recorded(dataset, kind, chosen_symbols) for kind in kinds}
    pieces = day_pieces(run_windows(dict(dataset.manifest), list(rows.values())))
    if not pieces:
        raise ReconcileError(f"{dataset.name} has no recorded span to reconcile")
    ledger = ledger or QuotaLedger.for_config(config)
    flatfiles = (
        FlatFiles(config, ledger, cancel=cancel) if config.s3_credentials is not None else None
    )
    plan, files = plan_reconcile(method, chosen_symbols, kinds, pieces, rows, ledger, flatfiles)
    report = ReconcileReport(dataset.name, dataset.path, plan, dry_run)
    if dry_run:
        return report
    if plan.problems:
        raise QuotaExceeded(f"{dataset.name}: not reconciled: {'; '.join(plan.problems)}")
    if plan.method is Method.REST:
        ledger.check_rest(plan.rest_calls)
        references, cost = _from_rest(config, ledger, plan, cancel, say)
    else:
        assert flatfiles is not None
        references, cost = _from_flat_files(flatfiles, plan, files, say)
    spans = [(p.from_ns, p.to_ns) for p in pieces]
    comparisons: list[Comparison] = [
        compare(kind, rows[kind], references[kind], spans=spans, symbols=chosen_symbols)
        for kind in kinds
    ]
    result = Reconciliation(
        checked_ns=time.time_ns(),
        method=plan.method,
        cost=cost,
        from_ns=pieces[0].from_ns,
        to_ns=pieces[-1].to_ns,
        results=tuple(r for c in comparisons for r in c.results),
    )
    with audit.locked(dataset.path) as current:
        audit.write_audit(dataset.path, msgspec.structs.replace(current, reconciliation=result))
    say(1.0, "done")
    return ReconcileReport(
        dataset.name,
        dataset.path,
        plan,
        dry_run,
        result,
        {c.kind: c.missing_rows for c in comparisons},
    )


def _from_rest(
    config: Any,
    ledger: QuotaLedger,
    plan: ReconcilePlan,
    cancel: threading.Event | None,
    say: Progress,
) -> tuple[dict[EventKind, pa.Table], Cost]:
    recv = time.time_ns()
    work = [(k, s, p) for k in plan.kinds for s in plan.symbols for p in plan.pieces]
    parts: dict[EventKind, list[pa.Table]] = {k: [] for k in plan.kinds}
    client = RestClient(config.rest_url, config.api_key, ledger, cancel=cancel)
    try:
        for index, (kind, symbol, piece) in enumerate(work):
            say(index / len(work), f"{symbol} {kind.value} over REST {index + 1}/{len(work)}")
            lo, hi = piece.rest_bounds()
            parts[kind].append(from_rest(client, kind, symbol, lo, hi, recv_ns=recv))
    finally:
        calls = client.calls
        client.close()
    return _joined(parts), Cost(rest_calls=calls)


def _from_flat_files(
    flatfiles: FlatFiles,
    plan: ReconcilePlan,
    files: list[tuple[EventKind, DayFile]],
    say: Progress,
) -> tuple[dict[EventKind, pa.Table], Cost]:
    recv = time.time_ns()
    parts: dict[EventKind, list[pa.Table]] = {k: [] for k in plan.kinds}
    before = flatfiles.bytes_downloaded
    for index, (kind, file) in enumerate(files):
        say(index / max(1, len(files)), f"{file.key} ({index + 1}/{len(files)})")
        parts[kind].append(from_flat_file(flatfiles, kind, file, plan.symbols, recv_ns=recv))
    return _joined(parts), Cost(s3_bytes=flatfiles.bytes_downloaded - before)


def _joined(parts: dict[EventKind, list[pa.Table]]) -> dict[EventKind, pa.Table]:
    return {k: pa.concat_tables(v) if v else empty(k) for k, v in parts.items()}


def clock(ns: int) -> str:
    """HH:MM:SS.mmm, New York time."""
    moment = dt.datetime.fromtimestamp(ns // NS_PER_MS / 1000, calendar.ET)
    return moment.strftime("%H:%M:%S.") + f"{ns // NS_PER_MS % 1000:03d}"
