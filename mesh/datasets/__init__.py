"""Datasets: the one owner of what is on disk under MESH_DATA_DIR and how it is read.

Every command that takes a dataset (`massive backtest`, `massive kdb load`,
`massive run sim --replay`, `massive data`, the dashboard) and every writer (the recorder, the
fetcher, gap backfills) goes through this package, so a name means the same thing everywhere, a
damaged dataset fails with the same one line everywhere, and every bar has one schema.

    from mesh import datasets

    ds = datasets.resolve("demo", data_dir)            # a name, `recording:NAME`, or a path
    bars = datasets.read_table(ds.bar_tables()[0])     # bar_schema.BAR_SCHEMA, whatever the version
    for info in datasets.list_datasets(data_dir):      # DatasetInfo records; .to_json() for --json
        ...

Modules: `layout` (where things are and what they are called), `tables` (bars, quotes, trades or
gaps, from the columns), `manifest`, `dataset` (opening and checking one), `resolve` (names),
`listing`, `read`, `migration`, `atomic` (all-or-nothing writes), `storage` (where datasets
live: a local folder or an `s3://` prefix, `MESH_DATA_DIR=s3://...`), `errors`, `audit` (audit.json:
reconciliation, heals, quality), `quality` (the data-quality report), `healed` (a recording's
healed layer, read with its capture unless `capture_only`), `live` (whether a recorder is writing
a recording now).
"""

from mesh.datasets.dataset import Dataset, Table, open_folder, open_path
from mesh.datasets.errors import DatasetError, Problem
from mesh.datasets.layout import DatasetKind, bar_file, bar_table, historical_dir, recordings_dir
from mesh.datasets.listing import DatasetInfo, describe, list_datasets
from mesh.datasets.manifest import Prices, prices_of
from mesh.datasets.migration import Migration, migrate
from mesh.datasets.read import bar_interval, iter_batches, read_table
from mesh.datasets.resolve import resolve
from mesh.datasets.tables import TableKind, classify

__all__ = [
    "Dataset",
    "DatasetError",
    "DatasetInfo",
    "DatasetKind",
    "Migration",
    "Prices",
    "Problem",
    "Table",
    "TableKind",
    "bar_file",
    "bar_interval",
    "bar_table",
    "classify",
    "describe",
    "historical_dir",
    "iter_batches",
    "list_datasets",
    "migrate",
    "open_folder",
    "open_path",
    "prices_of",
    "read_table",
    "recordings_dir",
    "resolve",
]
