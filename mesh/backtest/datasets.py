"""Datasets: find one by name or path, list them with their time ranges, load bars and quotes.

A dataset is one of:

- a recording, `MESH_DATA_DIR/recordings/<NAME>/` (the recorder's layout: `quotes/part-*.parquet`,
  `trades/part-*.parquet`, optional `bars_1m.parquet`-style bar files, `manifest.json`);
- a historical download, `MESH_DATA_DIR/historical/<NAME>/` (Parquet bars with a `timestamp`
  column, plus `manifest.json`);
- any Parquet file or folder of Parquet files holding bars, quotes or trades with the mesh's
  column names.

Names are looked up in that order; `recording:NAME` and `historical:NAME` pick one explicitly.
Time columns may be `timestamp[*, UTC]` or int64 nanoseconds (seconds, milliseconds and
microseconds are recognised by their magnitude). A file without a `symbol` column is one symbol,
named after the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from mesh.backtest.errors import DatasetError
from mesh.backtest.frames import (
    Bars,
    Quotes,
    bars_from_ticks,
    format_interval,
    infer_interval,
    parse_interval,
    resample,
)
from mesh.backtest.metrics import iso

RECORDINGS = "recordings"
HISTORICAL = "historical"
BAR_TIME_COLUMNS = ("ts_start", "timestamp", "ts", "time", "datetime", "date", "window_start", "t")
QUOTE_COLUMNS = ("bid_price", "ask_price")
TRADE_COLUMNS = ("price",)
BAR_COLUMNS = ("open", "high", "low", "close")


@dataclass
class Dataset:
    """A resolved dataset: where it is and which tables it has ("bars", "quotes", "trades")."""

    name: str
    kind: str  # "recording", "historical" or "parquet"
    path: Path
    tables: dict[str, Path | list[Path]] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "path": str(self.path),
            "tables": sorted(self.tables),
        }

    @property
    def gaps(self) -> dict[str, int]:
        """Gaps the recorder noted (messages known to be missing), for the report."""
        return {
            "gaps": int(self.manifest.get("gaps_total", 0) or 0),
            "missing": int(self.manifest.get("missing_total", 0) or 0),
        }


# --- finding ------------------------------------------------------------------------------------


def resolve(spec: str, data_dir: Path | str) -> Dataset:
    """The dataset called `spec` (a recording, a historical dataset, or a Parquet path)."""
    data_dir = Path(data_dir)
    text = str(spec).strip()
    if not text:
        raise DatasetError(
            "no dataset given: pass a recording name, a historical dataset name or a Parquet path"
        )
    kind_hint = None
    for prefix in (RECORDINGS[:-1], HISTORICAL):
        if text.startswith(prefix + ":"):
            kind_hint, text = prefix, text[len(prefix) + 1 :]
    candidates: list[tuple[str, Path]] = []
    if kind_hint is None:
        path = Path(text).expanduser()
        if path.exists():
            return _open_path(path, text)
    if "/" not in text and "\\" not in text and text not in (".", ".."):
        for kind, sub in (("recording", RECORDINGS), ("historical", HISTORICAL)):
            if kind_hint not in (None, kind):
                continue
            where = data_dir / sub / text
            if where.is_dir():
                candidates.append((kind, where))
    if len(candidates) > 1:
        raise DatasetError(
            f"{text!r} is both a recording and a historical dataset: say recording:{text} or historical:{text}"
        )
    if candidates:
        kind, where = candidates[0]
        return (
            _open_recording(where, text)
            if kind == "recording"
            else _open_parquet(where, text, "historical")
        )
    known = [d["name"] for d in list_datasets(data_dir)]
    hint = (
        f"; known datasets: {', '.join(known[:20])}"
        if known
        else f"; {data_dir} has no recordings or historical datasets yet"
    )
    raise DatasetError(
        f"no dataset {spec!r}: not a recording in {data_dir / RECORDINGS}, not a historical dataset in {data_dir / HISTORICAL}, not a Parquet path{hint}"
    )


def _open_path(path: Path, name: str) -> Dataset:
    if path.is_dir() and _looks_like_recording(path):
        return _open_recording(path, path.name)
    return _open_parquet(path, path.stem if path.is_file() else path.name, "parquet")


def _looks_like_recording(path: Path) -> bool:
    return (
        (path / "quotes").is_dir()
        or (path / "trades").is_dir()
        or any(path.glob("*bars_1*.parquet"))
        and (path / "manifest.json").is_file()
    )


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / "manifest.json").read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _parquet_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(
        p
        for p in path.rglob("*.parquet")
        if not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
    )


def _open_recording(path: Path, name: str) -> Dataset:
    tables: dict[str, Path | list[Path]] = {}
    for table in ("quotes", "trades"):
        files = _parquet_files(path / table) if (path / table).is_dir() else []
        if files:
            tables[table] = files
    bar_files = sorted(path.glob("bars_*.parquet"))
    if bar_files:
        tables["bars"] = bar_files
    mid_files = sorted(path.glob("mid_bars_*.parquet"))
    if mid_files:
        tables["mid_bars"] = mid_files
    if not tables:
        raise DatasetError(
            f"recording {name!r} at {path} has no Parquet files yet (is it still recording its first slice?)"
        )
    return Dataset(name, "recording", path, tables, _read_manifest(path))


def _open_parquet(path: Path, name: str, kind: str) -> Dataset:
    files = _parquet_files(path)
    if not files:
        raise DatasetError(f"{path} holds no Parquet files")
    by_kind: dict[str, list[Path]] = {}
    for f in files:
        try:
            names = set(pq.read_schema(f).names)
        except (pa.ArrowException, OSError) as exc:
            raise DatasetError(f"{f} is not a readable Parquet file: {exc}") from None
        by_kind.setdefault(_table_kind(names, f), []).append(f)
    return Dataset(
        name,
        kind,
        path,
        dict(by_kind),
        _read_manifest(path if path.is_dir() else path.parent) if kind == "historical" else {},
    )


def _table_kind(names: set[str], where: Path) -> str:
    if all(c in names for c in BAR_COLUMNS):
        if not any(c in names for c in BAR_TIME_COLUMNS):
            raise DatasetError(
                f"{where}: bars need a time column ({', '.join(BAR_TIME_COLUMNS[:3])}); found {', '.join(sorted(names))}"
            )
        return "bars"
    if all(c in names for c in QUOTE_COLUMNS):
        return "quotes"
    if all(c in names for c in TRADE_COLUMNS) and "size" in names:
        return "trades"
    raise DatasetError(
        f"{where}: not bars (open, high, low, close + timestamp), quotes (bid_price, ask_price) or trades (price, size); "
        f"its columns: {', '.join(sorted(names))}"
    )


# --- listing ------------------------------------------------------------------------------------


def list_datasets(data_dir: Path | str) -> list[dict[str, Any]]:
    """Every recording and historical dataset under `data_dir`, with symbols, time range and rows."""
    data_dir = Path(data_dir)
    out = []
    for kind, sub in (("recording", RECORDINGS), ("historical", HISTORICAL)):
        root = data_dir / sub
        if not root.is_dir():
            continue
        for path in sorted(
            p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
        ):
            try:
                out.append(
                    describe(
                        _open_recording(path, path.name)
                        if kind == "recording"
                        else _open_parquet(path, path.name, "historical")
                    )
                )
            except DatasetError as exc:
                out.append({"name": path.name, "kind": kind, "path": str(path), "error": str(exc)})
    return out


def describe(dataset: Dataset) -> dict[str, Any]:
    """Name, kind, tables, symbols, first/last time and rows, from the manifest when it has them, else the files."""
    info = dataset.describe()
    m = dataset.manifest
    if dataset.kind == "recording" and m.get("first_event_ns") is not None:
        info.update(
            symbols=sorted(m.get("symbols", [])),
            start_ns=m.get("first_event_ns"),
            end_ns=m.get("last_event_ns"),
            rows={k: v for k, v in (m.get("rows") or {}).items() if v},
            state=m.get("state"),
            **dataset.gaps,
        )
    else:
        first, last, symbols, rows = None, None, set(), {}
        for table, files in dataset.tables.items():
            lo, hi, syms, count = _scan(files if isinstance(files, list) else [files])
            rows[table] = count
            symbols |= syms
            first = lo if first is None or (lo is not None and lo < first) else first
            last = hi if last is None or (hi is not None and hi > last) else last
        info.update(symbols=sorted(symbols), start_ns=first, end_ns=last, rows=rows)
        if dataset.kind == "recording":
            info.update(state=m.get("state"), **dataset.gaps)
    info["start"], info["end"] = iso(info["start_ns"]), iso(info["end_ns"])
    return info


def _scan(files: list[Path]) -> tuple[int | None, int | None, set[str], int]:
    lo = hi = None
    symbols: set[str] = set()
    rows = 0
    for f in files:
        pf = pq.ParquetFile(f)
        names = pf.schema_arrow.names
        time_col = _time_column(names)
        cols = [c for c in (time_col, "symbol") if c and c in names]
        table = pf.read(columns=cols)
        rows += table.num_rows
        if "symbol" in names:
            symbols |= set(pc.unique(table.column("symbol")).to_pylist())
        else:
            symbols.add(f.stem)
        if time_col and table.num_rows:
            t = to_ns(table.column(time_col))
            lo = int(t.min()) if lo is None else min(lo, int(t.min()))
            hi = int(t.max()) if hi is None else max(hi, int(t.max()))
    return lo, hi, symbols, rows


def _time_column(names: list[str]) -> str | None:
    if "ts_event" in names:
        return "ts_event"
    for c in BAR_TIME_COLUMNS:
        if c in names:
            return c
    return None


# --- loading ------------------------------------------------------------------------------------


def to_ns(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A time column as int64 ns UTC: timestamps of any unit, dates, or integers (unit from magnitude)."""
    t = column.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        column = column.cast(
            pa.timestamp("ns", tz="UTC")
            if pa.types.is_timestamp(t) and t.tz
            else pa.timestamp("ns")
        )
        return np.asarray(column.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        values = np.asarray(
            column.to_numpy(zero_copy_only=False),
            dtype=np.float64 if pa.types.is_floating(t) else np.int64,
        )
        big = float(np.nanmax(np.abs(values))) if len(values) else 0.0
        scale = (
            1
            if big >= 1e17
            else 1_000
            if big >= 1e14
            else 1_000_000
            if big >= 1e11
            else 1_000_000_000
        )
        return (values * scale).astype(np.int64) if scale != 1 else values.astype(np.int64)
    raise DatasetError(f"time column of type {t} is neither a timestamp nor integer nanoseconds")


@dataclass
class Market:
    """Everything a run needs from a dataset: per-symbol bars (signals) and quotes (quote fills)."""

    dataset: Dataset
    bars: dict[str, Bars]
    quotes: dict[str, Quotes]
    interval_ns: int
    bar_source: str  # "bars", "trades" or "mid"

    @property
    def symbols(self) -> list[str]:
        return sorted(self.bars)

    def describe(self) -> dict[str, Any]:
        info = self.dataset.describe()
        starts = [int(b.ts[0]) for b in self.bars.values() if len(b)]
        ends = [int(b.ts_end[-1]) for b in self.bars.values() if len(b)]
        info.update(
            symbols=self.symbols,
            interval=format_interval(self.interval_ns),
            bar_source=self.bar_source,
            bars=sum(len(b) for b in self.bars.values()),
            quotes=sum(len(q) for q in self.quotes.values()),
            start=iso(min(starts)) if starts else None,
            end=iso(max(ends)) if ends else None,
        )
        if self.dataset.kind == "recording":
            info.update(self.dataset.gaps)
        return info


def _read(files: Path | list[Path], columns: list[str], symbols: list[str] | None) -> pa.Table:
    paths = [str(f) for f in (files if isinstance(files, list) else [files])]
    try:
        dataset = ds.dataset(paths, format="parquet")
        names = dataset.schema.names
        wanted = [c for c in columns if c in names]
        flt = ds.field("symbol").isin(symbols) if symbols and "symbol" in names else None
        table = dataset.to_table(columns=wanted, filter=flt)
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(
            f"cannot read {paths[0]}{' and others' if len(paths) > 1 else ''}: {exc}"
        ) from None
    if "symbol" not in table.schema.names:
        stem = Path(paths[0]).stem
        table = table.append_column("symbol", pa.array([stem] * table.num_rows, type=pa.string()))
    return table


def _group(table: pa.Table, time_col: str) -> dict[str, tuple[np.ndarray, pa.Table]]:
    """symbol -> (sorted times, that symbol's rows in the same order)."""
    if table.num_rows == 0:
        return {}
    ts = to_ns(table.column(time_col))
    sym = table.column("symbol").combine_chunks().dictionary_encode()
    codes = np.asarray(sym.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    names = sym.dictionary.to_pylist()
    order = np.lexsort(
        (ts, codes)
    )  # by symbol, then time; stable for equal times (recording order)
    codes_sorted = codes[order]
    bounds = np.flatnonzero(np.r_[True, codes_sorted[1:] != codes_sorted[:-1], True])
    sorted_table = table.take(pa.array(order))
    ts_sorted = ts[order]
    out = {}
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        out[names[codes_sorted[a]]] = (ts_sorted[a:b], sorted_table.slice(a, b - a))
    return out


def _f64(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)


def load(
    dataset: Dataset,
    *,
    interval: str | None = None,
    symbols: list[str] | None = None,
    need_quotes: bool = False,
    bar_source: str = "auto",
) -> Market:
    """Bars per symbol at `interval` (default: the data's own for bar data, 1m for ticks), and quotes if asked for."""
    want_ns = parse_interval(interval) if interval else None
    has_ticks = "quotes" in dataset.tables or "trades" in dataset.tables
    if bar_source == "auto":
        bar_source = (
            "mid"
            if "quotes" in dataset.tables
            else "trades"
            if "trades" in dataset.tables
            else "bars"
        )
    if bar_source == "mid" and "quotes" not in dataset.tables:
        raise DatasetError(
            f"{dataset.name!r} has no quotes to build mid-price bars from; tables: {', '.join(sorted(dataset.tables))}"
        )
    if bar_source == "trades" and "trades" not in dataset.tables:
        raise DatasetError(
            f"{dataset.name!r} has no trades to build bars from; tables: {', '.join(sorted(dataset.tables))}"
        )
    if bar_source == "bars" and "bars" not in dataset.tables:
        if not has_ticks:
            raise DatasetError(f"{dataset.name!r} has no bars, quotes or trades")
        bar_source = "mid" if "quotes" in dataset.tables else "trades"
    if need_quotes and "quotes" not in dataset.tables:
        raise DatasetError(
            f"{dataset.name!r} has no quotes, so it cannot fill at the bid and ask: use --fills bars"
        )

    quotes: dict[str, Quotes] = {}
    if bar_source == "mid" or need_quotes:
        table = _read(
            dataset.tables["quotes"],
            ["symbol", "ts_event", "bid_price", "ask_price", "bid_size", "ask_size"],
            symbols,
        )
        for sym, (ts, rows) in _group(table, "ts_event").items():
            q = Quotes(
                sym,
                ts,
                _f64(rows, "bid_price"),
                _f64(rows, "ask_price"),
                _sizes(rows, "bid_size"),
                _sizes(rows, "ask_size"),
            ).valid()
            if len(q):
                quotes[sym] = q

    bars: dict[str, Bars] = {}
    if bar_source == "bars":
        files = dataset.tables["bars"]
        if dataset.kind == "recording" and isinstance(files, list):
            files = _pick_bar_file(files, want_ns)
        schema_names = pq.read_schema(files[0] if isinstance(files, list) else files).names
        time_col = next(c for c in BAR_TIME_COLUMNS if c in schema_names)
        extra = [c for c in ("ts_end", "volume") if c in schema_names]
        table = _read(files, ["symbol", time_col, "open", "high", "low", "close", *extra], symbols)
        declared = dataset.manifest.get("interval")
        for sym, (ts, rows) in _group(table, time_col).items():
            ts, keep = _dedupe(ts)
            rows = rows.take(pa.array(keep)) if keep is not None else rows
            native = (
                parse_interval(declared)
                if isinstance(declared, str) and _is_interval(declared)
                else infer_interval(ts)
            )
            b = Bars.from_arrays(
                sym,
                ts,
                _f64(rows, "open"),
                _f64(rows, "high"),
                _f64(rows, "low"),
                _f64(rows, "close"),
                _f64(rows, "volume") if "volume" in rows.schema.names else None,
                interval_ns=native,
            )
            bars[sym] = resample(b, want_ns) if want_ns else b
    elif bar_source == "mid":
        step = want_ns or parse_interval("1m")
        for sym, q in quotes.items():
            bars[sym] = bars_from_ticks(sym, q.ts, q.mid, None, step)
    else:
        step = want_ns or parse_interval("1m")
        table = _read(dataset.tables["trades"], ["symbol", "ts_event", "price", "size"], symbols)
        for sym, (ts, rows) in _group(table, "ts_event").items():
            price = _f64(rows, "price")
            ok = price > 0
            bars[sym] = bars_from_ticks(sym, ts[ok], price[ok], _f64(rows, "size")[ok], step)

    bars = {s: b for s, b in bars.items() if len(b)}
    if symbols:
        missing = sorted(set(symbols) - set(bars))
        if missing:
            have = sorted(set(_symbols_of(dataset)))
            raise DatasetError(
                f"{dataset.name!r} has no data for {', '.join(missing)}; its symbols: {', '.join(have[:30]) or 'none'}"
            )
    if not bars:
        raise DatasetError(f"{dataset.name!r} has no usable rows")
    interval_ns = min(b.interval_ns for b in bars.values())
    return Market(dataset, bars, quotes, interval_ns, bar_source)


def _is_interval(text: str) -> bool:
    try:
        parse_interval(text)
        return True
    except Exception:
        return False


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


def _pick_bar_file(files: list[Path], want_ns: int | None) -> Path:
    """The recorder's finest trade-bar file that the wanted interval can be built from."""
    options = []
    for f in files:
        label = f.stem.split("_")[-1]
        if _is_interval(label):
            options.append((parse_interval(label), f))
    if not options:
        return files[0]
    usable = [o for o in options if want_ns is None or want_ns % o[0] == 0]
    return max(usable or options)[1] if want_ns else min(options)[1]


def _symbols_of(dataset: Dataset) -> list[str]:
    try:
        return list(describe(dataset).get("symbols", []))
    except Exception:
        return []
