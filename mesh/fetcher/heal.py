"""`massive heal SESSION`: put the rows a recording missed back into it, from Massive's REST history.

What is missing comes from the session's audit.json: the stored reconciliation's missing spans
(`massive reconcile`), or, when the session was never reconciled, the quote and trade gaps ingest
reported while it recorded (the same spans a gap backfill fetches, mesh/fetcher/backfill.py).
Spans an earlier heal already filled (after that reconciliation) are not fetched again, so a heal
cut short by the quota continues where it stopped.

Each span is fetched over REST `/v3/trades` / `/v3/quotes` with timestamp bounds, one span at a
time within the quota ledger: when the quota runs out the spans fetched so far are kept and the
rest are listed as `unhealed`. Rows whose key the recording already holds (trades: symbol,
trade_id, exchange; quotes: symbol, sequence) are dropped. What is left is written to the healed
layer (`healed/<kind>/part-NNNNNN.parquet`, mesh/datasets/healed.py) and then listed in
audit.json as a `Heal`, in one rename, under the session's audit lock: a heal killed at any
moment leaves the old audit, and its unlisted files are removed by the next heal. Finally the
session's bar files are rebuilt from the capture and the healed layer.

A session that is being recorded is not healed (the recorder still writes it), nor one whose
recorder died with rows still in its write-ahead log (the recorder's next start recovers them):
see mesh/datasets/live.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa

from mesh import datasets as shared
from mesh.datasets import DatasetKind, TableKind, atomic, audit, healed, live, storage
from mesh.datasets.audit import Cost, EventKind, Heal, HealedSpan, Method
from mesh.datasets.manifest import read_manifest
from mesh.fetcher.backfill import fetch_span, gaps_from_recording, merge_gaps, storage_table
from mesh.fetcher.errors import FetchError, QuotaExceeded
from mesh.fetcher.ledger import QuotaLedger
from mesh.fetcher.rest import RestClient
from mesh.recorder.promote import rewrite_bars

KEYS = {
    EventKind.TRADES: ("symbol", "trade_id", "exchange"),
    EventKind.QUOTES: ("symbol", "sequence"),
}
SOURCES = {EventKind.TRADES: "rest /v3/trades", EventKind.QUOTES: "rest /v3/quotes"}
_GAP_KINDS = {"trade": EventKind.TRADES, "quote": EventKind.QUOTES}
_CAPTURED_MARGIN_NS = 1_000_000_000  # captured rows this near a span may hold its keys (ms times)


class HealError(FetchError):
    """A heal that cannot be done (a session still recording, no quota, a damaged recording)."""


class Planned(msgspec.Struct, frozen=True):
    """One span to fetch: `edges` when its ends are missing rows too (a reconciliation's spans),
    not when they are events that were received (a gap's)."""

    symbol: str
    kind: EventKind
    from_ns: int
    to_ns: int
    rows: int  # rows expected (0: not known, a gap's)
    edges: bool

    def as_healed(self, rows: int | None = None) -> HealedSpan:
        return HealedSpan(
            symbol=self.symbol,
            kind=self.kind,
            from_ns=self.from_ns,
            to_ns=self.to_ns,
            rows=self.rows if rows is None else rows,
        )


class HealReport(msgspec.Struct, frozen=True, kw_only=True):
    """What a heal did (or, with `dry_run`, would do) to one session."""

    session: str
    path: str
    dry_run: bool
    spans_from: str  # "reconciliation", "gaps" or "" (nothing to heal)
    spans: tuple[HealedSpan, ...]  # healed (rows added), or to heal (rows expected) on a dry run
    unhealed: tuple[HealedSpan, ...] = ()  # not fetched: the quota ran out (rows expected)
    rows: dict[str, int] = {}  # rows added per table
    files: tuple[str, ...] = ()  # healed files written, relative to the session
    removed: tuple[str, ...] = ()  # stray files of a killed heal, removed
    rest_calls: int = 0
    rest_calls_needed_at_least: int = 0
    rest_calls_left_today: int | None = None
    heal_id: str | None = None  # the Heal entry stored in audit.json
    bars: dict[str, int] = {}  # bar rows rebuilt per bar table
    message: str = ""
    # after healing a reconciliation's spans, the session is reconciled again to prove the result
    reconciled: bool = False
    reconciled_complete: bool | None = None
    reconcile_message: str = ""

    @property
    def complete(self) -> bool:
        return not self.unhealed

    def to_json(self) -> dict[str, Any]:
        return {**msgspec.to_builtins(self), "complete": self.complete}


def heal(
    session: str | Path,
    config: Any,
    *,
    dry_run: bool = False,
    ledger: QuotaLedger | None = None,
    cancel: threading.Event | None = None,
    progress: Callable[[float, str], None] | None = None,
    confirm: bool = True,
) -> HealReport:
    """Heal `session` (a recording NAME or folder); raises HealError (one line) when it cannot.

    With `confirm`, a heal of a stored reconciliation's spans reconciles the session again (same
    symbols and method, within the quota) so its audit says whether the session is now complete.
    """
    storage.require_local(config.data_location, "healing a recording")
    folder = _session_folder(session, config.data_dir)
    name = folder.name
    _check_not_recording(folder, name)
    if (away := healed.leads_out(folder)) is not None:
        raise HealError(f"{away} is a link out of the recording; make it a folder to heal {name}")
    ledger = ledger or QuotaLedger.for_config(config)
    if dry_run:
        plan, spans_from = _plan(folder, audit.read_audit(folder))
        left, _ = ledger.rest_room()
        return _report(
            name,
            folder,
            dry_run=True,
            spans_from=spans_from,
            spans=tuple(p.as_healed() for p in plan),
            rest_calls_needed_at_least=len(plan),
            rest_calls_left_today=left,
            message=_dry_message(plan, left),
        )
    with audit.locked(folder) as current:
        removed = tuple(str(p.relative_to(folder)) for p in healed.remove_strays(folder, current))
        plan, spans_from = _plan(folder, current)
        left, _ = ledger.rest_room()
        if not plan:  # bars again only where a heal may have stopped before them
            bars = rewrite_bars(folder.parent, name) if current.heals else {}
            return _report(
                name,
                folder,
                dry_run=False,
                spans_from=spans_from,
                spans=(),
                removed=removed,
                rest_calls_left_today=left,
                bars=bars,
                message=f"{name}: nothing to heal ({_why_nothing(current)})",
            )
        try:
            ledger.check_rest(1)
        except QuotaExceeded as exc:
            raise HealError(f"{name}: the REST quota allows no call now: {exc}") from None
        fetched = _fetch(folder, plan, config, ledger, cancel, progress)
        files = _write(folder, fetched.tables)
        entry = Heal(
            id=_heal_id(fetched.at_ns, current),
            at_ns=fetched.at_ns,
            method=Method.REST,
            files=files,
            spans=fetched.healed,
            unhealed=fetched.unhealed,
            cost=Cost(rest_calls=fetched.calls),
        )
        audit.write_audit(folder, msgspec.structs.replace(current, heals=(*current.heals, entry)))
    if progress is not None:
        progress(1.0, "rebuilding bars")
    bars = rewrite_bars(folder.parent, name)
    rows = {str(kind): t.num_rows for kind, t in fetched.tables.items()}
    proof = _reconcile_again(folder, current, config, ledger, cancel, confirm and spans_from)
    return _report(
        name,
        folder,
        **proof,
        dry_run=False,
        spans_from=spans_from,
        spans=fetched.healed,
        unhealed=fetched.unhealed,
        rows=rows,
        files=files,
        removed=removed,
        rest_calls=fetched.calls,
        rest_calls_needed_at_least=len(plan),
        rest_calls_left_today=ledger.rest_room()[0],
        heal_id=entry.id,
        bars=bars,
        message=_done_message(name, rows, fetched),
    )


def _reconcile_again(
    folder: Path,
    before: audit.Audit,
    config: Any,
    ledger: QuotaLedger,
    cancel: threading.Event | None,
    spans_from: str | bool,
) -> dict[str, Any]:
    """Reconcile the healed session as it was reconciled before; a refusal is said, not raised."""
    stored = before.reconciliation
    if spans_from != "reconciliation" or stored is None:
        return {}
    from mesh.fetcher.reconcile import reconcile  # reconciliation builds on the heal's reader

    symbols = sorted({r.symbol for r in stored.results})
    try:
        done = reconcile(
            folder, config, symbols=symbols, method=str(stored.method), ledger=ledger, cancel=cancel
        )
    except (FetchError, shared.DatasetError) as exc:
        return {"reconcile_message": f"not reconciled again: {exc}"}
    result = done.reconciliation
    complete = result is not None and result.complete
    return {
        "reconciled": result is not None,
        "reconciled_complete": complete,
        "reconcile_message": "reconciled again: complete"
        if complete
        else "reconciled again: still incomplete (see `massive reconcile`)",
    }


# --- which session, and may it be healed ---------------------------------------------------------


def _session_folder(session: str | Path, data_dir: Path) -> Path:
    text = str(session).strip()
    if not text:
        raise HealError("no session given: name a recording (see `massive data list`)")
    bare = not isinstance(session, Path) and "/" not in text
    try:
        dataset = shared.resolve(f"recording:{text}" if bare else Path(text), data_dir)
    except shared.DatasetError as exc:
        raise HealError(str(exc)) from None
    if dataset.kind is not DatasetKind.RECORDING:
        raise HealError(f"{dataset.path} is a {dataset.kind} dataset, not a recording")
    return dataset.path


def _check_not_recording(folder: Path, name: str) -> None:
    try:
        manifest = read_manifest(folder, required=False)
    except shared.DatasetError as exc:
        raise HealError(str(exc)) from None
    state = live.recording_state(folder, manifest)
    if state is live.RecordingState.RECORDING:
        raise HealError(f"session {name} is still being recorded; stop the recorder first")
    if state is live.RecordingState.INTERRUPTED:
        raise HealError(
            f"session {name} was interrupted and its write-ahead log still holds rows; "
            "start the recorder (`massive run recorder`) to recover it, then heal"
        )


# --- what to heal --------------------------------------------------------------------------------


def _plan(folder: Path, current: audit.Audit) -> tuple[list[Planned], str]:
    """The spans still to heal, and where they came from ("reconciliation" or "gaps")."""
    found = current.reconciliation
    if found is not None and any(r.missing_spans for r in found.results):
        wanted = [
            Planned(r.symbol, r.kind, s.from_ns, s.to_ns, s.rows, True)
            for r in found.results
            for s in r.missing_spans
        ]
        since, spans_from = found.checked_ns, "reconciliation"
    else:
        try:
            spans, _ = merge_gaps(gaps_from_recording(folder))
        except shared.DatasetError as exc:
            raise HealError(str(exc)) from None
        wanted = [Planned(sym, _GAP_KINDS[k], lo, hi, 0, False) for sym, k, lo, hi in spans]
        since, spans_from = 0, "gaps" if spans else ""
    done = {
        (s.symbol, s.kind, s.from_ns, s.to_ns)
        for h in current.heals
        if h.at_ns > since
        for s in h.spans
    }
    return [p for p in wanted if (p.symbol, p.kind, p.from_ns, p.to_ns) not in done], spans_from


# --- fetching ------------------------------------------------------------------------------------


class _Fetched(msgspec.Struct):
    at_ns: int
    tables: dict[EventKind, pa.Table]
    healed: tuple[HealedSpan, ...]
    unhealed: tuple[HealedSpan, ...]
    calls: int


def _fetch(
    folder: Path,
    plan: list[Planned],
    config: Any,
    ledger: QuotaLedger,
    cancel: threading.Event | None,
    progress: Callable[[float, str], None] | None,
) -> _Fetched:
    """Fetch span by span until done or the quota runs out; new rows only, per table."""
    known = _known_keys(folder, plan)
    columns: dict[EventKind, list[pa.Table]] = {}
    done: list[HealedSpan] = []
    left: list[HealedSpan] = []
    recv = time.time_ns()
    client = RestClient(config.rest_url, config.api_key, ledger, cancel=cancel)
    try:
        for index, span in enumerate(plan):
            if left:  # the quota ran out: the rest wait for the next heal
                left.append(span.as_healed())
                continue
            if progress is not None:
                progress(index / len(plan), f"{span.symbol} {span.kind} {index + 1}/{len(plan)}")
            try:
                got = fetch_span(
                    client,
                    span.symbol,
                    "trade" if span.kind is EventKind.TRADES else "quote",
                    span.from_ns,
                    span.to_ns,
                    recv_ns=recv,
                    edges=span.edges,
                )
            except QuotaExceeded:
                left.append(span.as_healed())
                continue
            table = _new_rows(storage_table(str(span.kind), got), span.kind, known)
            columns.setdefault(span.kind, []).append(table)
            done.append(span.as_healed(table.num_rows))
    finally:
        calls = client.calls
        client.close()
    tables = {
        kind: _in_time_order(pa.concat_tables(parts))
        for kind, parts in columns.items()
        if sum(p.num_rows for p in parts)
    }
    return _Fetched(recv, tables, tuple(done), tuple(left), calls)


def _known_keys(folder: Path, plan: list[Planned]) -> dict[EventKind, set[tuple[Any, ...]]]:
    """Keys the recording holds (capture and healed layer) near the spans to heal."""
    out: dict[EventKind, set[tuple[Any, ...]]] = {}
    try:
        dataset = shared.open_path(folder)
    except shared.DatasetError as exc:
        raise HealError(str(exc)) from None
    for kind in {p.kind for p in plan}:
        out[kind] = set()
        table = dataset.table(TableKind(str(kind)))
        if table is None:
            continue
        spans = [p for p in plan if p.kind is kind]
        symbols = sorted({p.symbol for p in spans})
        try:
            data = shared.read_table(table, columns=[*KEYS[kind], "ts_event"], symbols=symbols)
        except shared.DatasetError as exc:
            raise HealError(str(exc)) from None
        near = _near(data, spans)
        data = data.filter(pa.array(near))
        out[kind] = set(zip(*(data.column(c).to_pylist() for c in KEYS[kind]), strict=True))
    return out


def _near(data: pa.Table, spans: Iterable[Planned]) -> np.ndarray:
    times = np.asarray(data.column("ts_event").cast(pa.int64()).to_numpy(), dtype=np.int64)
    symbols = np.asarray(data.column("symbol").to_pylist(), dtype=object)
    mask = np.zeros(data.num_rows, dtype=bool)
    for span in spans:
        same = symbols == span.symbol
        inside = (times >= span.from_ns - _CAPTURED_MARGIN_NS) & (
            times <= span.to_ns + _CAPTURED_MARGIN_NS
        )
        mask |= same & inside
    return mask


def _new_rows(
    table: pa.Table, kind: EventKind, known: dict[EventKind, set[tuple[Any, ...]]]
) -> pa.Table:
    """The rows whose key the recording (or an earlier span of this heal) does not hold yet."""
    seen = known.setdefault(kind, set())
    keys = zip(*(table.column(c).to_pylist() for c in KEYS[kind]), strict=True)
    keep = []
    for key in keys:
        keep.append(key not in seen)
        seen.add(key)
    return table.filter(pa.array(keep, pa.bool_())) if table.num_rows else table


def _in_time_order(table: pa.Table) -> pa.Table:
    times = np.asarray(table.column("ts_event").cast(pa.int64()).to_numpy(), dtype=np.int64)
    return table.take(pa.array(np.argsort(times, kind="stable")))


# --- writing -------------------------------------------------------------------------------------


def _write(folder: Path, tables: dict[EventKind, pa.Table]) -> tuple[str, ...]:
    """Each table's new rows as the next healed part, with their `source` (not yet counted)."""
    files = []
    for kind, table in sorted(tables.items()):
        rows = table.append_column(
            healed.SOURCE, pa.array([SOURCES[kind]] * table.num_rows, pa.string())
        )
        rel = healed.relative(str(kind), healed.next_number(folder, str(kind)))
        atomic.write_parquet(folder / rel, rows)
        files.append(rel)
    return tuple(files)


def _heal_id(at_ns: int, current: audit.Audit) -> str:
    """`heal-20261204T210500Z` (with `-2`, `-3`, ... after a heal of the same second)."""
    base = f"heal-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(at_ns / 1e9))}"
    taken = {h.id for h in current.heals}
    return next(
        name
        for n in range(1, len(taken) + 2)
        if (name := base if n == 1 else f"{base}-{n}") not in taken
    )


# --- saying what happened ------------------------------------------------------------------------


def _report(name: str, folder: Path, **fields: Any) -> HealReport:
    return HealReport(session=name, path=str(folder), **fields)


def _dry_message(plan: list[Planned], left: int | None) -> str:
    if not plan:
        return "nothing to heal"
    room = "no daily limit" if left is None else f"{left} left today"
    return (
        f"would fetch {len(plan)} span(s) over REST: at least {len(plan)} REST call(s) "
        f"({room}); nothing spent"
    )


def _why_nothing(current: audit.Audit) -> str:
    if current.reconciliation is not None:
        if current.reconciliation.complete:
            return "the last reconciliation found nothing missing"
        return "every missing span was healed after the last reconciliation"
    return "not reconciled, and no quote or trade gaps were recorded; run `massive reconcile` first"


def _done_message(name: str, rows: dict[str, int], fetched: _Fetched) -> str:
    added = ", ".join(f"{n:,} {kind}" for kind, n in sorted(rows.items())) or "no new rows"
    text = (
        f"{name}: healed {len(fetched.healed)} span(s): {added} added "
        f"with {fetched.calls} REST call(s)"
    )
    if fetched.unhealed:
        text += (
            f"; {len(fetched.unhealed)} span(s) not fetched (the REST quota ran out): "
            "run `massive heal` again when it allows"
        )
    return text
