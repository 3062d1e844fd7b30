"""Comparing a recording's trades or quotes with Massive's record of them, row for row.

One owner of what "the same event" means, so `massive reconcile`, heals and the fetcher's
automatic mode count alike:

- trades are the same event when they share (symbol, trade_id, exchange); quotes when they share
  (symbol, sequence). A key seen twice on one side pairs with its second sighting on the other.
- a paired row *differs* when a compared field differs: price, size, exchange and the sorted
  conditions of a trade; bid/ask price, size and exchange of a quote; and for both the event time
  at millisecond resolution (the WebSocket carries milliseconds, REST and flat files ns). A field
  only one side has is not compared. Two NaN prices are equal.
- only rows inside the compared spans count, on both sides, at millisecond resolution.
- missing spans are the maximal runs of consecutive missing reference rows in reference time
  order, per symbol.

Both sides are Arrow tables in the storage schema (mesh/datasets/columns.py); the work is done
on whole columns (dictionary codes, one sort, numpy), never row by row, so a full day of every
symbol compares in well under a second per million rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mesh.datasets.audit import MAX_SPANS_LISTED, EventKind, Span, SymbolResult
from mesh.times import to_ns

NS_PER_MS = 1_000_000

KEYS: dict[EventKind, tuple[str, ...]] = {
    EventKind.TRADES: ("symbol", "trade_id", "exchange"),
    EventKind.QUOTES: ("symbol", "sequence"),
}
FIELDS: dict[EventKind, tuple[str, ...]] = {
    EventKind.TRADES: ("price", "size", "exchange", "conditions"),
    EventKind.QUOTES: (
        "bid_price",
        "bid_size",
        "bid_exchange",
        "ask_price",
        "ask_size",
        "ask_exchange",
    ),
}
# the columns a comparison reads (what a reader needs to load)
COLUMNS: dict[EventKind, tuple[str, ...]] = {
    kind: tuple(dict.fromkeys((*KEYS[kind], *FIELDS[kind], "ts_event"))) for kind in EventKind
}


@dataclass(frozen=True)
class Comparison:
    """Per-symbol results, and Massive's rows the recording lacks (reference time order)."""

    kind: EventKind
    results: tuple[SymbolResult, ...]
    missing_rows: pa.Table

    def result(self, symbol: str) -> SymbolResult | None:
        return next((r for r in self.results if r.symbol == symbol), None)


