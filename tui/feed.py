"""The dashboard's only link to the bus: one async reader and a non-blocking command sender.

The reader runs as a Textual worker on the app's own event loop (zmq.asyncio, no thread). It
drains whatever is queued before yielding, decodes each topic's batches in the burst together and
only the columns the board shows (`wire.decode_many`), and writes into `MarketState` /
`MeshState` (and paper trading's `PaperState`), which keep only the latest value per symbol, so a firehose costs a few numpy calls
per burst and the screen redraws at its own pace.

Nothing on the bus stops the reader: a message the subscriber cannot decode is counted by kind
(`malformed`), one that decodes but cannot be shown is counted by reason (`skipped`), and the
first of each kind is reported to `on_problem` (the Logs view). Only a failure of the socket itself
ends it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio

from mesh import auth, control, topics
from mesh.client import AsyncSubscriber
from mesh.columnar import ColumnView
from mesh.config import Config, load_config
from mesh.schema import Event, Fill, Heartbeat, JobUpdate, Pnl, QuoteBatch, Stats, TradeBatch
from mesh.wire import Message
from tui.state import MarketState, MeshState, PaperState, Unusable

PREFIXES = ["md.quote.", "md.trade.", "sys.", "job.", "bt.", topics.PAPER]
PAPER_STATS = topics.stats("strategy")  # the strategy service's sessions
BOARD_FIELDS = {  # the only market-data columns the dashboard decodes
    topics.QUOTE: ("symbol", "bid_price", "ask_price", "bid_size", "ask_size", "ts_event"),
    topics.TRADE: ("symbol", "price", "size", "ts_event"),
}
DRAIN_LIMIT = 5000  # messages handled before yielding to the UI
BATCH_SECONDS = 0.05  # at most 20 wake-ups a second; the screen redraws at 10


class BusFeed:
    """Reads the bus into the dashboard's state; sends commands without blocking the UI."""

    def __init__(
        self,
        sub_endpoint: str,
        ctl_endpoint: str,
        market: MarketState,
        mesh: MeshState,
        config: Config | None = None,
        paper: PaperState | None = None,
    ) -> None:
        self.sub_endpoint = sub_endpoint
        self.ctl_endpoint = ctl_endpoint
        self.config = config or load_config()
        self.keys = auth.client_keys(
            self.config
        )  # the bus's CURVE keys (mesh.auth), None when auth is off
        self.market = market
        self.mesh = mesh
        self.paper = paper if paper is not None else PaperState()
        self.context = zmq.asyncio.Context.instance()
        self.subscriber: AsyncSubscriber | None = None
        self.skipped: Counter[str] = (
            Counter()
        )  # messages that decoded but could not be shown, by reason
        self.on_problem: Callable[[str, str], None] | None = (
            None  # (kind, what happened): the first of each kind
        )
        self._reported: set[str] = set()
        self._reported_malformed: set[str] = set()

    async def run(self) -> None:
        sub = self.subscriber = AsyncSubscriber(
            PREFIXES, self.sub_endpoint, context=self.context, config=self.config
        )
        try:
            while True:
                # Take whatever is queued in one go, each topic's batches merged into the few
                # numpy columns the board shows; then let the next burst gather: one wake-up per
                # BATCH_SECONDS instead of one per message keeps a firehose cheap.
                try:
                    messages = await sub.recv_burst(DRAIN_LIMIT, BOARD_FIELDS)
                except zmq.ZMQError:
                    raise  # the socket itself failed: nothing more will come
                except Exception as exc:  # noqa: BLE001 - a decoder that raised instead of rejecting: that burst is lost, not the feed
                    self.skip("undecodable", f"a burst the decoder failed on: {exc!r}")
                    messages = []
                for msg in messages:
                    self.handle(msg)
                if len(sub.stats.malformed) > len(self._reported_malformed):
                    self._report_malformed(sub)
                await asyncio.sleep(BATCH_SECONDS)
        finally:
            sub.close()

    def handle(self, msg: Message) -> None:
        """Apply one message to the state; one that cannot be shown is counted and skipped."""
        try:
            self._apply(msg)
        except Unusable as exc:
            self.skip(exc.kind, f"a {type(msg.payload).__name__} on {msg.topic}: {exc.detail}")
        except Exception as exc:  # noqa: BLE001 - no message may stop the feed; the first of a kind is reported with its error
            self.skip("failed", f"a {type(msg.payload).__name__} on {msg.topic}: {exc!r}")

    def skip(self, kind: str, what: str) -> None:
        self.skipped[kind] += 1
        if kind not in self._reported:
            self._reported.add(kind)
            self._tell(
                kind, f"skipped {what}; further ones of this kind are only counted (Mesh view)"
            )

    def _report_malformed(self, sub: AsyncSubscriber) -> None:
        for kind in sub.stats.malformed.keys() - self._reported_malformed:
            self._reported_malformed.add(kind)
            self._tell(
                kind,
                f"skipped a malformed bus message ({kind}); further ones of this kind are only counted (Mesh view)",
            )

    def _tell(self, kind: str, message: str) -> None:
        if self.on_problem is not None:
            try:
                self.on_problem(kind, message)
            except Exception:  # noqa: BLE001, S110 - reporting a problem must not become one (the app may be closing)
                pass

    def _apply(self, msg: Message) -> None:
        payload = msg.payload
        kind = type(payload)
        if kind is ColumnView:
            if payload.type is QuoteBatch:
                self.market.apply_quote_columns(payload.columns)
            elif payload.type is TradeBatch:
                self.market.apply_trade_columns(payload.columns)
        elif kind is QuoteBatch:
            self.market.apply_quotes(payload)
        elif kind is TradeBatch:
            self.market.apply_trades(payload)
        elif kind is Heartbeat:
            self.mesh.apply_heartbeat(payload)
        elif kind is Stats:
            if msg.topic == topics.QUOTA:
                self.mesh.apply_quota(payload)
            else:
                self.mesh.apply_stats(payload)
                if msg.topic == PAPER_STATS and payload.service == "strategy":
                    self.paper.apply_stats(payload)
        elif kind is Pnl:
            self.paper.apply_pnl(payload)
        elif kind is Fill:
            self.paper.apply_fill(payload)
        elif kind is Event:
            self.mesh.apply_event(payload)
        elif kind is JobUpdate:
            self.mesh.apply_job(payload)

    @property
    def malformed(self) -> Counter[str]:
        """Messages the subscriber could not decode, by kind (mesh.wire.MALFORMED_KINDS)."""
        return self.subscriber.stats.malformed if self.subscriber else Counter()

    async def call(
        self, service: str, cmd: str, args: dict[str, Any] | None = None, timeout: float = 2.0
    ) -> control.Reply:
        """Send one command through the bus; never raises for a dead mesh, returns a failed Reply."""
        req = control.new_request(cmd, args)
        sock = self.context.socket(zmq.DEALER)
        sock.linger = 0
        try:
            auth.secure_client(sock, self.keys)
            sock.connect(self.ctl_endpoint)
            await sock.send_multipart([control.REQ, service.encode(), control.encode(req)])
            while True:
                if not await sock.poll(int(timeout * 1000)):
                    return control.Reply(
                        id=req.id,
                        ok=False,
                        error=f"no answer from the bus at {self.ctl_endpoint}: is the mesh running?",
                    )
                frames = await sock.recv_multipart()
                if len(frames) == 2 and frames[0] == control.REP:
                    try:
                        reply = control.decode_reply(frames[1])
                    except control.BadBody as exc:
                        return control.Reply(
                            id=req.id, ok=False, error=f"unreadable reply from {service}: {exc}"
                        )
                    if reply.id == req.id:
                        return reply
        finally:
            sock.close()
