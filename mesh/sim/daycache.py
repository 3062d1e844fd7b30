"""Day bars of completed years, kept on disk, so deep daily history is built once per machine.

A day bar is the aggregate of its day's tape, and a tape costs 1.5-3.5 ms to draw at the default
scale, so the day bars of one symbol from 2003-09-10 to today (about 5,850 days) take 10-20 s to
build: too slow to repeat for every process that asks for long daily ranges. A year whose days are
all in the past never changes for a given (seed, scale, symbol), so once built it is written here,
one small `.npz` per year, and read back in about a millisecond by any later process.

Files are keyed by a digest of the source of every module a tape depends on, so a change to how
the market is drawn starts a fresh cache instead of serving stale bars. `MESH_SIM_CACHE` names the
directory (default `$XDG_CACHE_HOME/massive-mesh/sim`, else `~/.cache/massive-mesh/sim`); `off`
keeps everything in memory. A cache that cannot be read or written is ignored (and rebuilt), never
an error: it holds nothing that cannot be drawn again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from mesh.files import replace_file
from mesh.sim import conditions, corporate, history, market

log = logging.getLogger(__name__)

ENV = "MESH_SIM_CACHE"


def cache_root(environ: dict[str, str] | None = None) -> Path | None:
    """Where year files live, or None when `MESH_SIM_CACHE=off`."""
    env = os.environ if environ is None else environ
    raw = env.get(ENV, "").strip()
    if raw.lower() == "off":
        return None
    if raw:
        return Path(raw).expanduser()
    xdg = env.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "massive-mesh" / "sim"


@lru_cache(maxsize=1)
def tape_version() -> str:
    """A digest of the code that draws a tape: change any of it and the cache starts afresh."""
    digest = hashlib.sha256()
    for module in (history, market, corporate, conditions):
        digest.update(Path(module.__file__ or "").read_bytes())
    return digest.hexdigest()[:16]


def year_path(root: Path, seed: int, scale: float, symbol: str, year: int) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in ".-_" else "_" for ch in symbol)
    return root / tape_version() / f"seed{seed}-scale{scale!r}" / safe / f"{year}.npz"


YEAR_BUILD_MIN_DAYS = 20  # a range needing this many days of a year builds (and keeps) the year


def day_bar(seed: int, symbol: str, day: dt.date, scale: float) -> history.Bars:
    """`history.day_bar`, from the year's file if that year is kept (a lone day never builds one)."""
    year = _year(seed, symbol, day.year, scale, build=False)
    if year is None:
        return history.day_bar(seed, symbol, day, scale)
    bars, index = year
    i = index.get(day)
    return history.EMPTY_BARS if i is None else bars.take(slice(i, i + 1))


def prepare(seed: int, symbol: str, first: dt.date, last: dt.date, scale: float) -> None:
    """Build and keep each completed year of which [first, last] needs many days."""
    last = min(last, dt.date(market.today_et().year - 1, 12, 31))  # completed years only
    for year in range(max(first.year, market.COVERAGE_START.year), last.year + 1):
        lo, hi = max(first, dt.date(year, 1, 1)), min(last, dt.date(year, 12, 31))
        if len(market.trading_days(lo, hi)) >= YEAR_BUILD_MIN_DAYS:
            _year(seed, symbol, year, scale, build=True)


YearBars = tuple[history.Bars, dict[dt.date, int]]
_years: dict[tuple[int, str, int, float], YearBars] = {}
MAX_YEARS_IN_MEMORY = 1024  # ~20 KB each
# One year is drawn at a time: a second request for the same years (a client retrying after its
# timeout) waits for the first's work instead of drawing the same tapes again beside it.
_building = threading.Lock()


def _year(seed: int, symbol: str, year: int, scale: float, *, build: bool) -> YearBars | None:
    """One completed year's day bars and each day's row: from memory, disk, or (if `build`) drawn."""
    if year >= market.today_et().year:
        return None
    key = (seed, symbol, year, scale)
    found = _years.get(key)
    if found is not None:
        return found
    if not build:
        return _load(key)
    with _building:
        return _years.get(key) or _load(key, build=True)


def _load(key: tuple[int, str, int, float], *, build: bool = False) -> YearBars | None:
    seed, symbol, year, scale = key
    root = cache_root()
    path = None if root is None else year_path(root, seed, scale, symbol, year)
    bars = _read(path) if path is not None else None
    if bars is None:
        if not build:
            return None
        days = [
            d
            for d in market.trading_days(dt.date(year, 1, 1), dt.date(year, 12, 31))
            if d >= market.COVERAGE_START
        ]
        bars = history.Bars.concat([history.build_day_bar(seed, symbol, d, scale) for d in days])
        if path is not None:
            _write(path, bars)
    index = {market.et_date_of_ns(int(t) * 1_000_000): i for i, t in enumerate(bars.t.tolist())}
    if len(_years) >= MAX_YEARS_IN_MEMORY:
        _years.pop(next(iter(_years)))
    _years[key] = (bars, index)
    return bars, index


def _read(path: Path) -> history.Bars | None:
    try:
        with np.load(path) as npz:
            return history.Bars(*(npz[f] for f in history.BAR_FIELDS))
    except FileNotFoundError:
        return None
    except Exception as exc:  # a damaged or foreign file: build the year again
        log.warning("ignoring the sim's cached day bars %s: %s", path, exc)
        return None


def _write(path: Path, bars: history.Bars) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **{f: getattr(bars, f) for f in history.BAR_FIELDS})
    try:
        replace_file(path, buffer.getvalue(), durable=False)
    except OSError as exc:
        log.warning("cannot keep the sim's day bars in %s: %s", path.parent, exc)


def clear_memory() -> None:
    """Forget the years read into memory (the files stay)."""
    _years.clear()
