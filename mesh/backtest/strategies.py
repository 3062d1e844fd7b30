"""Strategies: the interface, the built-ins, and loading a user's own from `module:object`.

The interface is one function:

    def my_strategy(bars: Bars, lookback: int = 20, threshold: float = 0.0) -> np.ndarray:
        '''One line that says what it does.

        lookback: bars in the window
        threshold: minimum return to go long
        '''
        ...
        return target  # one value per bar

It receives one symbol's `Bars` and its parameters as keyword arguments (their defaults and types
come from the signature; `name: help` lines in the docstring document them), and returns the
target position for each bar as a fraction of equity: 1 long, 0 flat, -1 short, anything in
between, NaN for "keep the previous target". Value t is decided at the close of bar t and traded
by the engine at bar t+1, so a strategy cannot trade on a bar it has not seen; it must only not
use bars after t to compute value t (`check_lookahead` tests exactly that).

An object with a `signals(bars, **params)` method (a class or an instance) works too; its
parameters are read from the `signals` signature.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mesh.backtest import indicators as ind
from mesh.backtest.errors import StrategyError
from mesh.backtest.frames import Bars

SignalFn = Callable[..., Any]


@dataclass(frozen=True)
class Param:
    """One strategy parameter: its default fixes its type (int, float, bool or str)."""

    name: str
    default: Any
    help: str = ""
    choices: tuple[str, ...] = ()

    @property
    def type_name(self) -> str:
        return type(self.default).__name__

    def parse(self, value: Any) -> Any:
        """`value` (a string from the command line, or a JSON value) as this parameter's type."""
        kind = type(self.default)
        try:
            if kind is bool:
                if isinstance(value, bool):
                    parsed: Any = value
                elif str(value).strip().lower() in ("1", "true", "yes", "on"):
                    parsed = True
                elif str(value).strip().lower() in ("0", "false", "no", "off"):
                    parsed = False
                else:
                    raise ValueError
            elif kind is int:
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                if isinstance(value, bool) or (isinstance(value, float)):
                    raise ValueError
                parsed = int(str(value).strip())
            elif kind is float:
                if isinstance(value, bool):
                    raise ValueError
                parsed = float(str(value).strip())
                if not np.isfinite(parsed):
                    raise ValueError
            else:
                parsed = str(value)
        except ValueError:
            raise StrategyError(
                f"parameter {self.name}={value!r}: expected {_a(self.type_name)}"
            ) from None
        if self.choices and parsed not in self.choices:
            raise StrategyError(
                f"parameter {self.name}={value!r}: expected one of {', '.join(self.choices)}"
            )
        return parsed

    def as_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "default": self.default,
            "type": self.type_name,
            "help": self.help,
        }
        if self.choices:
            out["choices"] = list(self.choices)
        return out


def _a(type_name: str) -> str:
    return {
        "int": "a whole number",
        "float": "a number",
        "bool": "true or false",
        "str": "text",
    }.get(type_name, type_name)