def compare(
    kind: EventKind,
    recorded: pa.Table,
    reference: pa.Table,
    *,
    spans: Sequence[tuple[int, int]] | None = None,
    symbols: Iterable[str] = (),
    max_spans: int = MAX_SPANS_LISTED,
) -> Comparison:
    """Compare `recorded` with `reference` (both storage-schema tables of `kind`).

    `spans` are inclusive (from_ns, to_ns) windows of event time; only rows inside one count (all
    rows when None). `symbols` are listed in the results even when neither side has a row of them.
    """
    kind = EventKind(kind)
    _require(recorded, kind, "recorded")
    _require(reference, kind, "reference")
    recorded = _inside(recorded, spans)
    reference = _inside(reference, spans)
    n_rec, n_ref = recorded.num_rows, reference.num_rows

    # one code per distinct key over both sides, then pair the k-th sighting on each side
    key = _key_codes([_both(recorded, reference, name) for name in KEYS[kind]])
    side = np.concatenate([np.zeros(n_rec, np.int8), np.ones(n_ref, np.int8)])
    order = np.argsort(key, kind="stable")  # recorded rows first within each key (stable)
    sorted_key, sorted_side = key[order], side[order]
    n = n_rec + n_ref
    positions = np.arange(n)
    new_key = np.ones(n, bool)
    new_key[1:] = sorted_key[1:] != sorted_key[:-1]
    key_start = np.maximum.accumulate(np.where(new_key, positions, 0)) if n else positions
    new_part = new_key.copy()
    new_part[1:] |= sorted_side[1:] != sorted_side[:-1]
    part_start = np.maximum.accumulate(np.where(new_part, positions, 0)) if n else positions
    rank = positions - part_start
    # recorded rows of each key: from key_start up to the first reference row of the key
    group = np.cumsum(new_key) - 1
    rec_per_key = np.bincount(group[sorted_side == 0], minlength=int(group[-1]) + 1 if n else 0)
    is_ref = sorted_side == 1
    ref_rank = rank[is_ref]
    ref_group = group[is_ref]
    paired = ref_rank < rec_per_key[ref_group]
    ref_rows = order[is_ref] - n_rec  # reference row index of each sorted reference position
    rec_rows = order[key_start[is_ref] + ref_rank]  # partner position (valid where paired)
    matched_ref = ref_rows[paired]
    matched_rec = rec_rows[paired]

    differs = _differs(kind, recorded, reference, matched_rec, matched_ref)
    ref_missing = np.ones(n_ref, bool)
    ref_missing[matched_ref] = False
    rec_extra = np.ones(n_rec, bool)
    rec_extra[matched_rec] = False

    names, rec_sym, ref_sym = _symbol_codes(recorded, reference, symbols)
    width = len(names)

    def count(codes: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        chosen = codes if mask is None else codes[mask]
        return np.bincount(chosen, minlength=width).astype(np.int64)

    recorded_n, reference_n = count(rec_sym), count(ref_sym)
    missing_n, extra_n = count(ref_sym, ref_missing), count(rec_sym, rec_extra)
    differing_n = count(ref_sym[matched_ref], differs)
    matched_n = count(ref_sym[matched_ref], ~differs)

    ref_time = to_ns(reference.column("ts_event")) if n_ref else np.zeros(0, np.int64)
    spans_of, missing_order = _missing_spans(ref_sym, ref_time, ref_missing, width, max_spans)
    results = tuple(
        SymbolResult(
            symbol=names[i],
            kind=kind,
            recorded=int(recorded_n[i]),
            reference=int(reference_n[i]),
            matched=int(matched_n[i]),
            missing=int(missing_n[i]),
            extra=int(extra_n[i]),
            differing=int(differing_n[i]),
            missing_spans=tuple(spans_of.get(i, ())),
        )
        for i in np.argsort(np.array(names, dtype=object), kind="stable")
    )
    return Comparison(kind, results, reference.take(pa.array(missing_order, pa.int64())))


# --- the pieces ----------------------------------------------------------------------------------


def _require(table: pa.Table, kind: EventKind, side: str) -> None:
    lacking = [c for c in (*KEYS[kind], "ts_event") if c not in table.column_names]
    if lacking:
        raise ValueError(f"the {side} {kind} lack the column(s) {', '.join(lacking)}")


def _ms(table: pa.Table) -> np.ndarray:
    return to_ns(table.column("ts_event")) // NS_PER_MS


def _inside(table: pa.Table, spans: Sequence[tuple[int, int]] | None) -> pa.Table:
    """The rows whose event time (ms) falls in one of `spans` (inclusive, compared in ms)."""
    if spans is None or table.num_rows == 0:
        return table
    ms = _ms(table)
    keep = np.zeros(len(ms), bool)
    for lo, hi in spans:
        keep |= (ms >= lo // NS_PER_MS) & (ms <= hi // NS_PER_MS)
    return table if keep.all() else table.filter(pa.array(keep))


def _both(recorded: pa.Table, reference: pa.Table, name: str) -> pa.ChunkedArray:
    """Column `name` of both sides, recorded first, in one type."""
    a, b = recorded.column(name), reference.column(name)
    if a.type != b.type:
        common = pa.string() if pa.types.is_string(a.type) or pa.types.is_string(b.type) else a.type
        a, b = a.cast(common), b.cast(common)
    return pa.chunked_array(a.chunks + b.chunks, a.type)


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, int]:
    """(a code per row, how many distinct values) — nulls share one code of their own."""
    if len(column) == 0:
        return np.zeros(0, np.int64), 1
    encoded = pc.dictionary_encode(column.combine_chunks(), null_encoding="encode")
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), len(encoded.dictionary)


def _key_codes(columns: list[pa.ChunkedArray]) -> np.ndarray:
    """One int64 per row, equal exactly when every key column is equal."""
    key, width = _codes(columns[0])
    for column in columns[1:]:
        codes, n = _codes(column)
        if width * n >= 2**62:  # renumber the key so far to keep the product small
            key = np.unique(key, return_inverse=True)[1].astype(np.int64)
            width = int(key.max()) + 1 if len(key) else 1
        key, width = key * n + codes, width * n
    return key


def _symbol_codes(
    recorded: pa.Table, reference: pa.Table, symbols: Iterable[str]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    listed = [s for s in dict.fromkeys(symbols)]
    both = _both(recorded, reference, "symbol")
    column = pa.chunked_array([pa.array(listed, pa.string()), *both.cast(pa.string()).chunks])
    encoded = pc.dictionary_encode(column.combine_chunks(), null_encoding="encode")
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)[len(listed) :]
    names = [s if s is not None else "" for s in encoded.dictionary.to_pylist()]
    n_rec = recorded.num_rows
    return names, codes[:n_rec], codes[n_rec:]


