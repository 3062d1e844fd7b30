"""Every dataset under MESH_DATA_DIR, described: kind, symbols, time range, rows, size, version.

`massive data list`, `massive backtest --datasets`, the backtester's `datasets` command and the
dashboard all list through `list_datasets`. Each dataset is opened (so its files are checked);
one that cannot be is listed with its one-line error instead of stopping the listing. Figures come
from the manifest where it has them (a recording's symbols and event range, a fetch's bar range),
else from the files; row counts always come from the files' footers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mesh.datasets import audit as audit_mod
from mesh.datasets.audit import Audit
from mesh.datasets.dataset import Dataset, Table, open_folder
from mesh.datasets.errors import DatasetError, Problem, damaged, one_line
from mesh.datasets.layout import RECORDINGS, DatasetKind, dataset_folders
from mesh.datasets.manifest import prices_of
from mesh.datasets.tables import PAPER_KINDS, TableKind, event_time_column
from mesh.times import from_iso, iso, to_ns


@dataclass(frozen=True)
class DatasetInfo:
    """What a listing says about one dataset (`error` set, and little else, when it is damaged)."""

    name: str
    kind: DatasetKind
    path: str
    schema_version: int | None = None
    tables: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()
    start_ns: int | None = None  # earliest event (or bar start)
    end_ns: int | None = None  # latest event (or bar start)
    rows: Mapping[str, int] = field(default_factory=dict)  # per table
    bytes: int = 0
    intervals: tuple[str, ...] = ()  # trade-bar intervals it holds
    gaps_total: int | None = None  # recordings: known holes
    missing_total: int | None = None  # recordings: messages known missing on the bus
    state: str | None = None  # recordings: recording, stopped or failed
    created: str | None = None
    adjusted: bool = False  # bars split-adjusted (a fetch's default); else as traded
    prices: str | None = None  # the line that says so: "split-adjusted as of ...", "as traded"
    error: str | None = None
    problem: Problem | None = None
    healed_rows: Mapping[str, int] = field(default_factory=dict)  # of `rows`, from the healed layer
    audit: Audit | None = None  # recordings: what reconciliation, heals and the quality check found

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def total_healed(self) -> int:
        return sum(self.healed_rows.values())

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types, for `--json` and control replies; times also as ISO 8601 UTC."""
        return {
            "name": self.name,
            "kind": str(self.kind),
            "path": self.path,
            "schema_version": self.schema_version,
            "tables": list(self.tables),
            "symbols": list(self.symbols),
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "start": iso(self.start_ns),
            "end": iso(self.end_ns),
            "rows": dict(self.rows),
            "rows_total": self.total_rows,
            "bytes": self.bytes,
            "intervals": list(self.intervals),
            "gaps_total": self.gaps_total,
            "missing_total": self.missing_total,
            "state": self.state,
            "created": self.created,
            "adjusted": self.adjusted,
            "prices": self.prices,
            "error": self.error,
            "problem": str(self.problem) if self.problem else None,
            "healed_rows": dict(self.healed_rows),
            "heals": [heal_summary(h) for h in self.audit.heals] if self.audit else [],
            "reconciliation": reconciliation_summary(self.audit) if self.audit else None,
        }


def heal_summary(heal: audit_mod.Heal) -> dict[str, Any]:
    """One heal as `massive data list --json` shows it (audit.json has the spans)."""
    return {
        "id": heal.id,
        "at": iso(heal.at_ns),
        "method": str(heal.method),
        "rows": sum(s.rows for s in heal.spans),
        "spans": len(heal.spans),
        "unhealed": len(heal.unhealed),
        "rest_calls": heal.cost.rest_calls,
        "s3_bytes": heal.cost.s3_bytes,
    }


def reconciliation_summary(audit: Audit) -> dict[str, Any] | None:
    """Completeness per kind of the stored reconciliation (None if the session was never reconciled)."""
    found = audit.reconciliation
    if found is None:
        return None
    kinds: dict[str, dict[str, int]] = {}
    for r in found.results:
        k = kinds.setdefault(str(r.kind), {"reference": 0, "matched": 0, "missing": 0})
        k["reference"] += r.reference
        k["matched"] += r.matched
        k["missing"] += r.missing
    for k in kinds.values():
        ref = k["reference"]
        k["completeness_pct"] = round(100.0 * k["matched"] / ref, 4) if ref else 100.0  # type: ignore[assignment]
    return {
        "checked": iso(found.checked_ns),
        "method": str(found.method),
        "complete": found.complete,
        "kinds": kinds,
    }