@dataclass(frozen=True)
class Strategy:
    """A named strategy: its signal function and documented parameters."""

    name: str
    fn: SignalFn
    description: str
    params: tuple[Param, ...] = ()
    check: Callable[[dict[str, Any]], None] | None = field(default=None, compare=False)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.params) or "none"
        raise StrategyError(
            f"strategy {self.name!r} has no parameter {name!r}; its parameters: {known}"
        )

    def resolve(self, values: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overridden by `values` (parsed and checked)."""
        out = {p.name: p.default for p in self.params}
        for key, value in (values or {}).items():
            out[key] = self.param(key).parse(value)
        if self.check is not None:
            self.check(out)
        return out

    def signals(self, bars: Bars, params: dict[str, Any]) -> np.ndarray:
        """The target position per bar, checked: one finite value in [-1, 1] (or NaN) per bar."""
        try:
            raw = self.fn(bars, **params)
        except StrategyError:
            raise
        except Exception as exc:
            raise StrategyError(
                f"strategy {self.name!r} failed on {bars.symbol}: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            target = np.asarray(raw, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise StrategyError(
                f"strategy {self.name!r} returned {type(raw).__name__}; expected an array of target positions"
            ) from None
        if len(target) != len(bars):
            raise StrategyError(
                f"strategy {self.name!r} returned {len(target)} values for {len(bars)} bars of {bars.symbol}; expected one per bar"
            )
        lo, hi = (float(target.min()), float(target.max())) if len(target) else (0.0, 0.0)
        if lo != lo or hi != hi:  # NaNs present: look at the rest
            finite = target[~np.isnan(target)]
            lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 0.0)
        if lo < -1 - 1e-12 or hi > 1 + 1e-12:
            raise StrategyError(
                f"strategy {self.name!r} returned targets outside [-1, 1] (fractions of equity) for {bars.symbol}"
            )
        return target

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "params": [p.as_dict() for p in self.params],
        }


# --- built-ins ---------------------------------------------------------------------------------


def buy_and_hold(bars: Bars) -> np.ndarray:
    """Long from the first bar to the last: the benchmark every other strategy should beat.

    The order is decided at the close of the first bar and fills at the second bar's open.
    """
    return np.ones(len(bars))


def ma_crossover(
    bars: Bars, fast: int = 10, slow: int = 50, kind: str = "sma", short: bool = False
) -> np.ndarray:
    """Long after the fast moving average of the close crosses above the slow one; out (or short) after it crosses below.

    fast: bars in the fast average
    slow: bars in the slow average
    kind: sma (simple) or ema (exponential)
    short: also go short after a cross below (default: long only)
    """
    average = ind.sma if kind == "sma" else ind.ema
    state = ind.cross_state(average(bars.close, fast), average(bars.close, slow))
    if not short:
        np.maximum(state, 0.0, out=state)
    return state


def mean_reversion(
    bars: Bars, lookback: int = 20, entry: float = 2.0, exit: float = 0.0, short: bool = False
) -> np.ndarray:
    """Buy when the close is `entry` standard deviations below its moving average; sell when it is back to within `exit` of it.

    The z-score z = (close - SMA(lookback)) / std(lookback); in Bollinger terms, entry is the band
    width k and exit 0 is the middle band, so one strategy covers both.
    lookback: bars in the average and the standard deviation
    entry: z-score (Bollinger band width) that opens a position
    exit: z-score at which the position is closed (0 = back at the average)
    short: also short when z > entry (closed when z <= exit)
    """
    mean = ind.sma(bars.close, lookback)
    std = ind.rolling_std(bars.close, lookback)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (bars.close - mean) / std
    z[~np.isfinite(z)] = np.nan
    long = ind.latch(z < -entry, z >= -exit)
    if not short:
        return long
    return long - ind.latch(z > entry, z <= exit)


def breakout(
    bars: Bars, lookback: int = 20, exit_lookback: int = 10, short: bool = False
) -> np.ndarray:
    """Donchian breakout: long when the close rises above the highest high of the previous `lookback` bars; out when it falls below the lowest low of the previous `exit_lookback` bars.

    lookback: bars whose highest high the close must exceed to enter
    exit_lookback: bars whose lowest low, when broken, closes the position
    short: mirror image on the short side
    """
    upper = ind.shift(ind.rolling_max(bars.high, lookback), 1)
    exit_low = ind.shift(ind.rolling_min(bars.low, exit_lookback), 1)
    long = ind.latch(bars.close > upper, bars.close < exit_low)
    if not short:
        return long
    lower = ind.shift(ind.rolling_min(bars.low, lookback), 1)
    exit_high = ind.shift(ind.rolling_max(bars.high, exit_lookback), 1)
    return long - ind.latch(bars.close < lower, bars.close > exit_high)


def momentum(
    bars: Bars, lookback: int = 20, threshold: float = 0.0, short: bool = False
) -> np.ndarray:
    """Time-series momentum: long while the return over the last `lookback` bars is above `threshold`, flat (or short) otherwise.

    lookback: bars over which the return is measured
    threshold: return (0.01 = 1%) the past move must exceed
    short: short while the return is below -threshold
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        ret = bars.close / ind.shift(bars.close, lookback) - 1.0
    target = np.where(ret > threshold, 1.0, 0.0)
    if short:
        target = np.where(ret < -threshold, -1.0, target)
    target[np.isnan(ret)] = 0.0
    return target


def _check_ma(p: dict[str, Any]) -> None:
    if p["fast"] < 1 or p["slow"] < 1:
        raise StrategyError("ma-crossover: fast and slow must be at least 1")
    if p["fast"] >= p["slow"]:
        raise StrategyError(
            f"ma-crossover: fast ({p['fast']}) must be shorter than slow ({p['slow']})"
        )


def _check_mr(p: dict[str, Any]) -> None:
    if p["lookback"] < 2:
        raise StrategyError("mean-reversion: lookback must be at least 2")
    if p["entry"] <= 0 or p["entry"] < abs(p["exit"]):
        raise StrategyError("mean-reversion: entry must be positive and at least |exit|")


def _check_breakout(p: dict[str, Any]) -> None:
    if p["lookback"] < 1 or p["exit_lookback"] < 1:
        raise StrategyError("breakout: lookback and exit_lookback must be at least 1")


def _check_momentum(p: dict[str, Any]) -> None:
    if p["lookback"] < 1:
        raise StrategyError("momentum: lookback must be at least 1")
    if p["threshold"] < 0:
        raise StrategyError("momentum: threshold must not be negative")


def from_function(
    name: str,
    fn: SignalFn,
    check: Callable[[dict[str, Any]], None] | None = None,
    choices: dict[str, tuple[str, ...]] | None = None,
) -> Strategy:
    """A `Strategy` from a signal function: parameters from its signature, help from its docstring."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        raise StrategyError(f"{name}: cannot read the signature of {fn!r}") from None
    positional = [
        p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if not positional:
        raise StrategyError(
            f"{name}: a strategy takes the bars as its first argument: def {getattr(fn, '__name__', 'strategy')}(bars, ...)"
        )
    doc = inspect.getdoc(fn) or ""
    helps = dict(re.findall(r"^\s*([A-Za-z_]\w*)\s*:\s*(.+?)\s*$", doc, flags=re.M))
    params = []
    for p in list(sig.parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is inspect.Parameter.empty:
            raise StrategyError(
                f"{name}: parameter {p.name!r} needs a default (its type and documented value come from it)"
            )
        if not isinstance(p.default, (bool, int, float, str)):
            raise StrategyError(
                f"{name}: parameter {p.name!r} must default to a number, a bool or a string"
            )
        params.append(
            Param(p.name, p.default, helps.get(p.name, ""), (choices or {}).get(p.name, ()))
        )
    description = doc.split("\n\n", 1)[0].replace("\n", " ").strip() if doc else ""
    return Strategy(name, fn, description, tuple(params), check)


BUILTINS: dict[str, Strategy] = {
    s.name: s
    for s in (
        from_function("buy-and-hold", buy_and_hold),
        from_function("ma-crossover", ma_crossover, _check_ma, {"kind": ("sma", "ema")}),
        from_function("mean-reversion", mean_reversion, _check_mr),
        from_function("breakout", breakout, _check_breakout),
        from_function("momentum", momentum, _check_momentum),
    )
}
ALIASES = {
    "buy_and_hold": "buy-and-hold",
    "bh": "buy-and-hold",
    "sma-cross": "ma-crossover",
    "ma_crossover": "ma-crossover",
    "mean_reversion": "mean-reversion",
    "bollinger": "mean-reversion",
    "zscore": "mean-reversion",
    "donchian": "breakout",
}


def list_strategies() -> list[dict[str, Any]]:
    """Every built-in strategy with its description and parameters (name, default, type, help)."""
    return [s.as_dict() for s in BUILTINS.values()]


def get_strategy(name: str) -> Strategy:
    """A built-in by name, or a user strategy from `module:object` (a module name or a .py path before the colon)."""
    key = ALIASES.get(name, name)
    if key in BUILTINS:
        return BUILTINS[key]
    if ":" in name:
        return load_user_strategy(name)
    raise StrategyError(
        f"unknown strategy {name!r}; built-in: {', '.join(BUILTINS)}; or give your own as module:function"
    )


def load_user_strategy(spec: str) -> Strategy:
    """`module:object` (a module importable from the working folder) or `path.py:object`.

    This imports and runs whatever the name points at, so only the user's own process may call
    it (the local `massive backtest`, their Python); a service that takes strategy names from
    the bus loads through `mesh.backtest.strategy_path` instead.
    """
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        raise StrategyError(f"strategy {spec!r}: expected module:object, e.g. mystrategies:rsi")
    if module_name.endswith(".py") or "/" in module_name:
        path = Path(module_name)
        if not path.is_file():
            raise StrategyError(f"strategy {spec!r}: no file {path}")
        return load_strategy_file(spec, path, attr)
    try:
        if "" not in sys.path and "." not in sys.path:
            sys.path.insert(0, "")  # the working folder, as `python -m` does
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise StrategyError(f"strategy {spec!r}: cannot import {module_name!r}: {exc}") from None
    except Exception as exc:
        raise StrategyError(
            f"strategy {spec!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    return strategy_from_module(spec, module, module_name, attr)


def load_strategy_file(spec: str, path: Path, attr: str) -> Strategy:
    """The strategy `attr` of the Python file at `path`, loaded by its path under a private
    module name (a file called os.py does not replace the `os` module)."""
    module_key = f"_mesh_user_strategy_{abs(hash(str(path.resolve())))}"
    try:
        loader_spec = importlib.util.spec_from_file_location(module_key, path)
        if loader_spec is None or loader_spec.loader is None:
            raise StrategyError(f"strategy {spec!r}: cannot load {path}")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_key] = module
        loader_spec.loader.exec_module(module)
    except StrategyError:
        raise
    except Exception as exc:
        raise StrategyError(
            f"strategy {spec!r}: importing {str(path)!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    return strategy_from_module(spec, module, str(path), attr)


def strategy_from_module(spec: str, module: Any, module_name: str, attr: str) -> Strategy:
    """`attr` of an imported module as a `Strategy` (a function, a `Strategy`, or an object or
    class with `signals`)."""
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise StrategyError(f"strategy {spec!r}: module {module_name!r} has no {attr!r}") from None
    if isinstance(obj, Strategy):
        return obj
    if inspect.isclass(obj) and hasattr(obj, "signals"):
        obj = obj()
    if hasattr(obj, "signals") and callable(obj.signals):
        strategy = from_function(spec, obj.signals)
        doc = inspect.getdoc(obj)
        return Strategy(
            spec,
            obj.signals,
            (doc or strategy.description).split("\n\n", 1)[0].replace("\n", " "),
            strategy.params,
        )
    if callable(obj):
        return from_function(spec, obj)
    raise StrategyError(
        f"strategy {spec!r}: {attr!r} is not a function or an object with signals(bars, ...)"
    )


def parse_assignments(items: list[str] | None) -> dict[str, str]:
    """`["fast=5", "slow=20"]` -> {"fast": "5", "slow": "20"}."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise StrategyError(f"--param {item!r}: expected NAME=VALUE, e.g. --param fast=20")
        out[key.strip()] = value.strip()
    return out


def check_lookahead(strategy: Strategy, bars: Bars, params: dict[str, Any], cuts: int = 4) -> None:
    """Raise if value t of the target changes when the bars after t are removed (the strategy peeks ahead)."""
    full = strategy.signals(bars, params)
    n = len(bars)
    for k in sorted({int(n * f) for f in np.linspace(0.2, 0.9, cuts)}):
        if k < 2:
            continue
        part = strategy.signals(bars.slice(k), params)
        a, b = full[:k], part
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        if not same.all():
            first = int(np.flatnonzero(~same)[0])
            raise StrategyError(
                f"strategy {strategy.name!r} looks ahead: its target for bar {first} changes when bars after {k - 1} are removed"
            )
