"""The data-quality report of a recording: what in its trades and quotes looks wrong on its face.

Reconciliation proves a recording against Massive's own record; this report needs nothing but
the recording, so it can be run at any time, offline, on any session. Each check looks for one
kind of trouble a user would otherwise find in a backtest (docs/data.md, "Data quality"):

- crossed quotes (bid above ask) and locked quotes (bid equal to ask), both sides quoted;
- events out of order: a trade or quote whose event time is earlier than the one recorded before
  it, per table and symbol, in recorded order (captured rows: a healed row fills a hole);
- duplicates: a trade twice (symbol, trade id, exchange), a quote twice (symbol, sequence);
- trades far outside the NBBO in force (the last quote at or before the trade): more than
  `max(5 cents, 0.5% of the mid)` below the bid or above the ask. Trades the NBBO does not
  protect are left out: Form T (extended hours, condition 12), odd lots (37) and the other
  conditions whose trades never set a bar's high or low (average price, cash, derivatively
  priced, next day, prior reference price, out of sequence, contingent, ...);
- price spikes: a trade whose log return from the symbol's previous trade is more than
  `SPIKE_K` times the symbol's robust per-trade volatility (1.4826 x the median absolute
  deviation of its returns scaled by `sqrt(1 + time apart / median time apart)`, at least one
  cent), regular and extended hours apart; a print that jumps away and straight back counts once;
- bad prices: a trade whose price is missing (NaN), infinite, zero or negative, a quote with a
  side NaN or infinite;
- silences: a symbol without a single trade or quote for longer than
  `max(60 s, 50 x its pace)`, its pace being the mean time between its events in the half hour
  (ET) where the silence begins; a half hour with fewer than 10 events keeps no pace to miss.
  Counted only while the recorder was running and within 04:00-20:00 ET of trading days (17:00 on an early close). (A mean, not a median:
  a trade and the quote updates around it come together, and the median would be the short
  time inside such a cluster, not the time between them.)

Everything is vectorised over the whole session (numpy, pyarrow): a full sim day of 36 symbols
(~90,000 trades, ~180,000 quotes) is checked in 0.3 to 0.8 s, reading included.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mesh import calendar
from mesh.datasets.audit import Quality, QualityFinding, QualityIssue, Span
from mesh.datasets.dataset import Dataset, open_path
from mesh.datasets.read import read_table
from mesh.datasets.tables import TableKind
from mesh.times import to_ns

EXAMPLES = 5  # spans listed per symbol and issue; `count` always covers every one
NBBO_MIN_DOLLARS = 0.05
NBBO_SHARE_OF_MID = 0.005
SPIKE_K = 25.0
MAD_TO_SIGMA = 1.4826
SILENCE_MIN_NS = 60 * calendar.NS
SILENCE_TIMES_PACE = 50
SILENCE_MIN_EVENTS = 10  # in a half hour: fewer, and the symbol keeps no pace to miss
HALF_HOUR_NS = 30 * 60 * calendar.NS
# Trades the NBBO does not protect: Form T (12), odd lots (37), and every condition whose trades
# never set a bar's high or low (Massive's `updates_high_low` false, /v3/reference/conditions).
UNPROTECTED = frozenset({2, 7, 10, 12, 13, 15, 16, 20, 21, 22, 29, 32, 37, 52, 53})
# Of those, the ones whose prices are not the market's at all (left out of the spike check).
OFF_MARKET = UNPROTECTED - {12}

_HOUR = 3600 * calendar.NS
_MINUTE = 60 * calendar.NS
_TRADE_COLUMNS = ["price", "exchange", "trade_id", "conditions", "ts_event", "source"]
_QUOTE_COLUMNS = ["bid_price", "ask_price", "sequence", "ts_event", "source"]

Findings = dict[tuple[str, QualityIssue], tuple[int, list[Span]]]


def check(session_path: Path | str, *, now_ns: int | None = None) -> Quality:
    """The quality report of the recording at `session_path` (capture and healed rows as read).

    Raises `DatasetError` when the recording cannot be opened or read (one line naming the file);
    any data that can be read gives findings, never an exception.
    """
    dataset = open_path(Path(session_path))
    trades = _read(dataset, TableKind.TRADES, _TRADE_COLUMNS)
    quotes = _read(dataset, TableKind.QUOTES, _QUOTE_COLUMNS)
    return Quality(
        checked_ns=time.time_ns() if now_ns is None else now_ns,
        findings=tuple(find(trades, quotes, runs=_runs(dataset.manifest))),
    )


def find(
    trades: pa.Table | None,
    quotes: pa.Table | None,
    *,
    runs: Sequence[tuple[int, int]] = (),
) -> list[QualityFinding]:
    """Every finding in these trades and quotes (rows in recorded order), by symbol then issue.

    `runs` are the spans the recorder was running (ns); silences count only inside them, or
    anywhere in the recorded time when none of them overlaps it.
    """
    symbols = _symbols(trades, quotes)
    t = _Events.of(trades, symbols, _TRADE_COLUMNS)
    q = _Events.of(quotes, symbols, _QUOTE_COLUMNS)
    found: Findings = {}

    def add(codes: np.ndarray, issue: QualityIssue, lo: Any, hi: Any, rows: Any = 1) -> None:
        """Count findings of `issue` (one per element of `codes`: its symbol), keep examples."""
        codes = np.asarray(codes, np.int64)
        if not len(codes):
            return
        lo, hi, rows = (
            np.broadcast_to(np.asarray(x, np.int64), codes.shape) for x in (lo, hi, rows)
        )
        counts = np.bincount(codes, weights=np.maximum(rows, 1))  # a silence has no rows
        order = np.argsort(codes, kind="stable")
        grouped = codes[order]
        starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
        for start in starts.tolist():
            code = int(grouped[start])
            key = (symbols[code], issue)
            count, examples = found.get(key, (0, []))
            picked = order[start : start + EXAMPLES]
            picked = picked[codes[picked] == code][: EXAMPLES - len(examples)]
            examples += [
                Span(from_ns=a, to_ns=b, rows=r)
                for a, b, r in zip(
                    lo[picked].tolist(), hi[picked].tolist(), rows[picked].tolist(), strict=True
                )
            ]
            found[key] = (count + int(counts[code]), examples)

    with np.errstate(all="ignore"):  # NaN and infinite prices are findings, not warnings
        for events in (t, q):
            _out_of_order(events, add)
        _duplicate_trades(t, add)
        _duplicate_quotes(q, add)
        _bad_prices(t, q, add)
        _crossed_and_locked(q, add)
        _outside_nbbo(t, q, add)
        _spikes(t, add)
        _silences(t, q, runs, add)
    return [
        QualityFinding(symbol=symbol, issue=issue, count=count, examples=tuple(examples))
        for (symbol, issue), (count, examples) in sorted(
            found.items(), key=lambda kv: (kv[0][0], list(QualityIssue).index(kv[0][1]))
        )
    ]


def summary(quality: Quality | None) -> str:
    """One line for people: "clean", or the counts of each issue across symbols."""
    if quality is None:
        return "not checked"
    totals: dict[QualityIssue, int] = defaultdict(int)
    for finding in quality.findings:
        totals[finding.issue] += finding.count
    if not totals:
        return "clean"
    return ", ".join(
        f"{totals[issue]:,} {_noun(issue, totals[issue])}"
        for issue in QualityIssue
        if issue in totals
    )


_NOUNS = {
    QualityIssue.CROSSED_QUOTE: ("crossed quote", "crossed quotes"),
    QualityIssue.LOCKED_QUOTE: ("locked quote", "locked quotes"),
    QualityIssue.OUT_OF_ORDER: ("event out of order", "events out of order"),
    QualityIssue.DUPLICATE: ("duplicate", "duplicates"),
    QualityIssue.OUTSIDE_NBBO: ("trade outside the NBBO", "trades outside the NBBO"),
    QualityIssue.PRICE_SPIKE: ("price spike", "price spikes"),
    QualityIssue.BAD_PRICE: ("bad price", "bad prices"),
    QualityIssue.SILENCE: ("silence", "silences"),
}


def _noun(issue: QualityIssue, count: int) -> str:
    one, many = _NOUNS.get(issue, (str(issue), str(issue)))
    return one if count == 1 else many


# --- reading -------------------------------------------------------------------------------------


def _read(dataset: Dataset, kind: TableKind, columns: list[str]) -> pa.Table | None:
    table = dataset.table(kind)
    if table is None or not table.files:
        return None
    # healed rows come back placed in time among the captured ones, with `source` set
    return read_table(table, columns=[c for c in columns if c != "source"], source=True)


def _runs(manifest: Any) -> list[tuple[int, int]]:
    """The recorder's runs as (start, end) ns; a run still going ends at the last event."""
    last = manifest.get("last_event_ns") if isinstance(manifest, dict) else None
    runs = manifest.get("runs") if isinstance(manifest, dict) else None
    out = []
    for run in runs if isinstance(runs, list) else []:
        start = run.get("started_ns") if isinstance(run, dict) else None
        end = run.get("ended_ns") if isinstance(run, dict) else None
        end = end if isinstance(end, int) else last if isinstance(last, int) else 2**62
        if isinstance(start, int):
            out.append((start, max(start, end)))
    return out


