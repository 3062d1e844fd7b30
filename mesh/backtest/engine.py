"""The vectorised bar engine: target positions in, fills, positions, cash and equity out.

The rule that keeps it honest: the target a strategy sets at the close of bar t is traded at the
open of bar t+1 (`held[t+1] = target[t]`), so no trade can use a price it had not seen. Bars are
never looped over: the engine finds the bars where the held target changes (a few per thousand
bars for most strategies), sizes and prices only those fills in a short loop, then builds the
per-bar cash, shares and equity columns with numpy. A parameter sweep therefore costs a few
array passes per combination.

Costs on bars: a buy fills at open * (1 + slippage), a sell at open * (1 - slippage); commission
is charged on the notional of every fill. Sizing: a target of h means h of the equity (marked at
the fill bar's open) goes into the position, after costs; with `whole_shares` the share count is
rounded toward zero. Equity at every bar is cash + shares * close, and `reconcile` checks that the
fills add up to the positions and the cash.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mesh.backtest.frames import Bars


@dataclass(frozen=True)
class Costs:
    """Trading costs in basis points of notional (1 bp = 0.01%)."""

    commission_bps: float = 0.0
    slippage_bps: float = 0.0  # bar fills only; quote fills pay the real spread instead

    @property
    def fee(self) -> float:
        return self.commission_bps / 1e4

    @property
    def slip(self) -> float:
        return self.slippage_bps / 1e4


NO_COSTS = Costs()


@dataclass
class Fills:
    """Every execution, as columns."""

    bar: np.ndarray  # bar index whose position first includes the fill
    ts: np.ndarray  # ns UTC of the execution
    signal_bar: np.ndarray  # the bar whose close decided it
    qty: np.ndarray  # signed shares (+ buy, - sell)
    price: np.ndarray  # execution price, costs in the price (slippage, or the spread side)
    ref_price: np.ndarray  # the price without costs: the bar's open, or the quote's mid
    fee: np.ndarray  # commission paid
    cost: np.ndarray  # slippage or half-spread paid, vs ref_price

    def __len__(self) -> int:
        return len(self.bar)

    @classmethod
    def from_lists(cls, cols: dict[str, list[Any]]) -> Fills:
        ints = ("bar", "ts", "signal_bar")
        return cls(
            **{
                k: np.asarray(cols[k], dtype=np.int64 if k in ints else np.float64)
                for k in cls.__dataclass_fields__
            }
        )


@dataclass
class Trades:
    """Round trips: from flat to a position and back to flat (or to the other side), as columns."""

    entry_bar: np.ndarray
    exit_bar: np.ndarray  # -1 while still open
    entry_ts: np.ndarray
    exit_ts: np.ndarray  # the last bar's close time while open
    side: np.ndarray  # +1 long, -1 short
    qty: np.ndarray  # largest absolute position during the trade
    entry_price: np.ndarray  # average price of the fills that built the position
    exit_price: np.ndarray  # average price of the fills that closed it (the last close while open)
    pnl: np.ndarray  # cash in minus cash out, fees included; open trades marked at the last close
    ret: np.ndarray  # pnl / cost of the position at entry
    fees: np.ndarray
    bars_held: np.ndarray
    closed: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.entry_bar)


@dataclass
class SymbolRun:
    """One symbol's simulation: per-bar columns plus its fills and trades."""

    symbol: str
    ts: np.ndarray  # bar close times (ns): when each equity value is known
    close: np.ndarray  # the mark price per bar
    held: np.ndarray  # target held during each bar (after the shift)
    shares: np.ndarray
    cash: np.ndarray
    equity: np.ndarray
    initial_cash: float
    fills: Fills
    trades: Trades
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def position_value(self) -> np.ndarray:
        return self.shares * self.close


