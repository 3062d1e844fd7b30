"""Benchmark: events/s the sim's WebSocket feed sustains to one client, against a bare server.

Two servers run in their own processes, one after the other, each measured with the same client
(it authenticates and subscribes where needed, then only counts events per frame):

- baseline: a bare `websockets` server replaying a pre-built list of frames (rendered once by the
  sim's own generator, so both streams carry the same bytes per event) as fast as it can send;
- sim: `SimServer` generating the live feed at a firehose rate (`--rate`), T and Q for every symbol.

It also times the history: building one full day (BUILD_DAY, a Thursday) of every default symbol's
trades and quotes at `--scale` (default: history's DEFAULT_SCALE), in a fresh process, twice:
"cold" includes each symbol's daily walk (made once per process), "warm" is the day alone.

Prints one line per figure on stderr and a JSON line last: {"bench": "sim", "metric":
"events_per_s", "value", "unit", "baseline", "ratio", "target", "build_day_s", "build_day_cold_s",
"build_day_scale", "build_day_trades", "build_day_quotes"}. The target is the larger of 500,000
events/s and half the baseline; `build_day_s` is the warm build, in seconds.

    python bench/sim.py [--seconds 5] [--rate 1000000] [--scale 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_EVENTS_PER_S = 500_000
BUILD_DAY = "2025-02-27"


def _build_day(scale: float, out: mp.Queue) -> None:
    """Times building BUILD_DAY's trades and quotes for every default symbol; puts the figures."""
    import datetime as dt

    from mesh.sim import history, market

    day = dt.date.fromisoformat(BUILD_DAY)
    figures = []
    for _ in ("cold", "warm"):
        history.clear_caches()
        start = time.perf_counter()
        trades = sum(len(history.day_trades(7, s, day, scale)) for s in market.DEFAULT_SYMBOLS)
        quotes = sum(len(history.day_quotes(7, s, day, scale)) for s in market.DEFAULT_SYMBOLS)
        figures.append(time.perf_counter() - start)
    out.put((figures[0], figures[1], trades, quotes))


def _time_build_day(scale: float) -> tuple[float, float, int, int]:
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=_build_day, args=(scale, out), daemon=True)
    proc.start()
    try:
        return out.get(timeout=600)
    finally:
        proc.join(5)


def _serve_sim(rate: float, ready: mp.Queue) -> None:
    from mesh.sim.server import SimServer

    async def main() -> None:
        async with SimServer(rate=rate, rest=False, s3=False, queue_limit_bytes=512 * 2**20) as sim:
            ready.put(sim.ws_port)
            await asyncio.Event().wait()

    asyncio.run(main())


def _prebuilt_frames(count: int = 2000) -> list[bytes]:
    from mesh.sim import frames, market
    from mesh.sim.generator import LiveSource

    src = LiveSource(list(market.DEFAULT_SYMBOLS), rate=1_000_000)
    now = time.time_ns() // 1_000_000
    out: list[bytes] = []
    i = 0
    while len(out) < count:
        out += frames.row_frames(src.step(now + 20 * i).render(0).rows)
        i += 1
    return out[:count]


def _serve_bare(ready: mp.Queue) -> None:
    from websockets.asyncio.server import serve

    prebuilt = _prebuilt_frames()

    async def handler(ws) -> None:  # type: ignore[no-untyped-def]
        try:
            while True:
                for frame in prebuilt:
                    await ws.send(frame, text=True)
        except Exception:
            pass

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, compression=None, write_limit=2**20) as server:
            ready.put(server.sockets[0].getsockname()[1])
            await asyncio.Event().wait()

    asyncio.run(main())


async def _count(url: str, seconds: float, warmup: float, auth: str | None) -> tuple[float, str]:
    from websockets.asyncio.client import connect

    async with connect(url, compression=None, max_size=None, max_queue=64) as ws:
        if auth is not None:
            await ws.recv()
            await ws.send(json.dumps({"action": "auth", "params": auth}))
            await ws.recv()
            await ws.send(json.dumps({"action": "subscribe", "params": "T.*,Q.*"}))
        events = 0
        start = time.perf_counter()
        measured_from, counted_from = None, 0
        note = "ok"
        try:
            while True:
                msg = await ws.recv(decode=False)
                events += msg.count(b'"ev"')
                now = time.perf_counter()
                if measured_from is None and now - start >= warmup:
                    measured_from, counted_from = now, events
                if measured_from is not None and now - measured_from >= seconds:
                    break
                if b'"slow_consumer"' in msg:
                    note = "slow_consumer"
                    break
        except Exception as exc:  # the server closed on us
            note = f"closed: {exc}"
        if measured_from is None:
            return 0.0, note
        return (events - counted_from) / (time.perf_counter() - measured_from), note


def _measure(
    target, args: tuple, url_of, seconds: float, warmup: float, auth: str | None
) -> tuple[float, str]:  # type: ignore[no-untyped-def]
    ctx = mp.get_context("spawn")
    ready: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, ready), daemon=True)
    proc.start()
    try:
        port = ready.get(timeout=60)
        return asyncio.run(_count(url_of(port), seconds, warmup, auth))
    finally:
        proc.terminate()
        proc.join(5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="measured seconds per server (default 5)"
    )
    parser.add_argument(
        "--warmup", type=float, default=1.5, help="seconds before measuring (default 1.5)"
    )
    parser.add_argument(
        "--rate", type=float, default=1_000_000, help="sim --rate for the run (default 1,000,000)"
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="history scale for the day build (default: the sim's default scale)",
    )
    args = parser.parse_args()
    if args.scale is None:
        from mesh.sim.history import DEFAULT_SCALE

        args.scale = DEFAULT_SCALE

    cold, warm, trades, quotes = _time_build_day(args.scale)
    print(
        f"history: one full day ({BUILD_DAY}) of {trades:,} trades and {quotes:,} quotes of the"
        f" default symbols at scale {args.scale:g}: {warm:.2f} s ({cold:.2f} s cold)",
        file=sys.stderr,
    )

    baseline, base_note = _measure(
        _serve_bare, (), lambda p: f"ws://127.0.0.1:{p}/", args.seconds, args.warmup, None
    )
    print(
        f"baseline (bare websockets, pre-built frames): {baseline:,.0f} events/s ({base_note})",
        file=sys.stderr,
    )
    value, note = _measure(
        _serve_sim,
        (args.rate,),
        lambda p: f"ws://127.0.0.1:{p}/stocks",
        args.seconds,
        args.warmup,
        "sim-demo-key",
    )
    print(
        f"sim (live generator at --rate {args.rate:,.0f}): {value:,.0f} events/s ({note})",
        file=sys.stderr,
    )
    target = max(TARGET_EVENTS_PER_S, baseline * 0.5)
    ratio = value / baseline if baseline else 0.0
    print(
        json.dumps(
            {
                "bench": "sim",
                "metric": "events_per_s",
                "value": round(value),
                "unit": "events/s",
                "baseline": round(baseline),
                "ratio": round(ratio, 3),
                "target": round(target),
                "build_day_s": round(warm, 3),
                "build_day_cold_s": round(cold, 3),
                "build_day_scale": args.scale,
                "build_day_trades": trades,
                "build_day_quotes": quotes,
            }
        )
    )
    return 0 if value >= target and note == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