def _symbols(*tables: pa.Table | None) -> list[str]:
    found: set[str] = set()
    for table in tables:
        if table is not None and "symbol" in table.column_names and table.num_rows:
            found.update(s for s in pc.unique(table.column("symbol")).to_pylist() if s is not None)
    return sorted(found)


class _Events:
    """One table's rows as numpy columns, with each row's symbol as an index into the symbols."""

    def __init__(self, columns: dict[str, np.ndarray], n: int) -> None:
        self.n = n
        self.columns = columns
        self.code: np.ndarray = columns.pop("code")
        self.ts: np.ndarray = columns.pop("ts_event")

    def __getitem__(self, name: str) -> np.ndarray | None:
        return self.columns.get(name)

    @classmethod
    def of(cls, table: pa.Table | None, symbols: list[str], names: list[str]) -> _Events:
        if (
            table is None
            or "ts_event" not in table.column_names
            or "symbol" not in table.column_names
        ):
            return cls({"code": np.empty(0, np.int64), "ts_event": np.empty(0, np.int64)}, 0)
        index = pc.index_in(table.column("symbol"), value_set=pa.array(symbols, pa.string()))
        keep = pc.is_valid(index)
        if not pc.all(keep).as_py():
            table, index = table.filter(keep), index.filter(keep)
        columns: dict[str, np.ndarray] = {
            "code": np.asarray(index.to_numpy(zero_copy_only=False), np.int64),
            "ts_event": to_ns(table.column("ts_event")).astype(np.int64),
        }
        for name in names:
            if name in ("ts_event", "conditions", "source") or name not in table.column_names:
                continue
            column = table.column(name)
            if pa.types.is_floating(column.type):
                columns[name] = np.asarray(column.to_numpy(zero_copy_only=False), np.float64)
            elif pa.types.is_integer(column.type):
                columns[name] = np.asarray(column.fill_null(-1).to_numpy(), np.int64)
                columns[name + "_valid"] = np.asarray(
                    pc.is_valid(column).to_numpy(zero_copy_only=False)
                )
            elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                encoded = pc.dictionary_encode(column).combine_chunks()
                codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
                columns[name] = np.asarray(codes, np.int64)
        if "source" in table.column_names:  # rows a heal added carry where they came from
            columns["captured"] = np.asarray(
                pc.is_null(table.column("source")).to_numpy(zero_copy_only=False), bool
            )
        if "conditions" in names and "conditions" in table.column_names:
            columns["unprotected"] = _has_any(table.column("conditions"), UNPROTECTED)
            columns["off_market"] = _has_any(table.column("conditions"), OFF_MARKET)
        return cls(columns, table.num_rows)