def held_targets(target: np.ndarray) -> np.ndarray:
    """The position in force during each bar: NaN means keep, and the target of bar t applies from t+1."""
    t = np.asarray(target, dtype=np.float64)
    if len(t) and np.isnan(t.min()):  # min propagates NaN: one pass, no temporary
        valid = ~np.isnan(t)
        idx = np.where(valid, np.arange(len(t)), -1)
        np.maximum.accumulate(idx, out=idx)
        t = np.where(idx >= 0, t[np.maximum(idx, 0)], 0.0)
    held = np.empty(len(t))
    if len(t):
        held[0] = 0.0
        held[1:] = t[:-1]
    return held


def change_points(held: np.ndarray) -> np.ndarray:
    """Bars at whose open the held target changes."""
    if len(held) == 0:
        return np.zeros(0, dtype=np.int64)
    points = np.flatnonzero(
        held[1:] != held[:-1]
    )  # held[0] is always 0: nothing is held before a signal
    points += 1
    return points


class _Book:
    """The fill loop's state: cash, shares, the open trade; appends fills and finished trades."""

    def __init__(self, cash: float, fee: float) -> None:
        self.cash = cash
        self.shares = 0.0
        self.fee_rate = fee
        self.fills: dict[str, list[Any]] = {k: [] for k in Fills.__dataclass_fields__}
        self.trades: dict[str, list[Any]] = {k: [] for k in Trades.__dataclass_fields__}
        self._trade: dict[str, Any] | None = None

    def fill(
        self, bar: int, ts: int, signal_bar: int, qty: float, price: float, ref: float
    ) -> None:
        notional = qty * price
        fee = abs(notional) * self.fee_rate
        self.cash -= notional + fee
        before = self.shares
        after = before + qty
        if abs(after) <= 1e-12 * abs(before):
            after = 0.0
        self.shares = after
        f = self.fills
        f["bar"].append(bar)
        f["ts"].append(ts)
        f["signal_bar"].append(signal_bar)
        f["qty"].append(qty)
        f["price"].append(price)
        f["ref_price"].append(ref)
        f["fee"].append(fee)
        f["cost"].append(abs(qty) * abs(price - ref))
        # trade bookkeeping: split a fill that crosses zero into a closing part and an opening part
        if before != 0 and (after == 0 or (after > 0) != (before > 0)):
            closing = -before
            share = abs(closing / qty) if qty else 1.0
            self._add(bar, ts, closing, price, fee * share)
            self._close(bar, ts)
            if after != 0:
                self._open(bar, ts, after, price, fee * (1 - share))
        elif before == 0 and after != 0:
            self._open(bar, ts, after, price, fee)
        elif self._trade is not None:
            self._add(bar, ts, qty, price, fee)

    def _open(self, bar: int, ts: int, qty: float, price: float, fee: float) -> None:
        self._trade = {
            "entry_bar": bar,
            "entry_ts": ts,
            "side": 1.0 if qty > 0 else -1.0,
            "qty": abs(qty),
            "pos": qty,
            "in_qty": abs(qty),
            "in_value": abs(qty) * price,
            "out_qty": 0.0,
            "out_value": 0.0,
            "cash": -qty * price - fee,
            "fees": fee,
            "cost": abs(qty) * price,
        }

    def _add(self, bar: int, ts: int, qty: float, price: float, fee: float) -> None:
        t = self._trade
        assert t is not None
        grows = (qty > 0) == (t["side"] > 0)
        if grows:
            t["in_qty"] += abs(qty)
            t["in_value"] += abs(qty) * price
        else:
            t["out_qty"] += abs(qty)
            t["out_value"] += abs(qty) * price
        t["pos"] += qty
        t["qty"] = max(t["qty"], abs(t["pos"]))
        t["cash"] += -qty * price - fee
        t["fees"] += fee

    def _close(self, bar: int, ts: int, mark: float | None = None) -> None:
        t = self._trade
        assert t is not None
        closed = mark is None
        pnl = t["cash"] + (0.0 if closed else t["pos"] * mark)
        out = self.trades
        out["entry_bar"].append(t["entry_bar"])
        out["exit_bar"].append(bar if closed else -1)
        out["entry_ts"].append(t["entry_ts"])
        out["exit_ts"].append(ts)
        out["side"].append(t["side"])
        out["qty"].append(t["qty"])
        out["entry_price"].append(t["in_value"] / t["in_qty"] if t["in_qty"] else math.nan)
        out["exit_price"].append(
            (t["out_value"] / t["out_qty"] if t["out_qty"] else math.nan) if closed else mark
        )
        out["pnl"].append(pnl)
        out["ret"].append(pnl / t["in_value"] if t["in_value"] else 0.0)
        out["fees"].append(t["fees"])
        out["bars_held"].append(bar - t["entry_bar"])
        out["closed"].append(closed)
        self._trade = None

    def finish(self, last_bar: int, last_ts: int, mark: float) -> tuple[Fills, Trades]:
        if self._trade is not None:
            self._close(last_bar, last_ts, mark)
            self.trades["bars_held"][-1] = last_bar - self.trades["entry_bar"][-1] + 1
        trades = Trades(
            **{
                k: np.asarray(
                    v,
                    dtype=bool
                    if k == "closed"
                    else np.int64
                    if k in ("entry_bar", "exit_bar", "entry_ts", "exit_ts", "bars_held")
                    else np.float64,
                )
                for k, v in self.trades.items()
            }
        )
        return Fills.from_lists(self.fills), trades


