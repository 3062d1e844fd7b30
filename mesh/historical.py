"""The seeds' history API, kept: `fetch_data()` and `download_flat_file()`.

    from mesh.historical import fetch_data

    df = fetch_data(["AAPL", "GOOGL"], start="2024-01-02", end="2024-01-05", interval="5m")
    # Auto-selected REST (auto: small query (2 symbols, 4 days; ...))
    df.attrs["fetch"]  # method, reason, fallback, REST calls used, bytes downloaded

`method="auto"` uses REST for small queries (<= 5 symbols and <= 7 days) and S3 flat files for
everything else; "rest" and "flat_file" force one. When the flat-file path fails (no credentials,
403, a missing or damaged file) the missing days come over REST if the quota allows, and the
function says so. Calls and bytes are counted in the same quota ledger as `massive fetch` and the
fetcher service (data/state/quota.sqlite), so nothing here can go past the account's limits.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from mesh import datasets as shared
from mesh.config import Config, load_config
from mesh.datasets import storage
from mesh.fetcher import datasets
from mesh.fetcher.errors import (
    BadRequest,
    FetchError,
    FlatFileError,
    NoData,
    QuotaExceeded,
    RestError,
)
from mesh.fetcher.fetch import Fetcher
from mesh.fetcher.flatfiles import DAY_AGGS, MINUTE_AGGS, DayFile
from mesh.fetcher.ledger import QuotaLedger
from mesh.fetcher.plan import choose
from mesh.fetcher.request import INTERVALS, make_request, parse_date

__all__ = [
    "fetch_data",
    "plan_fetch",
    "download_flat_file",
    "quota",
    "list_datasets",
    "load_dataset",
    "INTERVALS",
    "FetchError",
    "BadRequest",
    "QuotaExceeded",
    "FlatFileError",
    "RestError",
    "NoData",
]

_LABEL = {"rest": "REST", "flat_file": "Flat Files"}


def fetch_data(
    symbols: str | Iterable[str],
    start: Any,
    end: Any,
    interval: str = "1d",
    method: str = "auto",
    *,
    save: str | bool | None = None,
    fallback: bool = True,
    verbose: bool = True,
    adjusted: bool = True,
    config: Config | None = None,
) -> pd.DataFrame:
    """Bars of `symbols` over [start, end] (New York trading dates, inclusive) as a DataFrame.

    Columns: the one bar schema (docs/data.md): symbol, ts_start and ts_end (datetime64[ns, UTC],
    the window [ts_start, ts_end)), open, high, low, close, volume, vwap, transactions, ts_recv
    (empty for history); sorted by symbol then time. `save=True` (or a name) also writes a
    dataset to data/historical/. Raises `BadRequest` before spending anything when the request
    is wrong, `QuotaExceeded` when it does not fit the quota, `FetchError` for the rest.
    Prices are split-adjusted (as Massive's aggregates are) unless `adjusted=False`.
    """
    config = config or load_config()
    request = make_request(symbols, start, end, interval, method, adjusted=adjusted)
    fetcher = Fetcher(config)

    chosen, reason = choose(request)
    if verbose:
        print(
            f"{'Auto-selected' if request.method == 'auto' else 'Using'} {_LABEL[chosen]} ({reason})",
            file=sys.stderr,
        )

    def progress(fraction: float, message: str, done: int, total: int) -> None:
        if verbose and message.startswith("falling back"):
            print(message, file=sys.stderr)

    bars, report = fetcher.run(request, progress=progress, fallback=fallback)
    frame = bars.to_pandas()
    info = {**request.as_dict(), **report.as_dict()}
    if save:
        name = (
            save
            if isinstance(save, str)
            else datasets.default_name(
                request.symbols,
                request.interval,
                request.start.isoformat(),
                request.end.isoformat(),
            )
        )
        info["dataset"] = str(datasets.write_dataset(bars, config.data_location, name, info))
    frame.attrs["fetch"] = info
    return frame


def plan_fetch(
    symbols: str | Iterable[str],
    start: Any,
    end: Any,
    interval: str = "1d",
    method: str = "auto",
    *,
    adjusted: bool = True,
    config: Config | None = None,
) -> dict[str, Any]:
    """What `fetch_data` would do and cost (REST calls, files, bytes), spending nothing."""
    config = config or load_config()
    request = make_request(symbols, start, end, interval, method, adjusted=adjusted)
    return Fetcher(config).plan(request).as_dict()


def download_flat_file(
    date: Any, dataset: str = MINUTE_AGGS, *, config: Config | None = None
) -> Path:
    """One day file (`minute_aggs_v1` or `day_aggs_v1`) into the cache; returns its path."""
    if dataset not in (MINUTE_AGGS, DAY_AGGS):
        raise BadRequest(f"dataset {dataset!r}: expected {MINUTE_AGGS} or {DAY_AGGS}")
    config = config or load_config()
    day = parse_date(date, "flat-file")
    fetcher = Fetcher(config)
    files, missing = fetcher.flatfiles.plan([day], dataset)
    if not files:
        raise FlatFileError(
            f"no {dataset} file for {day} in the bucket (not a trading day, or not published yet)"
        )
    file: DayFile = files[0]
    fetcher.flatfiles.read(file, [])
    return fetcher.flatfiles.cache_dir / file.key


def quota(*, config: Config | None = None) -> dict[str, Any]:
    """REST calls this minute and today, flat-file bytes this month, and the limits."""
    return QuotaLedger.for_config(config or load_config()).snapshot()


def list_datasets(*, config: Config | None = None) -> list[dict[str, Any]]:
    """Manifests of the datasets under data/historical/, newest first."""
    config = config or load_config()
    return datasets.list_datasets(storage.local_datasets(config.data_location, config.data_dir))


def load_dataset(name: str, *, config: Config | None = None) -> pd.DataFrame:
    """The bars of a dataset (a name, `historical:NAME` or a path) as a DataFrame, finest interval first.

    Raises `mesh.datasets.DatasetError` when it cannot be found or read, `BadRequest` when it has no bars.
    """
    config = config or load_config()
    dataset = shared.resolve(
        name, storage.local_datasets(config.data_location, config.data_dir, name)
    )
    tables = dataset.bar_tables()
    if not tables:
        raise BadRequest(
            f"dataset {dataset.name!r} holds no bars (its tables: {', '.join(dataset.tables) or 'none'})"
        )
    return shared.read_table(tables[0]).to_pandas()
