"""`massive paper compare NAME`: the backtest of a paper session's recording, fill for fill.

The backtester runs the session's strategy, parameters and fill settings on the recording that
captured its quotes, over exactly the quotes each symbol's trader took (from its first to its
last), with bars built from quote mids as the live run built them. Each live fill (from the
session's journal) is then matched with a backtest fill of the same symbol, time, side, quantity
and price; on a clean session every fill matches and the P&L is equal. What does not match is
listed, with what the session knows that explains it: time the service was down, an order still
waiting for its quote at the stop, a recording that started after the session.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from mesh.backtest import runner
from mesh.backtest.datasets import Market
from mesh.backtest.frames import Quotes, bars_from_ticks
from mesh.backtest.strategy_path import StrategyPath
from mesh.config import Config
from mesh.datasets import storage
from mesh.paper.session import NAME, PaperError, Session, State, journal_items
from mesh.schema import Fill
from mesh.times import iso

TOLERANCE = 1e-9  # relative, for quantities and prices (float rounding)


def compare(name: str, config: Config) -> dict[str, Any]:
    """Compare paper session `name` with the backtest of its recording (see the module docstring)."""
    if not NAME.fullmatch(name):
        raise PaperError(
            f"no paper session {name!r:.60}: names are 1-48 letters, digits, '_' or '-'"
        )
    folder = config.data_dir / "paper" / name
    if not (folder / "session.json").is_file():
        raise PaperError(f"no paper session {name!r} in {folder.parent}")
    record = Session.load(folder)
    if record.state in (State.RUNNING, State.LAGGING):
        raise PaperError(f"paper session {name!r} is still running; stop it first")
    spec = record.spec
    live = [f for f in journal_items(folder) if isinstance(f, Fill)]
    traded = [s for s in spec.symbols if s in record.first_ts]
    if not traded:
        raise PaperError(f"paper session {name!r} took no quotes: nothing to compare")
    options = runner.Options(
        interval=spec.interval,
        fills="quotes",
        bar_source="mid",
        symbols=traded,
        cash=spec.cash,
        commission_bps=spec.commission_bps,
        whole_shares=spec.whole_shares,
        cap_size=spec.cap_size,
        latency_ms=spec.latency_ms,
    )
    recording = f"recording:{record.recording}"
    folder = storage.local_datasets(config.data_location, config.data_dir, recording)
    market = runner.prepare(recording, options, folder)
    market = _between(market, record.first_ts, record.last_ts)
    strategy = StrategyPath.from_environ().load(spec.strategy)  # as the service loaded it
    # the sleeves are the live session's: its cash split over all its symbols
    options = replace(options, cash=spec.cash / len(spec.symbols) * len(market.symbols))
    result = runner.simulate(market, strategy, spec.params, options)
    symbols, fills = result.fills()
    backtest = [
        (s, int(t), float(q), float(p), float(fee))
        for s, t, q, p, fee in zip(
            symbols,
            fills.ts.tolist(),
            fills.qty.tolist(),
            fills.price.tolist(),
            fills.fee.tolist(),
            strict=True,
        )
    ]
    matched, live_only, backtest_only = _match(live, backtest)
    marks = {s: float(market.quotes[s].mid[-1]) for s in market.symbols if len(market.quotes[s])}
    pnl_live = _pnl([(f.symbol, f.qty, f.price, f.fee) for f in live], marks)
    pnl_backtest = _pnl([(s, q, p, fee) for s, _, q, p, fee in backtest], marks)
    exact = not live_only and not backtest_only
    explanations = _explain(record, market, live_only, backtest_only) if not exact else []
    summary = (
        f"{name}: {matched} of {len(live)} live fills found in the backtest of "
        f"{record.recording}"
        + ("" if exact else f"; {len(live_only)} live only, {len(backtest_only)} backtest only")
        + f"; P&L live {pnl_live:,.2f}, backtest {pnl_backtest:,.2f}"
        + (" (exact)" if exact else "")
    )
    return {
        "name": name,
        "recording": record.recording,
        "strategy": spec.strategy,
        "params": spec.params,
        "symbols": market.symbols,
        "live_fills": len(live),
        "backtest_fills": len(backtest),
        "matched": matched,
        "live_only": [_row(f.symbol, f.ts_event, f.qty, f.price) for f in live_only],
        "backtest_only": [_row(s, t, q, p) for s, t, q, p, _ in backtest_only],
        "pnl_live": pnl_live,
        "pnl_backtest": pnl_backtest,
        "pnl_difference": pnl_live - pnl_backtest,
        "exact": exact,
        "explanations": explanations,
        "summary": summary,
    }


def _between(market: Market, first: dict[str, int], last: dict[str, int]) -> Market:
    """The market over the quotes each symbol's trader took, with bars of their mids rebuilt."""
    quotes, bars = {}, {}
    for symbol, q in market.quotes.items():
        if symbol not in first:
            continue
        keep = (q.ts >= first[symbol]) & (q.ts <= last.get(symbol, first[symbol]))
        clipped = Quotes(
            symbol, q.ts[keep], q.bid[keep], q.ask[keep], q.bid_size[keep], q.ask_size[keep]
        )
        if len(clipped):
            quotes[symbol] = clipped
            bars[symbol] = bars_from_ticks(
                symbol, clipped.ts, clipped.mid, None, market.interval_ns
            )
    if not bars:
        raise PaperError(
            f"the recording {market.dataset.name!r} holds none of the quotes the session took"
        )
    return replace(market, bars=bars, quotes=quotes)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=1e-12)