def _has_any(column: pa.ChunkedArray, codes: frozenset[int]) -> np.ndarray:
    """Per row: whether its conditions list holds any of `codes`."""
    out = np.zeros(len(column), dtype=bool)
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        return out
    array = column.combine_chunks()
    values = pc.list_flatten(array)
    if len(values) == 0:
        return out
    parents = np.asarray(pc.list_parent_indices(array).to_numpy(zero_copy_only=False), np.int64)
    hit = np.asarray(
        pc.is_in(values, value_set=pa.array(sorted(codes), values.type)).to_numpy(
            zero_copy_only=False
        ),
        bool,
    )
    out[parents[hit]] = True
    return out


Add = Any  # the `add` callback of `find`


def _by_symbol_and_time(events: _Events) -> np.ndarray:
    return np.lexsort((events.ts, events.code))


# --- checks --------------------------------------------------------------------------------------


def _out_of_order(events: _Events, add: Add) -> None:
    """Captured rows only: a healed row fills a hole, so it is older than the rows around it."""
    if events.n < 2:
        return
    captured = events["captured"]
    rows = np.arange(events.n) if captured is None else np.flatnonzero(captured)
    order = rows[np.argsort(events.code[rows], kind="stable")]  # recorded order per symbol
    code, ts = events.code[order], events.ts[order]
    late = np.flatnonzero((code[1:] == code[:-1]) & (ts[1:] < ts[:-1])) + 1
    add(
        code[late],
        QualityIssue.OUT_OF_ORDER,
        ts[late],
        ts[late - 1],
    )


