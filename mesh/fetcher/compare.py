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
from mesh.times import TIME, to_ns

NS_PER_MS = 1_000_000
# a key range up to this many (or 16 a row) is paired through a table indexed by key (64 MiB)
DIRECT_KEYS = 2**24

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
    recorded, rec_ns = _inside(recorded, spans)
    reference, ref_time = _inside(reference, spans)
    rec_ms, ref_ms = rec_ns // NS_PER_MS, ref_time // NS_PER_MS
    n_rec, n_ref = recorded.num_rows, reference.num_rows

    # one code per distinct key over both sides, then pair the k-th sighting on each side
    names, symbol_codes = _symbol_codes(recorded, reference, symbols)
    width = len(names)
    others = [_codes(_both(recorded, reference, name)) for name in KEYS[kind][1:]]
    key = _key_codes([(symbol_codes, max(1, width)), *others])
    matched_rec, matched_ref = _pairs(key, n_rec)

    differs = rec_ms[matched_rec] != ref_ms[matched_ref]
    differs |= _fields_differ(kind, recorded, reference, matched_rec, matched_ref)
    ref_missing = np.ones(n_ref, bool)
    ref_missing[matched_ref] = False
    rec_extra = np.ones(n_rec, bool)
    rec_extra[matched_rec] = False

    rec_sym, ref_sym = symbol_codes[:n_rec], symbol_codes[n_rec:]

    def count(codes: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        chosen = codes if mask is None else codes[mask]
        return np.bincount(chosen, minlength=width).astype(np.int64)

    recorded_n, reference_n = count(rec_sym), count(ref_sym)
    missing_n, extra_n = count(ref_sym, ref_missing), count(rec_sym, rec_extra)
    differing_n = count(ref_sym[matched_ref], differs)
    matched_n = count(ref_sym[matched_ref], ~differs)

    healed_n = (  # rows of the recording's healed layer (read with their `source`)
        count(rec_sym, recorded.column("source").is_valid().to_numpy(zero_copy_only=False))
        if "source" in recorded.column_names and n_rec
        else np.zeros(width, np.int64)
    )

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
            healed=int(healed_n[i]),
            missing_spans=tuple(spans_of.get(i, ())),
        )
        for i in range(width)
    )
    return Comparison(kind, results, reference.take(pa.array(missing_order, pa.int64())))


# --- the pieces ----------------------------------------------------------------------------------


def _require(table: pa.Table, kind: EventKind, side: str) -> None:
    lacking = [c for c in (*KEYS[kind], "ts_event") if c not in table.column_names]
    if lacking:
        raise ValueError(f"the {side} {kind} lack the column(s) {', '.join(lacking)}")


def _ns(table: pa.Table) -> np.ndarray:
    """Event times in ns (read in place when stored as the storage schema's timestamps)."""
    column = table.column("ts_event")
    if table.num_rows == 0:
        return np.zeros(0, np.int64)
    if column.type == TIME and column.null_count == 0:
        return _flat(column.cast(pa.int64()))
    return to_ns(column)


def _flat(column: pa.ChunkedArray) -> np.ndarray:
    """A numeric column without nulls as one numpy array (no copy for a single chunk)."""
    if column.num_chunks == 1:
        return column.chunk(0).to_numpy()
    return column.to_numpy()


