"""Quote batches through the real bus, authenticated (CURVE) and not, vs a direct PUB->SUB pair.

A publisher process encodes `QuoteBatch` messages of 100 events with `mesh.client.Publisher`; a
subscriber process (`mesh.client.Subscriber`'s socket) decodes everything queued at once with
`wire.decode_many`, as the mesh's busy consumers do, and counts events and missing sequence
numbers. Three set-ups in interleaved rounds of one run: through the bus with
authentication on (the default: every socket CURVE-encrypted, keys from a fresh data folder),
through the bus with `MESH_BUS_AUTH=off`, and the same pair with no bus between them. The figure
is the authenticated rate; the baseline the unauthenticated one (target: at least 0.8 of it, and
at least 1,000,000 events/s).
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import free_port, median, report  # noqa: E402

BATCH = 100
MESSAGES = 20_000  # 2,000,000 events per run
RUNS = 3


def make_batch(offset: int):  # type: ignore[no-untyped-def]
    from mesh.schema import QuoteBatch

    n = BATCH
    symbols = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "SPY", "QQQ", "AMD"]
    t = 1_700_000_000_000_000_000 + offset
    return QuoteBatch(
        symbol=[symbols[i % 10] for i in range(n)],
        bid_price=[100.0 + i * 0.01 for i in range(n)],
        bid_size=[100 + i for i in range(n)],
        ask_price=[100.02 + i * 0.01 for i in range(n)],
        ask_size=[200 + i for i in range(n)],
        bid_exchange=[4] * n,
        ask_exchange=[7] * n,
        condition=[0] * n,
        tape=[3] * n,
        sequence=list(range(offset, offset + n)),
        ts_event=[t + i for i in range(n)],
        ts_recv=[t + i + 1000 for i in range(n)],
    )


def _config(environ: dict[str, str]):  # type: ignore[no-untyped-def]
    from mesh.config import Config

    return Config.load(environ=environ)


def publisher(endpoint: str, bind: bool, environ: dict[str, str], ready, go, stop) -> None:  # type: ignore[no-untyped-def]
    import zmq

    from mesh import topics
    from mesh.client import Publisher
    from mesh.schema import Event

    ctx = zmq.Context()
    pub = Publisher("bench", endpoint, context=ctx, hwm=0, bind=bind, config=_config(environ))
    batches = [make_batch(i * BATCH) for i in range(50)]
    while not ready.is_set():
        pub.publish(topics.event("bench"), Event(service="bench", level="info", message="warmup"))
        time.sleep(0.01)
    go.wait()
    topic = topics.quotes()
    for i in range(MESSAGES):
        pub.publish(topic, batches[i % 50])
    pub.publish(topics.event("bench"), Event(service="bench", level="info", message="end"))
    stop.wait(
        120
    )  # a publisher that outruns the bus still has messages queued: close only when counted
    pub.close()
    ctx.term()


def subscriber(endpoint: str, environ: dict[str, str], direct: bool, ready, go, out) -> None:  # type: ignore[no-untyped-def]
    from mesh.client import Subscriber

    # a direct pair has no bus to authenticate with
    sub = Subscriber(
        ["md.quote.", "sys.event.bench"],
        endpoint,
        hwm=0,
        config=_config({**environ, "MESH_BUS_AUTH": "off"} if direct else environ),
    )
    while True:
        msg = sub.recv(timeout=5)
        if msg is not None and msg.type == "event":
            break
    ready.set()
    while (msg := sub.recv(timeout=0.2)) is not None and msg.type == "event":
        pass
    go.set()
    # Read as the mesh's busy consumers do (recorder, kdb publisher, dashboard): everything queued
    # at once, decoded together (wire.decode_many), so that the bus, not Python, sets the pace.
    import zmq

    from mesh import wire

    sock = sub.socket
    events = 0
    first = None
    seqs = 0
    done = False
    while not done and sock.poll(10_000):
        batch = [sock.recv_multipart(copy=False)]
        while len(batch) < 1000:
            try:
                batch.append(sock.recv_multipart(zmq.NOBLOCK, copy=False))
            except zmq.Again:
                break
        burst = wire.decode_many(batch)
        for error in burst.errors:
            sub.stats.reject(error)
        for topic, header in burst.received:
            sub.stats.observe_header(topic, header)
            seqs += topic.startswith("md.")
        for msg in burst.messages:
            if msg.type == "event":
                done = done or msg.payload.message == "end"
                continue
            if first is None:
                first = time.perf_counter()
            events += len(msg.payload)
    elapsed = time.perf_counter() - (first or time.perf_counter())
    if sub.stats.malformed_total:
        print(
            f"subscriber: {sub.stats.malformed_total} malformed ({dict(sub.stats.malformed)})",
            file=sys.stderr,
        )
    out.put((events, elapsed, sub.stats.gaps, seqs))
    sub.close()


def run_bus(environ: dict[str, str], stop) -> None:  # type: ignore[no-untyped-def]
    import threading

    from mesh.bus import Bus

    bus = Bus(_config(environ))
    threading.Thread(target=lambda: (stop.wait(), bus.stop()), daemon=True).start()
    bus.run()
    bus.close()


def once(setup: str, data_dir: str) -> tuple[float, int]:
    """One round: setup is "auth" (through the bus, CURVE), "plain" (through the bus, auth off) or "direct"."""
    ctx = mp.get_context("spawn")
    ready, go, stop, out = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Queue()
    procs = []
    environ = {"MESH_DATA_DIR": data_dir, "MESH_BUS_AUTH": "on" if setup == "auth" else "off"}
    if setup != "direct":
        pub_ep, sub_ep, ctl_ep = (f"tcp://127.0.0.1:{free_port()}" for _ in range(3))
        environ.update(MESH_BUS_PUB=pub_ep, MESH_BUS_SUB=sub_ep, MESH_BUS_CTL=ctl_ep)
        procs.append(ctx.Process(target=run_bus, args=(environ, stop)))
        procs.append(ctx.Process(target=publisher, args=(pub_ep, False, environ, ready, go, stop)))
        procs.append(ctx.Process(target=subscriber, args=(sub_ep, environ, False, ready, go, out)))
    else:
        ep = f"tcp://127.0.0.1:{free_port()}"
        procs.append(ctx.Process(target=publisher, args=(ep, True, environ, ready, go, stop)))
        procs.append(ctx.Process(target=subscriber, args=(ep, environ, True, ready, go, out)))
    for p in procs:
        p.start()
    events, elapsed, gaps, _ = out.get(timeout=120)
    stop.set()
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()
    # a message lost in the middle is both missing from `events` and a sequence gap: count it once
    lost = max(MESSAGES * BATCH - events, gaps * BATCH)
    return events / elapsed, lost


def main() -> None:
    rates: dict[str, list[float]] = {"auth": [], "plain": [], "direct": []}
    lost = 0
    with tempfile.TemporaryDirectory() as data_dir:
        for run in range(RUNS):
            line = []
            for setup in rates:
                rate, loss = once(setup, data_dir)
                rates[setup].append(rate)
                lost += loss if setup != "direct" else 0
                line.append(f"{setup} {rate:,.0f} events/s (lost {loss})")
            print(f"run {run + 1}: " + "; ".join(line), file=sys.stderr)
    auth_rate, plain_rate, direct_rate = (median(rates[s]) for s in ("auth", "plain", "direct"))
    report(
        "bus",
        "events_per_s_authenticated",
        auth_rate,
        "events/s",
        plain_rate,
        ">=0.8 of unauthenticated and >=1000000 events/s through the authenticated bus, 0 lost",
        unauthenticated=round(plain_rate),
        direct_pair=round(direct_rate),
        unauthenticated_vs_direct=round(plain_rate / direct_rate, 3),
        lost=lost,
        runs=RUNS,
        events_per_run=MESSAGES * BATCH,
    )


if __name__ == "__main__":
    main()