def _duplicate_trades(t: _Events, add: Add) -> None:
    trade_id, exchange = t["trade_id"], t["exchange"]
    if trade_id is None or t.n < 2:
        return
    exchange = exchange if exchange is not None else np.zeros(t.n, np.int64)
    known = np.flatnonzero(trade_id >= 0)
    _duplicates(t, known, (exchange[known], trade_id[known]), add)


def _duplicate_quotes(q: _Events, add: Add) -> None:
    sequence, valid = q["sequence"], q["sequence_valid"]
    if sequence is None or valid is None or q.n < 2:
        return
    known = np.flatnonzero(valid)
    _duplicates(q, known, (sequence[known],), add)


def _duplicates(events: _Events, rows: np.ndarray, keys: tuple[np.ndarray, ...], add: Add) -> None:
    code, ts = events.code[rows], events.ts[rows]
    order = np.lexsort((np.arange(len(rows)), *keys, code))  # the first copy recorded stays first
    same = code[order][1:] == code[order][:-1]
    for key in keys:
        same &= key[order][1:] == key[order][:-1]
    repeat = np.flatnonzero(same) + 1
    first, again = order[repeat - 1], order[repeat]
    add(
        code[again],
        QualityIssue.DUPLICATE,
        ts[first],
        ts[again],
    )


def _bad_prices(t: _Events, q: _Events, add: Add) -> None:
    price = t["price"]
    if price is not None:
        bad = np.flatnonzero(~(np.isfinite(price) & (price > 0)))  # NaN, infinite, zero, negative
        add(
            t.code[bad],
            QualityIssue.BAD_PRICE,
            t.ts[bad],
            t.ts[bad],
        )
    bid, ask = q["bid_price"], q["ask_price"]
    if bid is not None and ask is not None:
        bad = np.flatnonzero(~np.isfinite(bid) | ~np.isfinite(ask))
        add(
            q.code[bad],
            QualityIssue.BAD_PRICE,
            q.ts[bad],
            q.ts[bad],
        )


def _crossed_and_locked(q: _Events, add: Add) -> None:
    bid, ask = q["bid_price"], q["ask_price"]
    if bid is None or ask is None or q.n == 0:
        return
    order = _by_symbol_and_time(q)
    code, ts, bid, ask = q.code[order], q.ts[order], bid[order], ask[order]
    quoted = (bid > 0) & (ask > 0)
    for issue, mask in (
        (QualityIssue.CROSSED_QUOTE, quoted & (bid > ask)),
        (QualityIssue.LOCKED_QUOTE, quoted & (bid == ask)),
    ):
        starts, ends = _runs_of(mask, code)
        add(code[starts], issue, ts[starts], ts[ends], ends - starts + 1)


