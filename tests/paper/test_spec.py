"""What a paper session may be started with: each mistake is one clear line, nothing starts."""

from __future__ import annotations

from typing import Any

import pytest

from mesh.paper.session import PaperError, Spec

GOOD: dict[str, Any] = {
    "name": "demo",
    "strategy": "ma-crossover",
    "params": {},
    "symbols": ["AAPL"],
}


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"name": "../etc"}, "letters, digits"),
        ({"name": ""}, "letters, digits"),
        ({"interval": "5s"}, "1s or 1m"),
        ({"fills": "bars"}, "live quotes"),
        ({"symbols": []}, "tickers"),
        ({"symbols": ["aapl;rm"]}, "tickers"),
        ({"symbols": ["AAPL"] * 100_000}, "each ticker once"),
        ({"symbols": [f"S{i}" for i in range(100_000)]}, "at most 5,000"),
        ({"cash": float("nan")}, "cash"),
        ({"cash": -5.0}, "cash"),
        ({"cash": 1e300}, "cash"),
        ({"latency_ms": 1e300}, "latency-ms"),
        ({"commission_bps": -1.0}, "commission-bps"),
        ({"strategy": "x" * 1000}, "strategy"),
    ],
)
def test_a_bad_paper_request_is_refused_with_one_line(change: dict[str, Any], says: str) -> None:
    with pytest.raises(PaperError, match=says) as caught:
        Spec(**{**GOOD, **change}).check()
    assert "\n" not in str(caught.value)


def test_a_good_request_splits_its_cash_over_its_symbols() -> None:
    spec = Spec(**{**GOOD, "symbols": ["AAPL", "MSFT"], "cash": 50_000.0}).check()
    assert spec.settings().cash == 25_000.0
