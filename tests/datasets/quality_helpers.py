"""Recordings of the sim's history for the quality tests: a day's tape written by the recorder."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from mesh.schema import QuoteBatch, TradeBatch
from mesh.sim import history, market

DAY = dt.date(2026, 12, 4)


def tape(symbols: tuple[str, ...], day: dt.date = DAY) -> tuple[TradeBatch, QuoteBatch]:
    """Every trade and quote of `symbols` on `day`, as the live feed carries them, in SIP time order."""
    trades = [history.day_trades(market.DEFAULT_SEED, s, day) for s in symbols]
    quotes = [history.day_quotes(market.DEFAULT_SEED, s, day) for s in symbols]
    t_order = np.argsort(np.concatenate([t.sip_ns for t in trades]), kind="stable")
    q_order = np.argsort(np.concatenate([q.sip_ns for q in quotes]), kind="stable")

    def cat(parts: list[np.ndarray], order: np.ndarray) -> list:
        return np.concatenate(parts)[order].tolist()

    flags = cat([t.flags for t in trades], t_order)
    codes = [[c for bit, c in history.CONDITION_CODES if f & bit] for f in flags]
    ts = cat([t.sip_ns for t in trades], t_order)
    trade_batch = TradeBatch(
        symbol=cat([np.full(len(t), t.symbol, object) for t in trades], t_order),
        price=cat([t.price for t in trades], t_order),
        size=cat([t.size for t in trades], t_order),
        exchange=cat([t.exchange for t in trades], t_order),
        trade_id=[str(i) for i in cat([t.trade_id for t in trades], t_order)],
        conditions=codes,
        tape=cat([np.full(len(t), t.tape) for t in trades], t_order),
        sequence=cat([t.sequence for t in trades], t_order),
        ts_event=ts,
        ts_recv=[x + 1_000_000 for x in ts],
    )
    qts = cat([q.sip_ns for q in quotes], q_order)
    quote_batch = QuoteBatch(
        symbol=cat([np.full(len(q), q.symbol, object) for q in quotes], q_order),
        bid_price=cat([q.bid_price for q in quotes], q_order),
        bid_size=cat([q.bid_size for q in quotes], q_order),
        ask_price=cat([q.ask_price for q in quotes], q_order),
        ask_size=cat([q.ask_size for q in quotes], q_order),
        bid_exchange=cat([q.bid_exchange for q in quotes], q_order),
        ask_exchange=cat([q.ask_exchange for q in quotes], q_order),
        condition=[0] * len(qts),
        tape=cat([np.full(len(q), q.tape) for q in quotes], q_order),
        sequence=cat([q.sequence for q in quotes], q_order),
        ts_event=qts,
        ts_recv=[x + 1_000_000 for x in qts],
    )
    return trade_batch, quote_batch


def record_day(
    data_dir: Path,
    name: str,
    symbols: tuple[str, ...],
    *,
    day: dt.date = DAY,
    tables: tuple[str, ...] = ("trades", "quotes"),
) -> Path:
    """A recording of `symbols`' whole day on the sim, written by the real recorder."""
    from mesh.recorder.session import Session

    trades, quotes = tape(symbols, day)
    session = Session(name, data_dir=data_dir).open()
    if "quotes" in tables:
        session.write("quotes", quotes)
    if "trades" in tables:
        session.write("trades", trades)
    session.stop()
    return data_dir / "recordings" / name