def _match(
    live: list[Fill], backtest: list[tuple[str, int, float, float, float]]
) -> tuple[int, list[Fill], list[tuple[str, int, float, float, float]]]:
    """Pairs of fills with the same symbol and time whose quantity and price agree."""
    waiting: dict[tuple[str, int], list[int]] = {}
    for i, (symbol, ts, *_) in enumerate(backtest):
        waiting.setdefault((symbol, ts), []).append(i)
    used: set[int] = set()
    live_only = []
    for fill in live:
        candidates = waiting.get((fill.symbol, fill.ts_event), [])
        found = next(
            (
                i
                for i in candidates
                if i not in used
                and _close(backtest[i][2], fill.qty)
                and _close(backtest[i][3], fill.price)
            ),
            None,
        )
        if found is None:
            live_only.append(fill)
        else:
            used.add(found)
    backtest_only = [b for i, b in enumerate(backtest) if i not in used]
    return len(used), live_only, backtest_only


def _pnl(fills: list[tuple[str, float, float, float]], marks: dict[str, float]) -> float:
    """Cash flows of the fills plus what they leave held, at the same closing mids."""
    cash, shares = 0.0, dict[str, float]()
    for symbol, qty, price, fee in fills:
        cash -= qty * price + fee
        shares[symbol] = shares.get(symbol, 0.0) + qty
    return float(cash + sum(q * marks.get(s, 0.0) for s, q in shares.items()))


def _row(symbol: str, ts: int, qty: float, price: float) -> dict[str, Any]:
    return {"symbol": symbol, "ts": ts, "time": iso(ts), "qty": qty, "price": price}


def _explain(
    record: Any,
    market: Market,
    live_only: list[Fill],
    backtest_only: list[tuple[str, int, float, float, float]],
) -> list[str]:
    out = []
    for lo, hi in record.lost:
        out.append(
            f"the strategy service was down from {iso(lo)} to {iso(hi)}: the live run took no "
            "decisions then and started its bars again after it"
        )
    for symbol, ts in record.first_ts.items():
        q = market.quotes.get(symbol)
        if q is not None and len(q) and int(np.min(q.ts)) > ts:
            out.append(
                f"{symbol}: the recording starts after the live run's first quote; the backtest "
                "saw fewer bars at the start"
            )
    stop = max(record.last_ts.values(), default=0)
    if any(t >= stop for _, t, *_ in backtest_only):
        out.append(
            "an order was still waiting for its quote when the session stopped: the backtest "
            "filled it at the last quote, the live run did not"
        )
    if not out:
        first = live_only[0].ts_event if live_only else backtest_only[0][1]
        out.append(
            f"the runs part at {iso(first)}: a quote the live run took late or not at all "
            "(see the session's late_quotes), or a bar it closed before its last quote came"
        )
    return out
