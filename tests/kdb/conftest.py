"""Fixtures for the kdb publisher tests: fake tickerplants and sample batches."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ["PYKX_UNLICENSED"] = "true"  # before anything imports pykx

from mesh.schema import (  # noqa: E402
    Bar,
    BarBatch,
    Fill,
    Order,
    Pnl,
    Quote,
    QuoteBatch,
    Trade,
    TradeBatch,
)
from tests.kdb.tickerplant import FakeTickerplant  # noqa: E402

T0 = 1_767_346_200_123_456_789  # 2026-01-02 09:30:00.123456789 UTC
Q_EPOCH = 946_684_800_000_000_000  # 2000-01-01 in Unix ns: q timestamps count from here


@pytest.fixture
def make_tp(tmp_path: Path) -> Iterator[Callable[..., FakeTickerplant]]:
    """Start fake tickerplants (subprocesses); all are stopped after the test."""
    started: list[FakeTickerplant] = []

    def make(name: str = "tp", **kwargs: object) -> FakeTickerplant:
        tp = FakeTickerplant(tmp_path / f"{name}.jsonl", **kwargs)  # type: ignore[arg-type]
        started.append(tp)
        return tp

    yield make
    for tp in started:
        tp.stop()


def quotes(n: int, start: int = 0, symbols: tuple[str, ...] = ("AAPL", "MSFT")) -> QuoteBatch:
    """`n` quotes whose `sequence` runs from `start`, so tests can tell every row apart."""
    return QuoteBatch.from_rows(
        [
            Quote(
                symbol=symbols[i % len(symbols)],
                bid_price=100 + i / 100,
                bid_size=100 + i,
                ask_price=100.01 + i / 100,
                ask_size=200 + i,
                bid_exchange=4,
                ask_exchange=7,
                condition=1,
                tape=3,
                sequence=i,
                ts_event=T0 + i,
                ts_recv=T0 + 1000 + i,
            )
            for i in range(start, start + n)
        ]
    )


def trades(n: int, start: int = 0) -> TradeBatch:
    return TradeBatch.from_rows(
        [
            Trade(
                symbol="NVDA",
                price=180.5 + i,
                size=10 + i,
                exchange=11,
                trade_id=str(52983525029461 + i) if i % 2 else "7",
                conditions=[12, 37] if i % 2 else [],
                tape=3,
                sequence=i,
                ts_event=T0 + i,
                ts_recv=T0 + 2000 + i,
            )
            for i in range(start, start + n)
        ]
    )


def bars(n: int, interval: str = "1m", replaces: bool = False) -> BarBatch:
    step = 60_000_000_000 if interval == "1m" else 1_000_000_000
    start = T0 - T0 % step
    return BarBatch.from_rows(
        [
            Bar(
                symbol="SPY",
                ts_start=start + i * step,
                ts_end=start + (i + 1) * step,
                open=600.0 + i,
                high=601.0 + i,
                low=599.5 + i,
                close=600.5 + i,
                volume=1000.0 * (i + 1),
                vwap=600.25 + i,
                transactions=10 + i,
                ts_recv=0 if i == 0 else start + (i + 1) * step + 5,
            )
            for i in range(n)
        ],
        interval=interval,
        replaces=replaces,
    )


def paper_records(name: str = "momo", n: int = 3) -> tuple[list[Order], list[Fill], list[Pnl]]:
    """A paper session's orders, their fills and the P&L after each bar, `n` of each."""
    orders = [
        Order(
            name=name,
            symbol="AAPL" if i % 2 else "MSFT",
            qty=100.0 if i % 2 else -50.0,
            target=1.0 if i % 2 else -0.5,
            bar_end=T0 + i * 60_000_000_000,
            ts_decided=T0 + i * 60_000_000_000 + 1_500_000,
            order_id=i + 1,
        )
        for i in range(n)
    ]
    fills = [
        Fill(
            name=name,
            symbol=o.symbol,
            order_id=o.order_id,
            qty=o.qty,
            price=200.02 + i,
            ref_price=200.0 + i,
            fee=0.25,
            ts_event=o.ts_decided + 2_000_000,
            position=o.qty * (i + 1),
            cash=100_000.0 - o.qty * (200.02 + i) - 0.25,
        )
        for i, o in enumerate(orders)
    ]
    pnls = [
        Pnl(
            name=name,
            symbol=o.symbol,
            ts=o.bar_end + 60_000_000_000,
            position=f.position,
            cash=f.cash,
            equity=f.cash + f.position * 200.5,
            initial_cash=100_000.0,
            fills=i + 1,
        )
        for i, (o, f) in enumerate(zip(orders, fills, strict=True))
    ]
    return orders, fills, pnls