def size(target: float, equity: float, price: float, fee: float, whole_shares: bool) -> float:
    """Shares for a target fraction of equity at `price`, after commission."""
    if target == 0.0 or equity <= 0.0:
        return 0.0
    shares = target * equity / (price * (1.0 + fee))
    if whole_shares:
        shares = whole(shares, abs(target) * equity, price * (1.0 + fee))
    return shares


def whole(shares: float, budget: float, unit_cost: float) -> float:
    """`shares` rounded toward zero to whole shares that fit `budget` (1e-9 share of rounding noise forgiven)."""
    count = math.floor(abs(shares) + 1e-9)
    if count * unit_cost > budget * (1.0 + 1e-12):
        count -= 1
    return float(count) if shares > 0 else -float(count)


def step_columns(n: int, bars_at: np.ndarray, values: np.ndarray, initial: float) -> np.ndarray:
    """A per-bar column that starts at `initial` and takes values[k] from bar bars_at[k] on (bars_at sorted)."""
    if len(bars_at) == 0:
        return np.full(n, initial)
    return np.repeat(np.r_[initial, values], np.diff(np.r_[0, bars_at, n]))


def simulate_bars(
    bars: Bars,
    target: np.ndarray,
    cash: float = 100_000.0,
    costs: Costs = NO_COSTS,
    whole_shares: bool = False,
    *,
    vectorised: bool = True,
) -> SymbolRun:
    """Run one symbol's targets on its bars: fills at the next bar's open plus costs (see the module docstring).

    Targets that only ever go flat -> position -> flat (or flip sides) are simulated a trade at a
    time with arrays (`vectorised`); anything else (resizing a position without closing it) goes
    through the general fill loop. Both give the same answer where both apply.
    """
    n = len(bars)
    held = held_targets(target)
    points = change_points(held)
    opens = bars.open[points]
    if vectorised and _legs_apply(held, points, opens):
        fills, trades = _simulate_legs(bars, held, points, cash, costs, whole_shares)
    else:
        fills, trades = _simulate_loop(bars, held, points, cash, costs, whole_shares)
    del n
    return assemble(bars.symbol, bars.ts_end, bars.close, held, fills, trades, cash)


def _legs_apply(held: np.ndarray, points: np.ndarray, opens: np.ndarray) -> bool:
    if len(points) == 0:
        return True
    now, before = held[points], held[points - 1]
    resized = (now != 0) & (before != 0) & (np.sign(now) == np.sign(before))
    return not resized.any() and bool(np.all(opens > 0)) and bool(np.all(np.isfinite(opens)))