def _runs_of(mask: np.ndarray, code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last index of each run of consecutive True rows of one symbol."""
    if not mask.any():
        return np.empty(0, np.int64), np.empty(0, np.int64)
    m = mask.astype(np.int8)
    new_symbol = np.r_[True, code[1:] != code[:-1]]
    begins = (m == 1) & (np.r_[0, m[:-1]] == 0) | (mask & new_symbol)
    finishes = (m == 1) & (np.r_[m[1:], 0] == 0) | (mask & np.r_[new_symbol[1:], True])
    return np.flatnonzero(begins), np.flatnonzero(finishes)


def _outside_nbbo(t: _Events, q: _Events, add: Add) -> None:
    price, bid, ask = t["price"], q["bid_price"], q["ask_price"]
    if price is None or bid is None or ask is None or t.n == 0 or q.n == 0:
        return
    # Quotes and trades in one time line per symbol, a quote before a trade of the same time:
    # each trade's quote in force is the last quote before it in that line.
    code = np.concatenate([q.code, t.code])
    ts = np.concatenate([q.ts, t.ts])
    is_trade = np.r_[np.zeros(q.n, bool), np.ones(t.n, bool)]
    order = np.lexsort((is_trade, ts, code))
    row = np.arange(len(order))
    last_quote = np.maximum.accumulate(np.where(is_trade[order], -1, row))
    trades_at = np.flatnonzero(is_trade[order])
    quote_at = last_quote[trades_at]
    has_quote = quote_at >= 0
    trades_at, quote_at = trades_at[has_quote], quote_at[has_quote]
    trade_row = order[trades_at] - q.n
    quote_row = order[quote_at]
    same_symbol = t.code[trade_row] == q.code[quote_row]
    trade_row, quote_row = trade_row[same_symbol], quote_row[same_symbol]
    b, a, p = bid[quote_row], ask[quote_row], price[trade_row]
    unprotected = t["unprotected"]
    protected = ~unprotected[trade_row] if unprotected is not None else True
    usable = protected & (b > 0) & (a >= b) & np.isfinite(a) & np.isfinite(p) & (p > 0)
    tolerance = np.maximum(NBBO_MIN_DOLLARS, NBBO_SHARE_OF_MID * (a + b) / 2)
    with np.errstate(invalid="ignore"):
        outside = usable & ((p < b - tolerance) | (p > a + tolerance))
    hit = np.sort(trade_row[outside])
    add(
        t.code[hit],
        QualityIssue.OUTSIDE_NBBO,
        t.ts[hit],
        t.ts[hit],
    )


def _spikes(t: _Events, add: Add) -> None:
    price = t["price"]
    if price is None or t.n < 3:
        return
    off_market = t["off_market"]
    keep = np.isfinite(price) & (price > 0)
    if off_market is not None:
        keep &= ~off_market
    rows = np.flatnonzero(keep)
    rows = rows[np.lexsort((t.ts[rows], t.code[rows]))]
    code, ts, p = t.code[rows], t.ts[rows], price[rows]
    if len(rows) < 3:
        return
    r = np.diff(np.log(p))
    pair = code[1:] == code[:-1]
    regular = _regular_hours(ts[1:])
    # robust per-trade volatility per symbol and part of the day (regular, extended), of
    # returns scaled to their time apart: a move over a long pause may be larger
    group = code[1:] * 2 + regular
    apart = np.diff(ts).astype(np.float64)
    pace = _group_median(apart, group, pair)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.sqrt(1 + np.where(pace > 0, apart / pace, 0.0))
    z = r / scale
    center = _group_median(z, group, pair)
    sigma = MAD_TO_SIGMA * _group_median(np.abs(z - center), group, pair, at_least=10)
    floor = 0.01 / p[1:]
    threshold = SPIKE_K * np.maximum(sigma, floor) * scale
    big = pair & (np.abs(r) > threshold)
    # a print that jumps away and straight back is one spike, not two
    back = big[1:] & big[:-1] & (np.abs(r[1:] + r[:-1]) <= threshold[1:])
    big[1:] &= ~back
    hit = np.flatnonzero(big) + 1
    add(code[hit], QualityIssue.PRICE_SPIKE, ts[hit], ts[hit])


def _silences(t: _Events, q: _Events, runs: Sequence[tuple[int, int]], add: Add) -> None:
    code = np.concatenate([t.code, q.code])
    ts = np.concatenate([t.ts, q.ts])
    if len(ts) < 2:
        return
    order = np.lexsort((ts, code))
    code, ts = code[order], ts[order]
    pair = code[1:] == code[:-1]
    gap = np.diff(ts)
    # each symbol's pace in each half hour of the day: the half hour's mean time between events
    half_hour = _half_hours(ts)
    _, bucket, events = np.unique(
        code * (1 << 24) + half_hour, return_inverse=True, return_counts=True
    )
    in_bucket = events[bucket.reshape(-1)][:-1]
    with np.errstate(divide="ignore"):
        pace = np.where(in_bucket >= SILENCE_MIN_EVENTS, HALF_HOUR_NS / in_bucket, np.inf)
    limit = np.maximum(SILENCE_MIN_NS, SILENCE_TIMES_PACE * pace)
    candidates = np.flatnonzero(pair & (gap > limit))
    if not len(candidates):
        return
    watched = _watched(runs, int(ts[0]), int(ts[-1]))
    codes, spans = [], []
    for i in candidates.tolist():
        lo = max(int(ts[i]), watched[0][0])
        hi = min(int(ts[i + 1]), watched[-1][1])
        longer = [p for p in _windows(watched, lo, hi) if p[1] - p[0] > limit[i]]
        first = next(iter(longer), None)
        if first is not None:  # one silence, from the first long quiet piece to the end of the last
            last = next(
                p for p in _windows(watched, lo, hi, backwards=True) if p[1] - p[0] > limit[i]
            )
            codes.append(code[i])
            spans.append((first[0], last[1]))
    if spans:
        starts, ends = zip(*spans, strict=True)
        add(np.asarray(codes, np.int64), QualityIssue.SILENCE, starts, ends, 0)


def _group_median(
    values: np.ndarray, group: np.ndarray, mask: np.ndarray, *, at_least: int = 1
) -> np.ndarray:
    """Per row: the median of `values` over the masked rows of its group (inf for a group with
    fewer than `at_least` of them: too few to know what is usual)."""
    out = np.full(len(values), np.inf)
    rows = np.flatnonzero(mask)
    if not len(rows):
        return out
    order = rows[np.lexsort((values[rows], group[rows]))]
    g = group[order]
    bounds = np.flatnonzero(np.r_[True, g[1:] != g[:-1], True])
    starts, ends = bounds[:-1], bounds[1:]
    sizes = ends - starts
    v = values[order]
    medians = (v[starts + (sizes - 1) // 2] + v[starts + sizes // 2]) / 2
    medians[sizes < at_least] = np.inf
    by_group = dict(zip(g[starts].tolist(), medians.tolist(), strict=True))
    keys, inverse = np.unique(group, return_inverse=True)
    table = np.array([by_group.get(k, np.inf) for k in keys.tolist()])
    return table[inverse]


def _watched(runs: Sequence[tuple[int, int]], first: int, last: int) -> list[tuple[int, int]]:
    """The times the recorder was running, or the recorded time if no run overlaps it (a
    recording of a replayed day has event times far from its runs' clock times)."""
    overlapping = [(a, b) for a, b in runs if a <= last and b >= first]
    return sorted(overlapping) if overlapping else [(first, last)]


def _windows(
    watched: list[tuple[int, int]], lo: int, hi: int, *, backwards: bool = False
) -> Iterator[tuple[int, int]]:
    """Pieces of [lo, hi] that are both watched and within a trading day's 04:00-20:00 ET, in
    time order (or from the last)."""
    if hi <= lo:
        return
    first, last = calendar.et_date_of_ns(lo), calendar.et_date_of_ns(hi)
    days = (last - first).days
    for n in range(days, -1, -1) if backwards else range(days + 1):
        day = first + dt.timedelta(days=n)
        if not _trading(day):
            continue
        open_ns, close_ns = _extended_hours(day)
        for a, b in reversed(watched) if backwards else watched:
            a, b = max(a, open_ns, lo), min(b, close_ns, hi)
            if b > a:
                yield a, b


def _trading(day: dt.date) -> bool:
    try:
        return calendar.is_trading_day(day)
    except ValueError:  # outside the calendar's span: taken as a trading day
        return day.weekday() < 5


def _extended_hours(day: dt.date) -> tuple[int, int]:
    """04:00 ET to four hours after the close (20:00; 17:00 on an early close)."""
    midnight = calendar.midnight_ns(day)
    return midnight + 4 * _HOUR, midnight + (_close_hour(day) + 4) * _HOUR


def _close_hour(day: dt.date) -> int:
    try:
        return 13 if calendar.is_early_close(day) else 16
    except ValueError:  # outside the calendar's span
        return 16


def _half_hours(ts: np.ndarray) -> np.ndarray:
    """Per time: its ET half hour, numbered from the Unix epoch's day (48 a day)."""
    days = calendar.et_dates(ts)
    out = np.empty(len(ts), np.int64)
    for d in np.unique(days).tolist():
        mask = days == d
        midnight = calendar.midnight_ns(dt.date(1970, 1, 1) + dt.timedelta(days=d))
        out[mask] = d * 48 + (ts[mask] - midnight) // HALF_HOUR_NS
    return out


def _regular_hours(ts: np.ndarray) -> np.ndarray:
    """Per time: whether it falls in the regular session (09:30 to the close, ET)."""
    out = np.zeros(len(ts), dtype=bool)
    if not len(ts):
        return out
    days = calendar.et_dates(ts)
    for d in np.unique(days).tolist():
        day = dt.date(1970, 1, 1) + dt.timedelta(days=d)
        midnight = calendar.midnight_ns(day)
        close_h = _close_hour(day)
        mask = days == d
        out[mask] = (ts[mask] >= midnight + 9 * _HOUR + 30 * _MINUTE) & (
            ts[mask] < midnight + close_h * _HOUR
        )
    return out
