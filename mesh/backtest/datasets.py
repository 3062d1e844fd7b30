"""A dataset loaded for a backtest: per-symbol `Bars` for signals, and `Quotes` when orders fill on quotes.

Finding a dataset, checking it and reading its tables (times as ns UTC, bars in the one bar
schema, version-1 files migrated on read) is `mesh.datasets`'s, the same for every command. This
module decides where the signal bars come from (the dataset's own bars, quote mid prices or trade
prices), splits the rows by symbol and aggregates them to the interval asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mesh import datasets as shared
from mesh import intervals
from mesh.backtest.errors import BacktestError, DataUnfit
from mesh.backtest.frames import Bars, Quotes, bars_from_ticks, resample
from mesh.datasets import Dataset, DatasetKind, Table, TableKind
from mesh.times import iso

__all__ = ["Dataset", "Market", "describe", "list_datasets", "load", "resolve"]


def resolve(spec: str, data_dir: Path | str) -> Dataset:
    """The dataset `spec` names (mesh.datasets.resolve); raises mesh.datasets.DatasetError."""
    return shared.resolve(spec, data_dir)


def list_datasets(data_dir: Path | str) -> list[dict[str, Any]]:
    """Every dataset as JSON (mesh.datasets.DatasetInfo.to_json): `--datasets` and the service's answer."""
    return [info.to_json() for info in shared.list_datasets(data_dir)]


def describe(dataset: Dataset) -> dict[str, Any]:
    """What a result says of its data, `adjusted` and `prices` included (from the manifest)."""
    prices = shared.prices_of(dataset.manifest, dataset.kind)
    return {
        "name": dataset.name,
        "kind": str(dataset.kind),
        "path": str(dataset.path),
        "tables": sorted(dataset.tables),
        "schema_version": dataset.schema_version,
        "adjusted": prices.adjusted,
        "prices": prices.text,
    }


def gaps_of(dataset: Dataset) -> dict[str, int]:
    """Gaps the recorder noted (messages known to be missing), for the report."""
    m = dataset.manifest
    return {
        "gaps": int(m.get("gaps_total", 0) or 0),
        "missing": int(m.get("missing_total", 0) or 0),
    }


@dataclass
class Market:
    """Everything a run needs from a dataset: per-symbol bars (signals) and quotes (quote fills)."""

    dataset: Dataset
    bars: dict[str, Bars]
    quotes: dict[str, Quotes]
    interval_ns: int
    bar_source: str  # "bars", "trades" or "mid"
    spec: str = ""  # what the caller asked for (a name, `kind:NAME` or a path)

    @property
    def symbols(self) -> list[str]:
        return sorted(self.bars)

    def describe(self) -> dict[str, Any]:
        info = describe(self.dataset)
        starts = [int(b.ts[0]) for b in self.bars.values() if len(b)]
        ends = [int(b.ts_end[-1]) for b in self.bars.values() if len(b)]
        info.update(
            spec=self.spec or self.dataset.name,
            symbols=self.symbols,
            interval=intervals.format_ns(self.interval_ns),
            bar_source=self.bar_source,
            bars=sum(len(b) for b in self.bars.values()),
            quotes=sum(len(q) for q in self.quotes.values()),
            start=iso(min(starts)) if starts else None,
            end=iso(max(ends)) if ends else None,
        )
        if self.dataset.kind is DatasetKind.RECORDING:
            info.update(gaps_of(self.dataset))
        return info


