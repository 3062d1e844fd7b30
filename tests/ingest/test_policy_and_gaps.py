"""Reconnect delays by cause, and gap records across a reconnect."""

from __future__ import annotations

import random

from mesh.ingest.gaps import GapTracker
from mesh.ingest.policy import Cause, ReconnectPolicy


def test_network_errors_retry_at_once_then_back_off_exponentially_to_a_cap() -> None:
    policy = ReconnectPolicy(base=0.5, cap=8.0, jitter=0.0)
    delays = [policy.delay(Cause.NETWORK) for _ in range(8)]
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_jitter_spreads_retries_but_stays_near_the_backoff() -> None:
    policy = ReconnectPolicy(base=1.0, jitter=0.25, rng=random.Random(3))
    policy.delay(Cause.ABNORMAL_CLOSE)
    samples = [
        ReconnectPolicy(base=1.0, jitter=0.25, rng=random.Random(s), attempts=3).delay(
            Cause.NETWORK
        )
        for s in range(50)
    ]
    assert all(3.0 <= d <= 5.0 for d in samples if d is not None)  # 4 s +-25 %
    assert len({round(d, 3) for d in samples if d is not None}) > 10


def test_auth_failed_never_retries_on_its_own() -> None:
    assert ReconnectPolicy().delay(Cause.AUTH_FAILED) is None


def test_max_connections_waits_at_least_a_minute() -> None:
    policy = ReconnectPolicy()
    assert all((d := policy.delay(Cause.MAX_CONNECTIONS)) is not None and d >= 60 for _ in range(5))


def test_a_healthy_connection_resets_the_backoff() -> None:
    policy = ReconnectPolicy(jitter=0.0)
    for _ in range(5):
        policy.delay(Cause.NETWORK)
    policy.connected_for(5.0)
    assert policy.delay(Cause.NETWORK) > 0  # not healthy long enough
    policy.connected_for(31.0)
    assert policy.delay(Cause.NETWORK) == 0.0


def test_gaps_span_the_last_event_before_and_the_first_after_a_reconnect() -> None:
    tracker = GapTracker()
    assert tracker.observe("trade", ["AAPL", "MSFT", "AAPL"], [10, 20, 11], [100, 200, 110]) == []
    tracker.disconnected("reconnect", now_ns=150)
    gaps = tracker.observe("trade", ["AAPL", "AAPL", "NVDA"], [15, 16, 1], [300, 310, 320])
    assert len(gaps) == 1
    gap = gaps[0]
    assert (
        gap.symbol,
        gap.kind,
        gap.from_sequence,
        gap.to_sequence,
        gap.ts_from,
        gap.ts_to,
        gap.reason,
    ) == ("AAPL", "trade", 11, 15, 110, 300, "reconnect")
    later = tracker.observe("trade", ["MSFT"], [25], [400])
    assert [(g.symbol, g.from_sequence, g.to_sequence) for g in later] == [("MSFT", 20, 25)]
    assert tracker.observe("trade", ["MSFT"], [26], [401]) == []
    assert tracker.detected == 2
