"""Split-adjusted bars (`adjusted=true`, Massive's default) against bars as traded (`adjusted=false`)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import numpy as np
import pytest
from massive import RESTClient

from mesh.sim import adjust, corporate, market
from mesh.sim.clock import SimClock, session_at
from mesh.sim.history import Bars
from tests.simulator import ThreadedSim

KEY = "sim-demo-key"
NVDA_SPLIT = dt.date(2024, 6, 10)  # 10-for-1
INTC_SPLIT = dt.date(2025, 6, 16)  # 1-for-5 reverse


def _client_at(instant: str, symbols: list[str]) -> Iterator[RESTClient]:
    wall = time.time_ns()
    at = dt.datetime.fromisoformat(instant).replace(tzinfo=market.ET)
    clock = SimClock(session_at(at, wall), wall=lambda: wall)  # time stands still
    with ThreadedSim(clock=clock, symbols=symbols, s3=False) as sim:
        yield RESTClient(api_key=KEY, base=sim.rest_url, retries=0)


@pytest.fixture(scope="module")
def after_nvda_split() -> Iterator[RESTClient]:
    yield from _client_at("2024-06-20T10:00", ["NVDA", "AAPL", "AVGO"])


@pytest.fixture(scope="module")
def on_nvda_split_day() -> Iterator[RESTClient]:
    yield from _client_at("2024-06-10T10:00", ["NVDA"])


@pytest.fixture(scope="module")
def after_intc_reverse_split() -> Iterator[RESTClient]:
    yield from _client_at("2025-07-01T10:00", ["INTC"])


def _split_day_ms(day: dt.date) -> int:
    return market.midnight_ns(day) // 1_000_000


@pytest.mark.parametrize("timespan", ["day", "minute"])
def test_a_forward_split_divides_earlier_prices_and_multiplies_earlier_volumes(
    after_nvda_split: RESTClient, timespan: str
) -> None:
    start, end = dt.date(2024, 6, 6), dt.date(2024, 6, 11)
    raw = after_nvda_split.get_aggs("NVDA", 1, timespan, start, end, adjusted=False, limit=50_000)
    adj = after_nvda_split.get_aggs("NVDA", 1, timespan, start, end, limit=50_000)
    split_ms = _split_day_ms(NVDA_SPLIT)
    assert [b.timestamp for b in raw] == [b.timestamp for b in adj]
    before = [(r, a) for r, a in zip(raw, adj, strict=True) if r.timestamp < split_ms]
    after = [(r, a) for r, a in zip(raw, adj, strict=True) if r.timestamp >= split_ms]
    assert before and after
    for r, a in before:
        assert (a.open, a.high, a.low, a.close) == pytest.approx(
            (r.open / 10, r.high / 10, r.low / 10, r.close / 10), abs=1e-4
        )
        assert a.vwap == pytest.approx(r.vwap / 10, abs=1e-4)
        assert (a.volume, a.transactions) == (r.volume * 10, r.transactions)
    assert all(r == a for r, a in after)


def test_a_reverse_split_multiplies_earlier_prices_and_divides_earlier_volumes(
    after_intc_reverse_split: RESTClient,
) -> None:
    start, end = dt.date(2025, 6, 10), dt.date(2025, 6, 20)
    raw = after_intc_reverse_split.get_aggs("INTC", 1, "day", start, end, adjusted=False)
    adj = after_intc_reverse_split.get_aggs("INTC", 1, "day", start, end)
    split_ms = _split_day_ms(INTC_SPLIT)
    for r, a in zip(raw, adj, strict=True):
        if r.timestamp < split_ms:
            assert a.close == pytest.approx(r.close * 5, abs=1e-4)
            assert a.volume == round(r.volume / 5)
        else:
            assert a == r


def test_a_week_bar_spanning_a_split_adjusts_its_days_before_merging(
    after_nvda_split: RESTClient,
) -> None:
    week = (dt.date(2024, 6, 9), dt.date(2024, 6, 15))
    days = after_nvda_split.get_aggs("NVDA", 1, "day", *week)
    [bar] = after_nvda_split.get_aggs("NVDA", 1, "week", *week)
    [raw] = after_nvda_split.get_aggs("NVDA", 1, "week", *week, adjusted=False)
    assert (bar.open, bar.close, bar.volume) == (
        days[0].open,
        days[-1].close,
        sum(d.volume for d in days),
    )
    assert bar.high == max(d.high for d in days)
    assert raw.volume == bar.volume  # every day of that week is on or after the split


def test_a_split_after_the_sims_day_adjusts_nothing_yet(after_nvda_split: RESTClient) -> None:
    # AVGO splits 10-for-1 on 2024-07-15, after the played 2024-06-20
    raw = after_nvda_split.get_aggs("AVGO", 1, "day", "2024-05-01", "2024-06-19", adjusted=False)
    adj = after_nvda_split.get_aggs("AVGO", 1, "day", "2024-05-01", "2024-06-19")
    assert raw and raw == adj


def test_dividends_do_not_adjust_bars(after_nvda_split: RESTClient) -> None:
    # AAPL's 2020 split is before every bar served; its May 2024 dividend must change nothing
    raw = after_nvda_split.get_aggs("AAPL", 1, "day", "2024-05-01", "2024-05-31", adjusted=False)
    adj = after_nvda_split.get_aggs("AAPL", 1, "day", "2024-05-01", "2024-05-31")
    assert raw and raw == adj


def test_previous_close_grouped_daily_and_open_close_adjust_on_the_split_day(
    on_nvda_split_day: RESTClient,
) -> None:
    client = on_nvda_split_day
    [prev] = client.get_previous_close_agg("NVDA")
    [prev_raw] = client.get_previous_close_agg("NVDA", adjusted=False)
    assert prev.close == pytest.approx(prev_raw.close / 10, abs=1e-4)
    assert prev.volume == prev_raw.volume * 10
    grouped = client.get_grouped_daily_aggs("2024-06-07")
    grouped_raw = client.get_grouped_daily_aggs("2024-06-07", adjusted=False)
    assert grouped[0].close == pytest.approx(grouped_raw[0].close / 10, abs=1e-4)
    summary = client.get_daily_open_close_agg("NVDA", "2024-06-07")
    summary_raw = client.get_daily_open_close_agg("NVDA", "2024-06-07", adjusted=False)
    assert summary.close == pytest.approx(summary_raw.close / 10, abs=1e-4)
    assert summary.volume == summary_raw.volume * 10
    assert summary.close == prev.close


def test_as_traded_prices_adjust_back_to_todays_basis_across_every_split() -> None:
    days = [dt.date(2020, 8, 28), dt.date(2021, 7, 19), dt.date(2024, 6, 7), dt.date(2024, 6, 10)]
    t = np.array([market.midnight_ns(d) // 1_000_000 for d in days])
    basis = np.array([100.0, 101.0, 102.0, 103.0])  # NVDA's prices on today's basis
    traded = basis * [corporate.as_traded_multiplier("NVDA", d) for d in days]
    assert traded.tolist() == [4000.0, 4040.0, 1020.0, 103.0]  # 4-for-1 in 2021, 10-for-1 in 2024
    bars = Bars(
        t=t,
        o=traded,
        h=traded,
        low=traded,
        c=traded,
        v=np.full(4, 10),
        vw=traded,
        n=np.ones(4, np.int64),
    )
    assert adjust.adjusted(bars, "NVDA", dt.date(2026, 1, 2)).c.tolist() == basis.tolist()
    between = adjust.adjusted(bars, "NVDA", dt.date(2022, 1, 3))  # after the 2021 split only
    assert between.c.tolist() == [1000.0, 1010.0, 1020.0, 103.0]
    assert between.v.tolist() == [40, 40, 10, 10]


def test_on_a_split_day_the_snapshots_previous_day_is_split_adjusted(
    on_nvda_split_day: RESTClient,
) -> None:
    snap = on_nvda_split_day.get_snapshot_ticker("stocks", "NVDA")
    [prev] = on_nvda_split_day.get_previous_close_agg("NVDA")
    assert (snap.prev_day.close, snap.prev_day.volume) == (prev.close, prev.volume)
    assert snap.todays_change == pytest.approx(snap.last_trade.price - prev.close, abs=1e-4)


def test_adjusted_closes_are_continuous_across_a_split_and_as_traded_ones_jump(
    after_nvda_split: RESTClient, on_nvda_split_day: RESTClient
) -> None:
    friday, monday = dt.date(2024, 6, 7), NVDA_SPLIT
    adj = after_nvda_split.get_aggs("NVDA", 1, "day", friday, monday)
    raw = after_nvda_split.get_aggs("NVDA", 1, "day", friday, monday, adjusted=False)
    assert [b.timestamp for b in adj] == [_split_day_ms(friday), _split_day_ms(monday)]
    assert adj[1].close == pytest.approx(adj[0].close, rel=0.1)  # a day's move, not a tenfold step
    assert raw[0].close / raw[1].close == pytest.approx(10, rel=0.1)  # the tape traded ~10x higher
    snap = on_nvda_split_day.get_snapshot_ticker("stocks", "NVDA")
    assert snap.last_trade.price > 0
    assert abs(snap.todays_change_percent) < 20
