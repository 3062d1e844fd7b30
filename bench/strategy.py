"""Paper trading's decision latency: a bar's close on the bus -> its decision on the bus.

Real processes: `massive run bus`, `recorder` and `strategy` on loopback (authenticated bus, temp
data folder). This process publishes quotes for 50 symbols as ingest would (one QuoteBatch per
instant, every symbol quoted), one instant per bar: each batch closes the previous 1 s bar of all
50 symbols at once, the worst case (every bar of the session decided in one burst). One paper
session trades the 50 symbols on 1 s bars with the built-in `ma-crossover` (fast 5, slow 20),
evaluated on every bar so far. Event time runs 10 bars a second (10x real time), to measure
many bars quickly; the decision path is the same.

Two phases, a session each: **burst**, one QuoteBatch per instant closes the bar of all 50
symbols at once (the worst case, as when the clock closes every quiet symbol's bar together);
**spread**, each symbol's closing quote comes on its own, 2 ms apart (a live feed, where each
symbol's bar closes at its own next quote). Measured per bar: from just before the bench
publishes the quote that closes it, to the publication of its decision by the strategy service
(the bar's `pnl` record, sent once every bar its batch of quotes closed is decided; an order, if
any, goes out the moment it is decided: the header's `ts_send`; one bus hop, decoding,
the session's thread, the strategy, sizing, the journal, publishing); also to its arrival at
the bench's subscriber (one more hop), and the same for the orders alone. Median and p99.
Baseline, in the same run: calling the strategy function directly on the same windows (each
symbol's bars so far, bar by bar), per call.

Each phase also reports the CPU time the hypervisor took from this virtual machine while it ran
("steal", /proc/stat), as a share of its two cores: the p99 follows it (docs/paper.md, "Speed").

Target: p99 decision latency under 5 ms for 50 symbols at 1 s bars. The JSON's value is the
live-feed (spread) case's p99; the all-at-once figures ride along as `all_at_once_*`. `python bench/strategy.py
[BARS]` (default 200 bars a symbol); the last line is the JSON summary.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from _common import cpu_stolen_s, free_port, report, steal_pct  # noqa: E402

from mesh import client, topics  # noqa: E402
from mesh.backtest import indicators  # noqa: E402
from mesh.backtest.frames import Bars  # noqa: E402
from mesh.backtest.strategies import get_strategy  # noqa: E402
from mesh.client import Publisher, Subscriber  # noqa: E402
from mesh.config import Config  # noqa: E402
from mesh.schema import Order, Pnl, QuoteBatch  # noqa: E402

SYMBOLS = [f"S{i:02d}" for i in range(50)]
SECOND = 1_000_000_000
T0 = 1_796_396_400 * SECOND  # 2026-12-04 14:40 UTC
BARS_PER_S = 10  # event time runs 10x real time


def spawn(env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mesh.cli", "run", name],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_up(config: Config, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.call(name, "ping", config=config, timeout=0.5) == "pong":
                return
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"{name} did not come up")


def batch_at(ts: int, mids: np.ndarray) -> QuoteBatch:
    n = len(SYMBOLS)
    return QuoteBatch(
        symbol=SYMBOLS,
        bid_price=(mids - 0.01).round(4).tolist(),
        bid_size=[100] * n,
        ask_price=(mids + 0.01).round(4).tolist(),
        ask_size=[100] * n,
        bid_exchange=[11] * n,
        ask_exchange=[12] * n,
        condition=[0] * n,
        tape=[3] * n,
        sequence=list(range(1, n + 1)),
        ts_event=[ts] * n,
        ts_recv=[ts] * n,
    )


STRATEGY, PARAMS = "ma-crossover", {"fast": 5, "slow": 20}


def direct_calls(closes: np.ndarray) -> list[float]:
    """The strategy called directly on each symbol's bars so far, bar by bar: seconds per call."""
    indicators.warm_up()  # the compiled indicators, as the strategy service runs them
    strategy = get_strategy(STRATEGY)
    params = strategy.resolve(PARAMS)
    times = []
    n_bars = closes.shape[0]
    for k in range(1, n_bars + 1):
        for j in range(len(SYMBOLS)):
            c = closes[:k, j]
            ts = T0 + np.arange(k, dtype=np.int64) * SECOND
            bars = Bars(SYMBOLS[j], ts, ts + SECOND, c, c, c, c, np.zeros(k), SECOND)
            t = time.perf_counter()
            strategy.signals(bars, params)
            times.append(time.perf_counter() - t)
    return times