def _simulate_legs(
    bars: Bars, held: np.ndarray, points: np.ndarray, cash: float, costs: Costs, whole_shares: bool
) -> tuple[Fills, Trades]:
    """Each run of a constant non-zero target is one trade: size it on the cash at entry, close it at the next change."""
    n = len(bars)
    fee, slip = costs.fee, costs.slip
    goal = held[points]
    entry_k = np.flatnonzero(goal != 0)  # positions in `points`
    h = goal[entry_k]
    side = np.sign(h)
    entry_bar = points[entry_k]
    has_exit = entry_k + 1 < len(points)
    exit_bar = np.where(has_exit, points[np.minimum(entry_k + 1, len(points) - 1)], -1)
    o_in = bars.open[entry_bar]
    p_in = o_in * (1.0 + side * slip)
    o_out = np.where(has_exit, bars.open[np.maximum(exit_bar, 0)], bars.close[-1] if n else 0.0)
    p_out = np.where(
        has_exit, o_out * (1.0 - side * slip), o_out
    )  # open trades are marked at the last close, no costs
    unit = h / (p_in * (1.0 + fee))  # shares per unit of cash at entry
    if whole_shares:
        qty = np.empty(len(h))
        c = cash
        u, hh, pi, po, ex = (
            unit.tolist(),
            h.tolist(),
            p_in.tolist(),
            p_out.tolist(),
            has_exit.tolist(),
        )
        for i in range(len(u)):
            s = whole(u[i] * c, abs(hh[i]) * c, pi[i] * (1.0 + fee)) if c > 0 else 0.0
            qty[i] = s
            if ex[i]:
                c += s * (po[i] - pi[i]) - abs(s) * (pi[i] + po[i]) * fee
        cash_before = None
    else:
        # cash after each closed trade = cash before * g (fractional shares make the whole path multiplicative)
        g = 1.0 + unit * (p_out - p_in) - np.abs(unit) * (p_in + p_out) * fee
        g = np.where(has_exit, g, 1.0)
        cash_before = cash * np.cumprod(np.r_[1.0, g[:-1]])
        qty = unit * np.where(cash_before > 0, cash_before, 0.0)
    keep = qty != 0
    if not keep.all():
        entry_bar, exit_bar, has_exit, qty = (
            entry_bar[keep],
            exit_bar[keep],
            has_exit[keep],
            qty[keep],
        )
        o_in, p_in, o_out, p_out, side = (
            o_in[keep],
            p_in[keep],
            o_out[keep],
            p_out[keep],
            side[keep],
        )
    fee_in = np.abs(qty) * p_in * fee
    fee_out = np.where(has_exit, np.abs(qty) * p_out * fee, 0.0)
    # fills: entries and exits, exits first within a bar
    xb = exit_bar[has_exit]
    f_bar = np.r_[entry_bar, xb]
    order = np.argsort(
        f_bar * 2
        + np.r_[np.ones(len(entry_bar), dtype=np.int64), np.zeros(len(xb), dtype=np.int64)],
        kind="stable",
    )
    f_qty = np.r_[qty, -qty[has_exit]][order]
    f_price = np.r_[p_in, p_out[has_exit]][order]
    f_ref = np.r_[o_in, o_out[has_exit]][order]
    f_bar = f_bar[order]
    fills = Fills(
        bar=f_bar,
        ts=bars.ts[f_bar],
        signal_bar=f_bar - 1,
        qty=f_qty,
        price=f_price,
        ref_price=f_ref,
        fee=np.r_[fee_in, fee_out[has_exit]][order],
        cost=np.abs(f_qty) * np.abs(f_price - f_ref),
    )
    pnl = qty * (p_out - p_in) - fee_in - fee_out
    last = n - 1
    trades = Trades(
        entry_bar=entry_bar,
        exit_bar=np.where(has_exit, exit_bar, -1),
        entry_ts=bars.ts[entry_bar],
        exit_ts=np.where(has_exit, bars.ts[np.maximum(exit_bar, 0)], bars.ts_end[-1] if n else 0),
        side=np.sign(qty),
        qty=np.abs(qty),
        entry_price=p_in,
        exit_price=p_out,
        pnl=pnl,
        ret=pnl / (np.abs(qty) * p_in),
        fees=fee_in + fee_out,
        bars_held=np.where(has_exit, exit_bar - entry_bar, last - entry_bar + 1),
        closed=has_exit.copy(),
    )
    return fills, trades