def _inside(
    table: pa.Table, spans: Sequence[tuple[int, int]] | None
) -> tuple[pa.Table, np.ndarray]:
    """(the rows whose event time falls in one of `spans`, compared in ms; their times in ns)."""
    ns = _ns(table)
    if spans is None or table.num_rows == 0:
        return table, ns
    keep = np.zeros(len(ns), bool)
    for lo, hi in spans:  # whole milliseconds, as the recording has them
        keep |= (ns >= lo // NS_PER_MS * NS_PER_MS) & (ns < (hi // NS_PER_MS + 1) * NS_PER_MS)
    if keep.all():
        return table, ns
    return table.filter(pa.array(keep)), ns[keep]


def _pairs(key: np.ndarray, n_rec: int) -> tuple[np.ndarray, np.ndarray]:
    """(recorded row, reference row) of each pair: equal keys, the k-th sighting with the k-th.

    `key` holds the recorded rows' keys, then the reference rows'.
    """
    n = len(key)
    width = int(key.max()) + 1 if n else 1
    found = _pairs_with_sorted_reference(key, n_rec, width)
    if found is not None:
        return found
    shift = max(n, 1).bit_length()
    if width.bit_length() + shift < 63:
        # key and position in one int64: a plain (fast) sort keeps each key's recorded rows first
        packed = np.sort((key << shift) | np.arange(n))
        sorted_key, order = packed >> shift, packed & ((1 << shift) - 1)
    else:
        order = np.argsort(key, kind="stable")  # recorded rows first within each key (stable)
        sorted_key = key[order]
    is_ref = order >= n_rec
    same = sorted_key[1:] == sorted_key[:-1]
    if not (same & (is_ref[1:] == is_ref[:-1])).any():  # no key twice on one side
        at = np.flatnonzero(same)
        return order[at], order[at + 1] - n_rec
    positions = np.arange(n)
    new_key = np.concatenate([[True], ~same])
    key_start = np.maximum.accumulate(np.where(new_key, positions, 0))
    new_part = new_key.copy()
    new_part[1:] |= is_ref[1:] != is_ref[:-1]
    rank = positions - np.maximum.accumulate(np.where(new_part, positions, 0))
    group = np.cumsum(new_key) - 1
    rec_per_key = np.bincount(group[~is_ref], minlength=int(group[-1]) + 1)
    ref_rank, ref_group = rank[is_ref], group[is_ref]
    paired = ref_rank < rec_per_key[ref_group]
    ref_rows = order[is_ref] - n_rec
    rec_rows = order[key_start[is_ref] + ref_rank]  # the partner (valid where paired)
    return rec_rows[paired], ref_rows[paired]


def _pairs_with_sorted_reference(
    key: np.ndarray, n_rec: int, width: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """`_pairs` when the reference keys are strictly increasing (a flat file or REST answer of
    quotes: by ticker, then sequence) and no recorded key repeats: sort the recording only, then
    look each key up. None when that does not hold."""
    rec, ref = key[:n_rec], key[n_rec:]
    shift = max(n_rec, 1).bit_length()
    if not len(ref) or width.bit_length() + shift >= 63 or not (ref[1:] > ref[:-1]).all():
        return None
    if width <= max(DIRECT_KEYS, 16 * len(key)):
        # few possible keys (quotes' sequence numbers): each reference row's position in a table
        # indexed by key, looked up for every recorded row, in place of a sort and a search
        table = np.full(width, -1, np.int64 if len(ref) >= 2**31 else np.int32)
        table[ref] = np.arange(len(ref), dtype=table.dtype)
        at = table[rec]
        rec_rows = np.flatnonzero(at >= 0)
        ref_rows = at[rec_rows].astype(np.int64)
        if len(ref_rows) and np.bincount(ref_rows).max() > 1:
            return None  # a recorded key twice: pair sighting by sighting
        return rec_rows, ref_rows
    packed = np.sort((rec << shift) | np.arange(n_rec))
    rec_sorted, rec_order = packed >> shift, packed & ((1 << shift) - 1)
    if (rec_sorted[1:] == rec_sorted[:-1]).any():
        return None
    at = np.minimum(np.searchsorted(ref, rec_sorted), len(ref) - 1)
    hit = ref[at] == rec_sorted
    return rec_order[hit], at[hit]


def _both(recorded: pa.Table, reference: pa.Table, name: str) -> pa.ChunkedArray:
    """Column `name` of both sides, recorded first, in one type."""
    a, b = recorded.column(name), reference.column(name)
    if a.type != b.type:
        common = pa.string() if pa.types.is_string(a.type) or pa.types.is_string(b.type) else a.type
        a, b = a.cast(common), b.cast(common)
    return pa.chunked_array(a.chunks + b.chunks, a.type)


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, int]:
    """(a code per row, an upper bound of the codes), equal codes exactly for equal values.

    Integers (and text that is exactly an integer's decimal form, like trade ids) are their value
    less the smallest; other text is numbered by a hash of its distinct values. Nulls get a code
    of their own.
    """
    n = len(column)
    if n == 0:
        return np.zeros(0, np.int64), 1
    values: np.ndarray | None = None
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        values = _integer_text(column)
    elif pa.types.is_integer(column.type) and column.null_count == 0:
        values = column.to_numpy().astype(np.int64, copy=False)
    if values is not None:
        lo, hi = int(values.min()), int(values.max())
        if hi - lo < 2**62:
            return values - lo, hi - lo + 1
    codes, dictionary = _encode(column.combine_chunks())
    return codes, len(dictionary)


def _integer_text(column: pa.ChunkedArray) -> np.ndarray | None:
    """The values as int64 when every one is an integer written plainly ("52983525035312").

    Arrow's cast takes exactly the decimal integers, with an optional sign and leading zeros;
    "plainly" rules out those spellings ("+7", "007", "-0"), which name other trade ids as text.
    The spelling is read off each value's first two bytes (a tenth of the time of Arrow's string
    kernels, which matters for a day of trade ids).
    """
    if column.null_count:
        return None
    try:
        values = pc.cast(column, pa.int64()).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    for chunk in column.chunks:
        if len(chunk) and _spelled(chunk):
            return None
    return values


def _spelled(chunk: pa.Array) -> bool:
    """Whether a value of a chunk of integer text (each at least one byte) is spelled "+..",
    "-0.." or "0" followed by more digits."""
    width = 8 if pa.types.is_large_string(chunk.type) else 4
    _, offsets_buffer, data_buffer = chunk.buffers()
    offsets: np.ndarray = np.frombuffer(
        offsets_buffer, np.int64 if width == 8 else np.int32, len(chunk) + 1, chunk.offset * width
    ).astype(np.int64)
    data = np.frombuffer(data_buffer, np.uint8)
    starts = offsets[:-1]
    first = data[starts]
    second = data[np.minimum(starts + 1, len(data) - 1)]
    longer = offsets[1:] - starts > 1
    plus, minus, zero = ord("+"), ord("-"), ord("0")
    return bool(
        (
            (first == plus) | (longer & (((first == minus) & (second == zero)) | (first == zero)))
        ).any()
    )


def _encode(array: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(the index of each value in the dictionary, the dictionary of distinct values).

    Values that come in long runs (symbols of a file sorted by ticker) are numbered run by run.
    """
    n = len(array)
    sample = array.slice(0, 4096)
    if n > 1 and len(pc.run_end_encode(sample).values) <= len(sample) // 8:
        runs = pc.run_end_encode(array)
        if len(runs.values) <= n // 8:
            values = pc.dictionary_encode(runs.values, null_encoding="encode")
            ends = runs.run_ends.to_numpy(zero_copy_only=False)
            lengths = np.diff(ends, prepend=0)
            run_codes = values.indices.to_numpy(zero_copy_only=False)
            return np.repeat(run_codes, lengths), values.dictionary
    encoded = pc.dictionary_encode(array, null_encoding="encode")
    return encoded.indices.to_numpy(zero_copy_only=False), encoded.dictionary


def _key_codes(parts: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """One int64 per row, equal exactly when every key column is equal."""
    key, width = parts[0]
    for codes, n in parts[1:]:
        if width * n >= 2**62:  # renumber the key so far to keep the product small
            key = np.unique(key, return_inverse=True)[1].astype(np.int64)
            width = int(key.max()) + 1 if len(key) else 1
        if width * n >= 2**62:
            codes = np.unique(codes, return_inverse=True)[1].astype(np.int64)
            n = int(codes.max()) + 1 if len(codes) else 1
        key, width = key * n + codes, width * n
    return key


def _symbol_codes(
    recorded: pa.Table, reference: pa.Table, symbols: Iterable[str]
) -> tuple[list[str], np.ndarray]:
    """(every symbol, in name order; each row's symbol as an index into them, both sides).

    The reference (a flat file or REST answer: symbols in long runs) is numbered run by run; the
    recording, which interleaves its symbols, is looked up in the reference's few names, and only
    a chunk holding a name the reference lacks is numbered on its own. The small dictionaries are
    then merged.
    """
    reference_encoded = [_encode(chunk) for chunk in _text_chunks(reference)]
    known = pa.array(
        sorted({name for _, d in reference_encoded for name in d.to_pylist() if name is not None}),
        pa.string(),
    )
    recorded_encoded = []
    for chunk in _text_chunks(recorded):
        found = pc.index_in(chunk, value_set=known) if len(known) else None
        if found is not None and found.null_count == 0:
            recorded_encoded.append((found.to_numpy(zero_copy_only=False), known))
        else:  # a null symbol or one the reference lacks
            recorded_encoded.append(_encode(chunk))
    encoded = [*recorded_encoded, *reference_encoded]
    found_names = [name if name is not None else "" for _, d in encoded for name in d.to_pylist()]
    # numbered in name order, so a reference sorted by ticker has its codes in order too
    names = sorted({*symbols, *found_names})
    index = {name: i for i, name in enumerate(names)}
    out = np.empty(recorded.num_rows + reference.num_rows, np.int64)
    at = 0
    for codes, dictionary in encoded:
        mapping = np.array(
            [index[name if name is not None else ""] for name in dictionary.to_pylist()], np.int64
        )
        out[at : at + len(codes)] = mapping[codes]
        at += len(codes)
    return names, out


def _text_chunks(table: pa.Table) -> list[pa.Array]:
    return [chunk for chunk in table.column("symbol").cast(pa.string()).chunks if len(chunk)]


def _fields_differ(
    kind: EventKind,
    recorded: pa.Table,
    reference: pa.Table,
    rec_rows: np.ndarray,
    ref_rows: np.ndarray,
) -> np.ndarray:
    """For each pair, whether any compared field both sides have differs (keys are equal)."""
    out = np.zeros(len(rec_rows), bool)
    have = set(recorded.column_names) & set(reference.column_names)
    for name in FIELDS[kind]:
        if name not in have or name in KEYS[kind]:
            continue
        a, b = recorded.column(name), reference.column(name)
        if pa.types.is_list(a.type) or pa.types.is_list(b.type):
            out |= _lists_differ(a, b, rec_rows, ref_rows)
        else:
            out |= _values_differ(a, b, rec_rows, ref_rows)
    return out


def _numbers(column: pa.ChunkedArray) -> np.ndarray | None:
    """A numeric column as numpy (nulls as NaN), or None for another type."""
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        return None
    if column.null_count:
        column = column.cast(pa.float64())
    return _flat(column)


def _values_differ(
    a: pa.ChunkedArray, b: pa.ChunkedArray, rec_rows: np.ndarray, ref_rows: np.ndarray
) -> np.ndarray:
    x, y = _numbers(a), _numbers(b)
    if x is None or y is None:
        u = a.take(pa.array(rec_rows, pa.int64())).to_pylist()
        v = b.take(pa.array(ref_rows, pa.int64())).to_pylist()
        return np.array([p != q for p, q in zip(u, v, strict=True)], bool)
    x, y = x[rec_rows], y[ref_rows]
    differ = x != y
    if (x.dtype.kind == "f" or y.dtype.kind == "f") and differ.any():
        at = np.flatnonzero(differ)
        differ[at] = ~(np.isnan(x[at]) & np.isnan(y[at]))  # two NaNs are equal
    return differ


def _list_parts(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offsets, flattened int64 values) of a list column, null lists as empty ones."""
    array = column.combine_chunks()
    if array.null_count:
        array = pc.fill_null(array, pa.scalar([], array.type))
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    values = pc.list_flatten(array).cast(pa.int64()).to_numpy(zero_copy_only=False)
    return offsets, lengths, values


def _signatures(offsets: np.ndarray, values: np.ndarray) -> np.ndarray | None:
    """Each list's codes as a bit set, when that is exact: codes 0..63, none twice in a list."""
    if len(values) and (values.min() < 0 or values.max() > 63):
        return None
    bits = np.left_shift(np.uint64(1), values.astype(np.uint64))
    sums = np.concatenate([[np.uint64(0)], np.cumsum(bits, dtype=np.uint64)])
    signature = sums[offsets[1:]] - sums[offsets[:-1]]
    if (np.bitwise_count(signature) != np.diff(offsets)).any():  # a code twice in one list
        return None
    return signature


def _lists_differ(
    a: pa.ChunkedArray, b: pa.ChunkedArray, rec_rows: np.ndarray, ref_rows: np.ndarray
) -> np.ndarray:
    """Whether the lists differ as sorted lists (conditions in any order)."""
    oa, la, va = _list_parts(a)
    ob, lb, vb = _list_parts(b)
    sa, sb = _signatures(oa, va), _signatures(ob, vb)
    if sa is not None and sb is not None:
        return sa[rec_rows] != sb[ref_rows]
    return _sorted_lists_differ(
        a.take(pa.array(rec_rows, pa.int64())), b.take(pa.array(ref_rows, pa.int64()))
    )


def _sorted_lists_differ(a: pa.ChunkedArray, b: pa.ChunkedArray) -> np.ndarray:
    """Row by row, whether two aligned list columns differ once each list is sorted."""
    oa, la, va = _list_parts(a)
    ob, lb, vb = _list_parts(b)
    va = va[np.lexsort((va, np.repeat(np.arange(len(la)), la)))]
    vb = vb[np.lexsort((vb, np.repeat(np.arange(len(lb)), lb)))]
    out = la != lb
    same_length = ~out
    if not same_length.any():
        return out
    # the values of equal-length pairs line up element for element
    unequal = va[np.repeat(same_length, la)] != vb[np.repeat(same_length, lb)]
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
    same_symbol = ref_sym[1:] == ref_sym[:-1]
    run_starts = np.concatenate([[0], np.flatnonzero(~same_symbol) + 1])
    in_order = (ref_time[1:] >= ref_time[:-1]) | ~same_symbol
    if len(run_starts) == len(np.unique(ref_sym[run_starts])) and in_order.all():
        # flat files and REST pages hold each symbol in one run, in time order: no sort needed
        order = np.arange(len(ref_time))
    else:
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