def _differs(
    kind: EventKind,
    recorded: pa.Table,
    reference: pa.Table,
    rec_rows: np.ndarray,
    ref_rows: np.ndarray,
) -> np.ndarray:
    """For each matched pair, whether any compared field (both sides have) differs."""
    out = (
        _ms(recorded)[rec_rows] != _ms(reference)[ref_rows] if len(rec_rows) else np.zeros(0, bool)
    )
    have = set(recorded.column_names) & set(reference.column_names)
    for name in FIELDS[kind]:
        if name not in have:
            continue
        a, b = recorded.column(name), reference.column(name)
        if pa.types.is_list(a.type) or pa.types.is_list(b.type):
            out |= _lists_differ(a, b, rec_rows, ref_rows)
        else:
            out |= _values_differ(a, b, rec_rows, ref_rows)
    return out


def _numbers(column: pa.ChunkedArray, rows: np.ndarray) -> np.ndarray:
    taken = column.take(pa.array(rows, pa.int64())) if len(rows) else column.slice(0, 0)
    if pa.types.is_floating(taken.type) or pa.types.is_integer(taken.type):
        return taken.cast(pa.float64()).to_numpy()  # nulls become NaN
    return np.asarray(taken.to_pylist(), dtype=object)


def _values_differ(
    a: pa.ChunkedArray, b: pa.ChunkedArray, rec_rows: np.ndarray, ref_rows: np.ndarray
) -> np.ndarray:
    x, y = _numbers(a, rec_rows), _numbers(b, ref_rows)
    if x.dtype == object or y.dtype == object:
        return np.array([u != v for u, v in zip(x, y, strict=True)], bool)
    return ~((x == y) | (np.isnan(x) & np.isnan(y)))


def _sorted_lists(column: pa.ChunkedArray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(length of each list, its values sorted within each list, flattened); null = empty."""
    taken = column.take(pa.array(rows, pa.int64())).combine_chunks() if len(rows) else None
    if taken is None or len(taken) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    taken = pc.fill_null(taken, pa.scalar([], taken.type))
    lengths = pc.list_value_length(taken).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(taken).cast(pa.int64()).to_numpy(zero_copy_only=False)
    parents = np.repeat(np.arange(len(lengths)), lengths)
    order = np.lexsort((values, parents))
    return lengths, values[order]


def _lists_differ(
    a: pa.ChunkedArray, b: pa.ChunkedArray, rec_rows: np.ndarray, ref_rows: np.ndarray
) -> np.ndarray:
    la, va = _sorted_lists(a, rec_rows)
    lb, vb = _sorted_lists(b, ref_rows)
    out = la != lb
    same_length = ~out
    if not same_length.any():
        return out
    # keep the values of equal-length pairs: they line up element for element
    keep_a = np.repeat(same_length, la)
    keep_b = np.repeat(same_length, lb)
    unequal = va[keep_a] != vb[keep_b]
    if unequal.any():
        owners = np.repeat(np.flatnonzero(same_length), la[same_length])
        out[np.unique(owners[unequal])] = True
    return out


def _missing_spans(
    ref_sym: np.ndarray, ref_time: np.ndarray, missing: np.ndarray, width: int, max_spans: int
) -> tuple[dict[int, list[Span]], np.ndarray]:
    """Runs of consecutive missing reference rows per symbol (time order), and the missing rows."""
    if not missing.any():
        return {}, np.zeros(0, np.int64)
    order = np.lexsort((np.arange(len(ref_time)), ref_time, ref_sym))
    sym, time, gone = ref_sym[order], ref_time[order], missing[order]
    starts = gone.copy()
    starts[1:] &= ~gone[:-1] | (sym[1:] != sym[:-1])
    ends = gone.copy()
    ends[:-1] &= ~gone[1:] | (sym[1:] != sym[:-1])
    first, last = np.flatnonzero(starts), np.flatnonzero(ends)
    owner = sym[first]
    new_owner = np.ones(len(first), bool)
    new_owner[1:] = owner[1:] != owner[:-1]
    index = np.arange(len(first))
    listed = index - np.maximum.accumulate(np.where(new_owner, index, 0)) < max_spans
    spans: dict[int, list[Span]] = {}
    for code, lo, hi in zip(
        owner[listed].tolist(), first[listed].tolist(), last[listed].tolist(), strict=True
    ):
        spans.setdefault(code, []).append(
            Span(from_ns=int(time[lo]), to_ns=int(time[hi]), rows=hi - lo + 1)
        )
    return spans, order[gone]