def _simulate_loop(
    bars: Bars, held: np.ndarray, points: np.ndarray, cash: float, costs: Costs, whole_shares: bool
) -> tuple[Fills, Trades]:
    """The general case, one change at a time: close first when the side changes, then size the new target."""
    n = len(bars)
    book = _Book(cash, costs.fee)
    slip = costs.slip
    for bar, goal, price_open, ts in zip(
        points.tolist(),
        held[points].tolist(),
        bars.open[points].tolist(),
        bars.ts[points].tolist(),
        strict=True,
    ):
        if not (price_open > 0) or not math.isfinite(
            price_open
        ):  # no tradable price: the order waits for the next change
            continue
        if book.shares != 0 and (goal == 0 or (goal > 0) != (book.shares > 0)):
            price = price_open * (1.0 - slip) if book.shares > 0 else price_open * (1.0 + slip)
            book.fill(bar, ts, bar - 1, -book.shares, price, price_open)
        if goal == 0:
            continue
        equity = book.cash + book.shares * price_open
        buying = goal * equity > book.shares * price_open
        price = price_open * (1.0 + slip) if buying else price_open * (1.0 - slip)
        qty = size(goal, equity, price, costs.fee, whole_shares) - book.shares
        if qty != 0.0:
            book.fill(bar, ts, bar - 1, qty, price, price_open)
    return book.finish(n - 1, int(bars.ts_end[-1]) if n else 0, float(bars.close[-1]) if n else 0.0)


def assemble(
    symbol: str,
    ts: np.ndarray,
    mark: np.ndarray,
    held: np.ndarray,
    fills: Fills,
    trades: Trades,
    cash: float,
) -> SymbolRun:
    """Per-bar shares, cash and equity from the fills (several fills in one bar are summed)."""
    n = len(ts)
    if len(fills):
        bars_at, first = np.unique(fills.bar, return_index=True)
        cum_shares = np.cumsum(fills.qty)
        cum_cash = cash - np.cumsum(fills.qty * fills.price + fills.fee)
        last = np.r_[first[1:], len(fills)] - 1  # the state after the last fill of each bar
        held_shares = cum_shares[last]
        held_shares[np.abs(held_shares) < 1e-9] = 0.0
        shares = step_columns(n, bars_at, held_shares, 0.0)
        cash_col = step_columns(n, bars_at, cum_cash[last], cash)
    else:
        shares = np.zeros(n)
        cash_col = np.full(n, cash)
    equity = shares * mark
    equity += cash_col
    return SymbolRun(
        symbol,
        np.asarray(ts, dtype=np.int64),
        np.asarray(mark, dtype=np.float64),
        held,
        shares,
        cash_col,
        equity,
        cash,
        fills,
        trades,
    )


def reconcile(run: SymbolRun, tol: float = 1e-6) -> None:
    """Raise AssertionError unless positions and cash agree with the fills at every bar, and equity = cash + shares * mark."""
    n = len(run.ts)
    shares = np.zeros(n)
    cash = np.full(n, run.initial_cash)
    f = run.fills
    for k in range(len(f)):
        shares[f.bar[k] :] += f.qty[k]
        cash[f.bar[k] :] -= f.qty[k] * f.price[k] + f.fee[k]
    scale = max(1.0, run.initial_cash)
    assert np.allclose(shares, run.shares, atol=1e-6), "shares do not match the fills"
    assert np.allclose(cash, run.cash, atol=tol * scale), "cash does not match the fills"
    assert np.allclose(run.equity, run.cash + run.shares * run.close, atol=tol * scale), (
        "equity != cash + shares * mark"
    )
    if len(f):
        assert (f.bar > f.signal_bar).all(), "a fill at or before the bar that decided it"
