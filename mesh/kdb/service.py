"""`massive run kdb`: market data from the bus into a kdb+ tickerplant, as async `.u.upd` calls.

The service subscribes to quotes, trades and 1s/1m bars, and to paper trading's orders, fills and
P&L (`strat.*`), rebatches them per q table (batcher.py)
and hands chunks to the sender thread (sender.py), which never makes the bus reader wait: when
kdb+ is slow or away the bounded queue drops its oldest rows and counts them. With no
`KDB_TICKERPLANT` the service idles with state "disabled" so the mesh still starts in one command.

On the bus: heartbeat counters `connection`, `rows`, `rows_per_s`, `batches`, `queue_rows`,
`reconnects`, `dropped`, and what it read from the bus: `received`, `malformed` (with
`malformed_<kind>` per kind of bad message), `gaps`; `sys.stats.kdb` has the same per table and
more (docs/kdb.md). A malformed bus message is counted and skipped, never sent to kdb+.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import time
from typing import Any

from mesh import topics
from mesh.argtypes import OneLineParser, positive_float, positive_int
from mesh.client import AsyncSubscriber
from mesh.config import Config
from mesh.kdb.batcher import DEFAULT_BATCH_ROWS, DEFAULT_FLUSH_MS, Batcher
from mesh.kdb.buffer import Chunk
from mesh.kdb.schema import TABLES
from mesh.kdb.sender import Sender, SenderOptions
from mesh.service import Runtime, Service, run_service
from mesh.wire import Message

log = logging.getLogger(__name__)

SUBSCRIPTIONS = (
    topics.quotes(),
    topics.trades(),
    topics.bars("1s"),
    topics.bars("1m"),
    topics.PAPER,
)
BURST_MESSAGES = 100  # bus messages decoded together at most (merged into numpy columns per topic)
DISABLED_MESSAGE = (
    "KDB_TICKERPLANT is not set (host:port[:user:password]); nothing is published to kdb+"
)


class KdbService(Service):
    """Publishes bus market data to the tickerplant named by KDB_TICKERPLANT."""

    name = "kdb"

    def __init__(
        self,
        config: Config,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        flush_ms: float = DEFAULT_FLUSH_MS,
        options: SenderOptions | None = None,
    ) -> None:
        super().__init__(config)
        self.batch_rows = batch_rows
        self.flush_ms = flush_ms
        self.options = options or SenderOptions()
        self.sender: Sender | None = None
        self.subscriber: AsyncSubscriber | None = None
        self._rate_mark: tuple[float, dict[str, int]] = (time.monotonic(), {})
        self._rates: dict[str, float] = {name: 0.0 for name in TABLES}
        if config.kdb_tickerplant is None:
            self.state, self.message = "disabled", DISABLED_MESSAGE

    async def run(self, runtime: Runtime) -> None:
        target = self.config.kdb_tickerplant
        if target is None:
            log.info("kdb: %s", DISABLED_MESSAGE)
            await runtime.stopping.wait()
            return
        self.state, self.message = "degraded", f"connecting to kdb+ at {target.host}:{target.port}"
        importlib.import_module(
            "mesh.kdb.encode"
        )  # PyKX's import takes ~0.7 s: pay it before data flows
        sender = self.sender = Sender(target, self.options)
        batcher = Batcher(self._submit, self.batch_rows, self.flush_ms)
        sub = self.subscriber = AsyncSubscriber(
            SUBSCRIPTIONS,
            self.config.bus_sub,
            context=runtime.context,
            columnar=True,
            config=self.config,
        )
        log.info(
            "kdb: publishing %s to kdb+ at %s with %s (batches of up to %d rows or %g ms)",
            ", ".join(TABLES),
            sender.snapshot()["target"],
            self.options.function,
            self.batch_rows,
            self.flush_ms,
        )
        sender.start()
        receiving: asyncio.Future[list[Message]] | None = None
        try:
            while not runtime.stopping.is_set():
                due = batcher.next_due()
                if receiving is None:
                    # a burst at a time: what is queued is decoded together, into numpy columns
                    receiving = asyncio.ensure_future(sub.recv_burst(BURST_MESSAGES))
                done, _ = await asyncio.wait(
                    {receiving}, timeout=0.25 if due is None else min(due, 0.25)
                )
                if done:
                    for msg in receiving.result():
                        batcher.add(msg.payload)
                    receiving = None
                batcher.flush_due()
                self._update_state()
        finally:
            if receiving is not None:
                receiving.cancel()
            batcher.flush_all()
            sub.close()
            await asyncio.to_thread(sender.stop, 1.0)

    def _submit(self, chunk: Chunk) -> None:
        assert self.sender is not None
        self.sender.submit(chunk)

    def _update_state(self) -> None:
        sender = self.sender
        if sender is None:
            return
        snap = sender.snapshot()
        if snap["connected"]:
            self.state, self.message = "ok", f"publishing to kdb+ at {snap['target']}"
        elif snap["last_error"]:
            self.state, self.message = "degraded", f"{snap['last_error']}; retrying"

    def _refresh_rates(self, snap: dict[str, Any]) -> None:
        now = time.monotonic()
        mark_time, mark_rows = self._rate_mark
        if now - mark_time < 0.5:
            return
        rows = {name: t["rows"] for name, t in snap["tables"].items()}
        self._rates = {
            name: (rows[name] - mark_rows.get(name, 0)) / (now - mark_time) for name in rows
        }
        self._rate_mark = (now, rows)

    def bus_counters(self) -> dict[str, Any]:
        """What the subscriber read: received, malformed (in total and `malformed_<kind>`), gaps."""
        sub = self.subscriber
        if sub is None:
            return {}
        counters = dict(sub.stats.as_counters())
        counters.update(
            {
                f"malformed_{kind}": count
                for kind, count in sorted(dict(sub.stats.malformed).items())
            }
        )  # a copy: heartbeats read it from another thread
        return counters

    def counters(self) -> dict[str, Any]:
        if self.sender is None:
            return {"connection": "disabled" if self.state == "disabled" else "down"}
        snap = self.sender.snapshot()
        self._refresh_rates(snap)
        return {
            **self.bus_counters(),
            "connection": "up" if snap["connected"] else "down",
            "rows": snap["rows"],
            "rows_per_s": round(sum(self._rates.values()), 1),
            "batches": snap["batches"],
            "queue_rows": snap["queue_rows"],
            "reconnects": snap["reconnects"],
            "dropped": snap["dropped"],
        }

    def stats(self) -> dict[str, Any]:
        if self.sender is None:
            return {"state": self.state, "connected": False, "message": self.message}
        snap = self.sender.snapshot()
        self._refresh_rates(snap)
        for name, table in snap["tables"].items():
            table["rows_per_s"] = round(self._rates.get(name, 0.0), 1)
        snap.update(
            state=self.state,
            message=self.message,
            rows_per_s=round(sum(self._rates.values()), 1),
            batch_rows=self.batch_rows,
            flush_ms=self.flush_ms,
            bus=self.bus_counters(),
        )
        return snap

    def cmd_stats(self) -> dict[str, Any]:
        return self.stats()


def build_parser() -> argparse.ArgumentParser:
    d = SenderOptions()
    parser = OneLineParser(
        prog="massive run kdb",
        description="Publish quotes, trades, bars and paper trading's orders, fills and P&L from the bus to the kdb+ tickerplant in KDB_TICKERPLANT (host:port[:user:password]) with async .u.upd calls.",
    )
    parser.add_argument(
        "--batch-rows",
        type=positive_int,
        default=DEFAULT_BATCH_ROWS,
        help=f"rows per .u.upd at most; a batch is sent when it has this many (default {DEFAULT_BATCH_ROWS})",
    )
    parser.add_argument(
        "--flush-ms",
        type=positive_float,
        default=DEFAULT_FLUSH_MS,
        help=f"send a partial batch once its oldest row has waited this long (default {DEFAULT_FLUSH_MS:g})",
    )
    parser.add_argument(
        "--max-queue-rows",
        type=positive_int,
        default=d.max_queue_rows,
        help=f"rows held while kdb+ is slow or away before the oldest are dropped (default {d.max_queue_rows})",
    )
    parser.add_argument(
        "--confirm-ms",
        type=positive_float,
        default=d.confirm_interval * 1000,
        help=f"interval of the sync round trip that confirms delivery (default {d.confirm_interval * 1000:g})",
    )
    parser.add_argument(
        "--reconnect-max-s",
        type=positive_float,
        default=d.reconnect_max,
        help=f"longest wait between reconnection attempts (default {d.reconnect_max:g})",
    )
    parser.add_argument(
        "--function",
        default=d.function,
        help=f"the q function called with (table; columns) (default {d.function}; `upd` for an RDB)",
    )
    return parser


def main(config: Config, argv: list[str] | None = None) -> int:
    """`massive run kdb`."""
    args = build_parser().parse_args(argv or [])
    options = SenderOptions(
        function=args.function,
        max_queue_rows=args.max_queue_rows,
        confirm_interval=args.confirm_ms / 1000,
        reconnect_initial=min(0.5, args.reconnect_max_s),
        reconnect_max=args.reconnect_max_s,
    )
    return run_service(KdbService(config, args.batch_rows, args.flush_ms, options))