def quote_at(ts: int, j: int, mid: float) -> QuoteBatch:
    """One symbol's quote, as ingest publishes a quiet symbol's."""
    return QuoteBatch(
        symbol=[SYMBOLS[j]], bid_price=[round(mid - 0.01, 4)], bid_size=[100],
        ask_price=[round(mid + 0.01, 4)], ask_size=[100], bid_exchange=[11], ask_exchange=[12],
        condition=[0], tape=[3], sequence=[1], ts_event=[ts], ts_recv=[ts],
    )  # fmt: skip


def run_phase(
    config: Config, name: str, closes: np.ndarray, first_bar: int, spread: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """One paper session over `closes`; (decision ms per bar on the bus, at the subscriber,
    order ms, the session's status). `spread`: each symbol's closing quote comes on its own,
    2 ms apart; else one batch closes every symbol's bar at once."""
    publisher = Publisher("bench", config=config)
    received: dict[tuple[str, int], tuple[int, int]] = {}  # each bar's P&L: sent, seen
    orders: dict[tuple[str, int], int] = {}  # each order: sent
    sub = Subscriber([topics.paper(kind, name) for kind in topics.PAPER_KINDS], config=config)
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            msg = sub.recv(timeout=0.2)
            if msg is None:
                continue
            if isinstance(msg.payload, Pnl):
                key = (msg.payload.symbol, msg.payload.ts)
                received[key] = (msg.header.ts_send, time.time_ns())
            elif isinstance(msg.payload, Order):
                orders[(msg.payload.symbol, msg.payload.bar_end)] = msg.header.ts_send

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(0.5)
    start = {"name": name, "strategy": STRATEGY, "params": PARAMS, "symbols": SYMBOLS}
    client.call("strategy", "start", start, config=config, timeout=15)
    time.sleep(0.5)
    closed_at: dict[tuple[str, int], int] = {}  # (symbol, bar end) -> its closing quote's publish
    begun = time.perf_counter()
    for k in range(len(closes)):
        bar_start = T0 + (first_bar + k) * SECOND
        due = begun + k / BARS_PER_S
        time.sleep(max(0.0, due - time.perf_counter()))
        if not spread:
            now = time.time_ns()
            for symbol in SYMBOLS:
                closed_at[(symbol, bar_start)] = now
            publisher.publish(topics.quotes(), batch_at(bar_start + 1_000_000, closes[k]))
            continue
        for j, symbol in enumerate(SYMBOLS):
            time.sleep(max(0.0, due + j * 0.002 - time.perf_counter()))
            closed_at[(symbol, bar_start)] = time.time_ns()
            publisher.publish(topics.quotes(), quote_at(bar_start + 1_000_000 + j, j, closes[k, j]))
    time.sleep(2.0)
    stop.set()
    listener.join()
    status = client.call("strategy", "status", config=config, timeout=10)
    client.call("strategy", "stop", {"name": name}, config=config, timeout=15)
    publisher.close()
    sub.close()
    session = next(s for s in status["sessions"] if s["name"] == name)
    on_bus = np.array(
        [(v[0] - closed_at[key]) / 1e6 for key, v in received.items() if key in closed_at]
    )
    seen = np.array(
        [(v[1] - closed_at[key]) / 1e6 for key, v in received.items() if key in closed_at]
    )
    order_ms = np.array(
        [(v - closed_at[key]) / 1e6 for key, v in orders.items() if key in closed_at]
    )
    return on_bus, seen, order_ms, session


def main() -> None:
    n_bars = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    # this process's own threads (publishing, listening) hand over the interpreter every 0.2 ms,
    # so a stamp and the publish after it are not split by a 5 ms slice of the listener
    sys.setswitchinterval(0.0002)
    folder = Path(tempfile.mkdtemp(prefix="mesh-bench-strategy-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASSIVE_", "MESH_", "KDB_"))}
    env.update(
        MESH_BUS_PUB=f"tcp://127.0.0.1:{free_port()}",
        MESH_BUS_SUB=f"tcp://127.0.0.1:{free_port()}",
        MESH_BUS_CTL=f"tcp://127.0.0.1:{free_port()}",
        MESH_DATA_DIR=str(folder / "data"),
        PYKX_UNLICENSED="true",
    )
    os.environ.update({k: v for k, v in env.items() if k.startswith("MESH_")})
    config = Config.load(environ=env, cwd=folder)
    procs = [spawn(env, "bus")]
    rng = np.random.default_rng(7)
    closes = 100 + np.cumsum(rng.normal(0, 0.05, (2 * (n_bars + 1), len(SYMBOLS))), axis=0)
    try:
        wait_up(config, "bus")
        procs += [spawn(env, "recorder"), spawn(env, "strategy")]
        wait_up(config, "recorder")
        wait_up(config, "strategy")
        steal: dict[str, float] = {}
        stolen, begun = cpu_stolen_s(), time.monotonic()
        burst = run_phase(config, "burst", closes[: n_bars + 1], 0, spread=False)
        steal["burst"] = steal_pct(stolen, time.monotonic() - begun)
        stolen, begun = cpu_stolen_s(), time.monotonic()
        spread = run_phase(config, "spread", closes[n_bars + 1 :], n_bars + 10, spread=True)
        steal["spread"] = steal_pct(stolen, time.monotonic() - begun)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    direct = np.array(direct_calls(closes[:n_bars])) * 1e3
    d50, d99 = float(np.median(direct)), float(np.percentile(direct, 99))
    expected = n_bars * len(SYMBOLS)
    figures = {}
    for label, (on_bus, seen, order_ms, session) in (("burst", burst), ("spread", spread)):
        if not len(on_bus) or not len(order_ms):
            raise SystemExit(
                f"{label}: {len(on_bus)} bars decided, {len(order_ms)} orders in {n_bars} bars: "
                "give at least 30 bars (the strategy's slow average is 20 bars)"
            )
        figures[label] = {
            "median_ms": round(float(np.median(on_bus)), 3),
            "p99_ms": round(float(np.percentile(on_bus, 99)), 3),
            "orders_median_ms": round(float(np.median(order_ms)), 3),
            "orders_p99_ms": round(float(np.percentile(order_ms, 99)), 3),
        }
        print(
            f"{label}: {len(SYMBOLS)} symbols x {n_bars} 1 s bars at {BARS_PER_S} bars/s of event "
            f"time, {len(on_bus):,} of {expected:,} bars decided, {len(order_ms):,} orders "
            f"({session['state']}, lag {session['lag_ms']} ms, steal {steal[label]}% of the CPU): "
            "bar close -> decision on the "
            f"bus median {np.median(on_bus):.2f} ms, p99 {np.percentile(on_bus, 99):.2f} ms; at "
            f"a subscriber median {np.median(seen):.2f} ms, p99 {np.percentile(seen, 99):.2f} ms; "
            f"orders: median {np.median(order_ms):.2f} ms, p99 {np.percentile(order_ms, 99):.2f} ms",
            file=sys.stderr,
        )
    print(
        f"the strategy called directly on the same windows: median {d50:.3f} ms, p99 {d99:.3f} ms",
        file=sys.stderr,
    )
    live, burst_f = figures["spread"], figures["burst"]
    report(
        "strategy",
        "decision_latency_p99_live_feed",
        live["p99_ms"],
        "ms",
        d99,
        "p99 < 5 ms for 50 symbols at 1 s bars",
        median_ms=live["median_ms"],
        orders_p99_ms=live["orders_p99_ms"],
        all_at_once_p99_ms=burst_f["p99_ms"],
        all_at_once_median_ms=burst_f["median_ms"],
        all_at_once_orders_p99_ms=burst_f["orders_p99_ms"],
        live_feed_steal_pct=steal["spread"],
        all_at_once_steal_pct=steal["burst"],
        direct_median_ms=round(d50, 4),
        bars=expected,
    )


if __name__ == "__main__":
    main()