def list_datasets(data_dir: Path | str) -> list[DatasetInfo]:
    """Every recording, then every historical dataset and backfill, by name."""
    out = []
    for place, folder in dataset_folders(data_dir):
        try:
            out.append(describe(open_folder(folder, place=place)))
        except DatasetError as exc:
            guess = DatasetKind.RECORDING if place == RECORDINGS else DatasetKind.HISTORICAL
            out.append(
                DatasetInfo(folder.name, guess, str(folder), error=str(exc), problem=exc.problem)
            )
    return out


def describe(dataset: Dataset) -> DatasetInfo:
    """A dataset's figures (manifest first, then its files); damaged if a file cannot be read."""
    m = dataset.manifest
    symbols, start, end = _from_manifest(dataset)
    if start is None:
        symbols, start, end = _scan(dataset)
    bars = [t.interval.name for t in dataset.bar_tables() if t.interval is not None]
    prices = prices_of(m, dataset.kind)
    return DatasetInfo(
        name=dataset.name,
        kind=dataset.kind,
        path=str(dataset.path),
        schema_version=dataset.schema_version,
        tables=tuple(dataset.tables),
        symbols=tuple(sorted(symbols)),
        start_ns=start,
        end_ns=end,
        rows={name: t.rows for name, t in dataset.tables.items()},
        bytes=sum(t.bytes for t in dataset.tables.values()),
        intervals=tuple(dict.fromkeys(bars)),
        gaps_total=_int(m.get("gaps_total")),
        missing_total=_int(m.get("missing_total")),
        state=m.get("state") if isinstance(m.get("state"), str) else None,
        created=m.get("created") if isinstance(m.get("created"), str) else None,
        healed_rows={n: t.healed_rows for n, t in dataset.tables.items() if t.healed_rows},
        audit=audit_mod.read_audit(dataset.path) if dataset.kind is DatasetKind.RECORDING else None,
        adjusted=prices.adjusted,
        prices=prices.text,
    )


def _from_manifest(dataset: Dataset) -> tuple[set[str], int | None, int | None]:
    m = dataset.manifest
    symbols = m.get("symbols")
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        return set(), None, None
    if dataset.kind is DatasetKind.RECORDING:
        start, end = _int(m.get("first_event_ns")), _int(m.get("last_event_ns"))
    else:
        start = _int(m.get("first_bar_ns")) or from_iso(m.get("first_bar"))
        end = _int(m.get("last_bar_ns")) or from_iso(m.get("last_bar"))
    return set(symbols), start, end


def _scan(dataset: Dataset) -> tuple[set[str], int | None, int | None]:
    """Symbols and time range from the files (quotes, trades and bars; gaps say nothing of data,
    and a paper session's records are what was done with it)."""
    symbols: set[str] = set()
    lows, highs = [], []
    for table in dataset.tables.values():
        if table.kind is TableKind.GAPS or table.kind in PAPER_KINDS:
            continue
        for path in table.files:
            found, lo, hi = _scan_file(path, table)
            symbols |= found
            if lo is not None and hi is not None:
                lows.append(lo)
                highs.append(hi)
    return symbols, (min(lows) if lows else None), (max(highs) if highs else None)


def _scan_file(path: Path, table: Table) -> tuple[set[str], int | None, int | None]:
    try:
        names = pq.read_schema(path).names
        time = event_time_column(table.kind, names)
        wanted = [c for c in (time, "symbol") if c is not None and c in names]
        data = pq.read_table(path, columns=wanted)
        symbols = (
            set(pc.unique(data.column("symbol")).to_pylist()) - {None}
            if "symbol" in names
            else {path.stem}
        )
        if time is None or data.num_rows == 0:
            return symbols, None, None
        ns = to_ns(data.column(time))
        ns = ns[ns != 0]
        return (
            symbols,
            (int(np.min(ns)) if ns.size else None),
            (int(np.max(ns)) if ns.size else None),
        )
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise damaged(path, f"cannot be read: {one_line(str(exc), 200)}") from None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
