"""The NYSE calendar under the call patterns its callers use: whole ranges and day-by-day loops.

The fetcher asks for the trading days of a request's range; the simulator asks day by day
(`is_trading_day`, `is_early_close`) while it builds history. Measured, in one process:

- first use: the first `is_trading_day` call (for `mesh.calendar` this loads XNYS once);
- `trading_days` over 30 years (1995-01-01 .. 2024-12-31), warm;
- `is_trading_day` and `is_early_close` over 10,000 consecutive days from 2000-01-01, warm.

`--module PATH` times another calendar module with the same functions (for a before/after).
The last line is the JSON summary: value = warm `is_trading_day` calls per second.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import median, report  # noqa: E402

START, END = dt.date(1995, 1, 1), dt.date(2024, 12, 31)
LOOP_FIRST, LOOP_DAYS = dt.date(2000, 1, 1), 10_000


def load(path: str | None) -> ModuleType:
    if path is None:
        from mesh import calendar

        return calendar
    spec = importlib.util.spec_from_file_location("calendar_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(call: object, repeat: int) -> float:
    """Median seconds of `repeat` calls of `call()`."""
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()  # type: ignore[operator]
        runs.append(time.perf_counter() - t0)
    return median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", help="path of another calendar module to time instead")
    args = parser.parse_args()
    t0 = time.perf_counter()
    cal = load(args.module)
    cal.is_trading_day(LOOP_FIRST)
    first_use = time.perf_counter() - t0
    days = [LOOP_FIRST + dt.timedelta(days=i) for i in range(LOOP_DAYS)]
    span = timed(lambda: cal.trading_days(START, END), 20)
    loop = timed(lambda: [cal.is_trading_day(d) for d in days], 20)
    early = timed(lambda: [cal.is_early_close(d) for d in days], 20)
    sessions = len(cal.trading_days(START, END))
    print(f"calendar module      {args.module or 'mesh.calendar'}")
    print(f"first use            {first_use * 1e3:8.1f} ms (import and first is_trading_day)")
    print(f"trading_days 30 y    {span * 1e3:8.2f} ms ({sessions} sessions)")
    print(f"is_trading_day x10k  {loop * 1e3:8.2f} ms")
    print(f"is_early_close x10k  {early * 1e3:8.2f} ms")
    report(
        "calendar",
        "is_trading_day calls per second (warm)",
        LOOP_DAYS / loop,
        "calls/s",
        0.0,
        None,
        first_use_ms=round(first_use * 1e3, 1),
        trading_days_30y_ms=round(span * 1e3, 3),
        is_early_close_10k_ms=round(early * 1e3, 3),
    )


if __name__ == "__main__":
    main()
