"""Built-in strategies on crafted prices, user strategies from module:object, and clear errors."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from mesh.backtest.errors import StrategyError
from mesh.backtest.runner import plan
from mesh.backtest.strategies import get_strategy, list_strategies, parse_assignments
from tests.backtest.helpers import bars


def _prices(values: list[float]):  # type: ignore[no-untyped-def]
    return bars(opens=values, closes=values)


def test_ma_crossover_goes_long_at_the_cross_up_and_out_at_the_cross_down() -> None:
    close = [12, 12, 12, 11, 10, 11, 12, 13, 12, 10, 9]
    s = get_strategy("ma-crossover")
    target = s.signals(_prices(close), s.resolve({"fast": 1, "slow": 3}))
    # SMA3 from bar 2 (12, 11.67, 11, 10.67, 11, 12, 12.33, ...): the close crosses above at bar 5, below at bar 8
    assert target.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0]
    shorted = s.signals(_prices(close), s.resolve({"fast": 1, "slow": 3, "short": "true"}))
    assert shorted.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, -1, -1, -1]


def test_ma_crossover_waits_for_a_real_cross_after_warm_up() -> None:
    s = get_strategy("ma-crossover")
    rising = list(range(10, 30))
    assert (
        s.signals(_prices(rising), s.resolve({"fast": 2, "slow": 5})).sum() == 0
    )  # always above: never crossed


def test_mean_reversion_buys_the_dip_and_sells_at_the_mean() -> None:
    close = [100.5, 99.5] * 10 + [90.0, 95.0, 101.0, 100.0]  # z stays at +-1 until the drop to 90
    s = get_strategy("mean-reversion")
    target = s.signals(_prices(close), s.resolve({"lookback": 10, "entry": 2.0, "exit": 0.0}))
    assert target[20] == 1.0  # 90 is far below the mean
    assert target[21] == 1.0  # 95: still below the mean
    assert target[22] == 0.0  # 101: back above it
    assert target[:20].sum() == 0


def test_breakout_enters_above_the_previous_high_and_exits_below_the_previous_low() -> None:
    close = [10, 11, 10, 11, 10, 12, 12, 11.5, 9.5, 10]
    s = get_strategy("breakout")
    target = s.signals(_prices(close), s.resolve({"lookback": 3, "exit_lookback": 2}))
    # in at bar 5 (12 > 11, the high of bars 2-4); out at bar 7 (11.5 < 12, the low of bars 5-6)
    assert target.tolist() == [0, 0, 0, 0, 0, 1, 1, 0, 0, 0]


def test_momentum_is_long_while_the_lookback_return_is_positive() -> None:
    close = [10, 11, 12, 11, 10, 9, 10, 11]
    s = get_strategy("momentum")
    assert s.signals(_prices(close), s.resolve({"lookback": 2})).tolist() == [
        0,
        0,
        1,
        0,
        0,
        0,
        0,
        1,
    ]


def test_every_built_in_documents_its_parameters() -> None:
    listed = {s["name"]: s for s in list_strategies()}
    assert set(listed) == {"buy-and-hold", "ma-crossover", "mean-reversion", "breakout", "momentum"}
    for s in listed.values():
        assert s["description"]
        assert all(p["help"] for p in s["params"]), s["name"]


def test_unknown_strategies_and_bad_parameters_are_clear_errors() -> None:
    with pytest.raises(StrategyError, match="unknown strategy 'nope'.*ma-crossover"):
        get_strategy("nope")
    s = get_strategy("ma-crossover")
    with pytest.raises(StrategyError, match="no parameter 'speed'.*fast, slow"):
        s.resolve({"speed": 3})
    with pytest.raises(StrategyError, match="fast='x': expected a whole number"):
        s.resolve({"fast": "x"})
    with pytest.raises(StrategyError, match="must be shorter than slow"):
        s.resolve({"fast": 60})
    with pytest.raises(StrategyError, match="kind='wma': expected one of sma, ema"):
        s.resolve({"kind": "wma"})
    with pytest.raises(StrategyError, match="expected NAME=VALUE"):
        parse_assignments(["fast"])


def test_plan_routes_parameters_and_expands_sweeps() -> None:
    runs = plan(["ma-crossover", "momentum"], ["lookback=5", "ma-crossover.fast=3,5", "slow=30"])
    assert runs == [
        ("ma-crossover", {"slow": "30", "fast": "3"}),
        ("ma-crossover", {"slow": "30", "fast": "5"}),
        ("momentum", {"lookback": "5"}),
    ]
    with pytest.raises(StrategyError, match="no selected strategy has a parameter 'window'"):
        plan(["ma-crossover"], ["window=3"])


USER_MODULE = textwrap.dedent('''
    import numpy as np

    def above_open(bars, margin: float = 0.0):
        """Long while the close is above the open.

        margin: how far above, as a fraction of the open
        """
        return (bars.close > bars.open * (1 + margin)).astype(float)

    class Flipper:
        """Long on even bars."""

        def signals(self, bars, period: int = 2):
            return (np.arange(len(bars)) % period == 0).astype(float)

    def wrong_length(bars):
        return np.ones(len(bars) - 1)

    def too_big(bars):
        return np.full(len(bars), 2.0)

    def no_default(bars, window):
        return np.zeros(len(bars))
''')


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "my_strats.py"
    path.write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield path
    sys.modules.pop("my_strats", None)


def test_user_strategies_load_from_module_colon_object(user_module: Path) -> None:
    s = get_strategy("my_strats:above_open")
    assert [p.as_dict() for p in s.params] == [
        {
            "name": "margin",
            "default": 0.0,
            "type": "float",
            "help": "how far above, as a fraction of the open",
        }
    ]
    b = bars(opens=[10, 10, 10], closes=[11, 9, 10.5])
    assert s.signals(b, s.resolve({"margin": "0.06"})).tolist() == [1, 0, 0]
    flipper = get_strategy("my_strats:Flipper")
    assert flipper.description == "Long on even bars."
    assert flipper.signals(b, flipper.resolve({})).tolist() == [1, 0, 1]
    by_path = get_strategy(f"{user_module}:above_open")
    assert by_path.signals(b, by_path.resolve({})).tolist() == [1, 0, 1]


def test_user_strategies_that_break_the_interface_get_clear_errors(user_module: Path) -> None:
    b = bars(opens=[10, 10, 10], closes=[11, 9, 10.5])
    with pytest.raises(StrategyError, match="returned 2 values for 3 bars"):
        get_strategy("my_strats:wrong_length").signals(b, {})
    with pytest.raises(StrategyError, match=r"outside \[-1, 1\]"):
        get_strategy("my_strats:too_big").signals(b, {})
    with pytest.raises(StrategyError, match="'window' needs a default"):
        get_strategy("my_strats:no_default")
    with pytest.raises(StrategyError, match="has no 'missing'"):
        get_strategy("my_strats:missing")
    with pytest.raises(StrategyError, match="cannot import 'not_a_module_xyz'"):
        get_strategy("not_a_module_xyz:f")