def load(
    dataset: Dataset,
    *,
    interval: str | None = None,
    symbols: list[str] | None = None,
    need_quotes: bool = False,
    bar_source: str = "auto",
) -> Market:
    """Bars per symbol at `interval` (default: the data's own for bar data, 1m for ticks), and quotes if asked for."""
    want_ns = _interval_ns(interval) if interval else None
    has = {kind: dataset.table(kind) for kind in (TableKind.QUOTES, TableKind.TRADES)}
    bar_tables = dataset.bar_tables()
    tables = ", ".join(dataset.tables) or "none"
    if bar_source == "auto":
        bar_source = (
            "mid" if has[TableKind.QUOTES] else "trades" if has[TableKind.TRADES] else "bars"
        )
    if bar_source == "mid" and not has[TableKind.QUOTES]:
        raise DataUnfit(
            f"{dataset.name!r} has no quotes to build mid-price bars from; tables: {tables}"
        )
    if bar_source == "trades" and not has[TableKind.TRADES]:
        raise DataUnfit(f"{dataset.name!r} has no trades to build bars from; tables: {tables}")
    if bar_source == "bars" and not bar_tables:
        if not any(has.values()):
            raise DataUnfit(f"{dataset.name!r} has no bars, quotes or trades")
        bar_source = "mid" if has[TableKind.QUOTES] else "trades"
    if need_quotes and not has[TableKind.QUOTES]:
        raise DataUnfit(
            f"{dataset.name!r} has no quotes, so it cannot fill at the bid and ask: use --fills bars"
        )

    quotes: dict[str, Quotes] = {}
    quote_table = has[TableKind.QUOTES]
    if quote_table is not None and (bar_source == "mid" or need_quotes):
        columns = ["ts_event", "bid_price", "ask_price", "bid_size", "ask_size"]
        rows = shared.read_table(quote_table, columns=columns, symbols=symbols)
        for sym, (ts, part) in _by_symbol(rows, "ts_event").items():
            q = Quotes(
                sym,
                ts,
                _f64(part, "bid_price"),
                _f64(part, "ask_price"),
                _sizes(part, "bid_size"),
                _sizes(part, "ask_size"),
            ).valid()
            if len(q):
                quotes[sym] = q

    step = want_ns or intervals.MINUTE.ns
    bars: dict[str, Bars] = {}
    trade_table = has[TableKind.TRADES]
    if bar_source == "bars":
        bars = _own_bars(_pick_bar_table(bar_tables, want_ns), symbols, want_ns)
    elif bar_source == "mid":
        for sym, q in quotes.items():
            bars[sym] = bars_from_ticks(sym, q.ts, q.mid, None, step)
    elif trade_table is not None:
        rows = shared.read_table(
            trade_table, columns=["ts_event", "price", "size"], symbols=symbols
        )
        for sym, (ts, part) in _by_symbol(rows, "ts_event").items():
            price = _f64(part, "price")
            ok = price > 0
            bars[sym] = bars_from_ticks(sym, ts[ok], price[ok], _f64(part, "size")[ok], step)

    bars = {s: b for s, b in bars.items() if len(b)}
    if symbols:
        missing = sorted(set(symbols) - set(bars))
        if missing:
            have = _symbols_of(dataset)
            raise DataUnfit(
                f"{dataset.name!r} has no data for {', '.join(missing)}; its symbols: {', '.join(have[:30]) or 'none'}"
            )
    if not bars:
        raise DataUnfit(f"{dataset.name!r} has no usable rows")
    interval_ns = min(b.interval_ns for b in bars.values())
    return Market(dataset, bars, quotes, interval_ns, bar_source)


def _own_bars(table: Table, symbols: list[str] | None, want_ns: int | None) -> dict[str, Bars]:
    """The dataset's bars per symbol (a bar written twice: the later one), resampled if asked."""
    native = shared.bar_interval(table) or intervals.MINUTE
    rows = shared.read_table(table, symbols=symbols, interval=native)
    out = {}
    for sym, (ts, part) in _by_symbol(rows, "ts_start").items():
        ts, keep = _dedupe(ts)
        part = part.take(pa.array(keep)) if keep is not None else part
        b = Bars.from_arrays(
            sym,
            ts,
            _f64(part, "open"),
            _f64(part, "high"),
            _f64(part, "low"),
            _f64(part, "close"),
            _f64(part, "volume"),
            ts_end=_ns(part, "ts_end"),
            interval_ns=native.ns,
        )
        out[sym] = resample(b, want_ns) if want_ns else b
    return out


def _pick_bar_table(tables: list[Table], want_ns: int | None) -> Table:
    """The finest bar table the wanted interval can be built from (the finest when none is asked)."""
    known = [t for t in tables if t.interval is not None]
    if not known:
        return tables[0]
    usable = [t for t in known if want_ns is None or want_ns % t.interval.ns == 0]  # type: ignore[union-attr]
    if want_ns is None:
        return known[0]
    return (usable or known)[-1]


def _interval_ns(text: str) -> int:
    try:
        return intervals.parse(text).ns
    except intervals.IntervalError as exc:
        raise BacktestError(str(exc)) from None


def _by_symbol(table: pa.Table, time_col: str) -> dict[str, tuple[np.ndarray, pa.Table]]:
    """symbol -> (sorted times, that symbol's rows in the same order); ties keep file order."""
    if table.num_rows == 0:
        return {}
    ts = _ns(table, time_col)
    sym = table.column("symbol").combine_chunks().dictionary_encode()
    codes = np.asarray(sym.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    names = sym.dictionary.to_pylist()
    order = np.lexsort((ts, codes))
    codes_sorted = codes[order]
    bounds = np.flatnonzero(np.r_[True, codes_sorted[1:] != codes_sorted[:-1], True])
    sorted_table = table.take(pa.array(order))
    ts_sorted = ts[order]
    return {
        names[codes_sorted[a]]: (ts_sorted[a:b], sorted_table.slice(a, b - a))
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    }


def _ns(table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name).cast(pa.int64()).fill_null(0)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)


def _f64(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)


def _sizes(table: pa.Table, name: str) -> np.ndarray:
    if name not in table.schema.names:
        return np.full(table.num_rows, np.inf)
    return _f64(table, name)


def _dedupe(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Bars sharing a start time: keep the last one written (a revised bar replaces the first)."""
    if len(ts) < 2 or (ts[1:] != ts[:-1]).all():
        return ts, None
    keep = np.flatnonzero(np.r_[ts[1:] != ts[:-1], True])
    return ts[keep], keep


def _symbols_of(dataset: Dataset) -> list[str]:
    try:
        return list(shared.describe(dataset).symbols)
    except shared.DatasetError:
        return []
