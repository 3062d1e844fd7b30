"""Quote batches through the real bus vs a direct PUB->SUB pair, with the project's codec.

A publisher process encodes `QuoteBatch` messages of 100 events with `mesh.client.Publisher`; a
subscriber process decodes every one with `mesh.client.Subscriber` and counts events and missing
sequence numbers. The same pair without a bus between them is the baseline.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
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


def publisher(endpoint: str, bind: bool, ready, go, stop) -> None:  # type: ignore[no-untyped-def]
    import zmq

    from mesh import topics
    from mesh.client import Publisher
    from mesh.schema import Event

    ctx = zmq.Context()
    pub = Publisher("bench", endpoint, context=ctx, hwm=0, bind=bind)
    batches = [make_batch(i * BATCH) for i in range(50)]
    while not ready.is_set():
        pub.publish(topics.event("bench"), Event(service="bench", level="info", message="warmup"))
        time.sleep(0.01)
    go.wait()
    topic = topics.quotes()
    for i in range(MESSAGES):
        pub.publish(topic, batches[i % 50])
    pub.publish(topics.event("bench"), Event(service="bench", level="info", message="end"))
    stop.wait(120)  # a publisher that outruns the bus still has messages queued: close only when counted
    pub.close()
    ctx.term()


def subscriber(endpoint: str, ready, go, out) -> None:  # type: ignore[no-untyped-def]
    from mesh.client import Subscriber

    sub = Subscriber(["md.quote.", "sys.event.bench"], endpoint, hwm=0)
    while True:
        msg = sub.recv(timeout=5)
        if msg is not None and msg.type == "event":
            break
    ready.set()
    while (msg := sub.recv(timeout=0.2)) is not None and msg.type == "event":
        pass
    go.set()
    events = 0
    first = None
    seqs = 0
    while True:
        msg = sub.recv(timeout=10)
        if msg is None:
            break
        if msg.type == "event":
            if msg.payload.message == "end":
                break
            continue
        if first is None:
            first = time.perf_counter()
        events += len(msg.payload)
        seqs += 1
    elapsed = time.perf_counter() - (first or time.perf_counter())
    out.put((events, elapsed, sub.stats.gaps, seqs))
    sub.close()


def run_bus(pub_ep: str, sub_ep: str, ctl_ep: str, stop) -> None:  # type: ignore[no-untyped-def]
    import threading

    from mesh.bus import Bus
    from mesh.config import Config

    config = Config.load(environ={"MESH_BUS_PUB": pub_ep, "MESH_BUS_SUB": sub_ep, "MESH_BUS_CTL": ctl_ep})
    bus = Bus(config)
    threading.Thread(target=lambda: (stop.wait(), bus.stop()), daemon=True).start()
    bus.run()
    bus.close()


def once(through_bus: bool) -> tuple[float, int]:
    ctx = mp.get_context("spawn")
    ready, go, stop, out = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Queue()
    procs = []
    if through_bus:
        pub_ep, sub_ep, ctl_ep = (f"tcp://127.0.0.1:{free_port()}" for _ in range(3))
        procs.append(ctx.Process(target=run_bus, args=(pub_ep, sub_ep, ctl_ep, stop)))
        procs.append(ctx.Process(target=publisher, args=(pub_ep, False, ready, go, stop)))
        procs.append(ctx.Process(target=subscriber, args=(sub_ep, ready, go, out)))
    else:
        ep = f"tcp://127.0.0.1:{free_port()}"
        procs.append(ctx.Process(target=publisher, args=(ep, True, ready, go, stop)))
        procs.append(ctx.Process(target=subscriber, args=(ep, ready, go, out)))
    for p in procs:
        p.start()
    events, elapsed, gaps, _ = out.get(timeout=120)
    stop.set()
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()
    lost = MESSAGES * BATCH - events
    return events / elapsed, lost + gaps * BATCH


def main() -> None:
    bus_rates, direct_rates, lost = [], [], 0
    for run in range(RUNS):
        rate, loss = once(True)
        bus_rates.append(rate)
        lost += loss
        d_rate, d_loss = once(False)
        direct_rates.append(d_rate)
        print(f"run {run + 1}: through bus {rate:,.0f} events/s (lost {loss}); direct pair {d_rate:,.0f} events/s (lost {d_loss})", file=sys.stderr)
    bus_rate, direct_rate = median(bus_rates), median(direct_rates)
    report("bus", "events_per_s", bus_rate, "events/s", direct_rate, ">=1000000 events/s through the bus, 0 lost, ratio >=0.7", lost=lost, runs=RUNS, events_per_run=MESSAGES * BATCH)


if __name__ == "__main__":
    main()
