"""The dashboard against hostile input on a real bus: a raw ZeroMQ PUB socket sends what no
well-behaved service would (bodies built by hand with msgpack), and the dashboard must stay up,
draw every text literally, count what it skipped, and keep showing good quotes sent afterwards.
Also: an error that does end it exits non-zero with the traceback in a log file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq
from textual.widgets import DataTable, RichLog, Static, TabbedContent

from mesh import auth, control, topics
from mesh.bus import Bus
from mesh.client import Publisher
from mesh.config import Config, load_config
from mesh.schema import Quote, QuoteBatch
from tui.app import MassiveTui, make_app

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_763_800_000_000_000_000
U64_MAX = 2**64 - 1
MARKUP = "[/bold] closing what never opened [red]x[/red] [link=http://x]y[/link] \x1b[2J"
SHOWN_MARKUP = "[/bold] closing what never opened [red]x[/red] [link=http://x]y[/link] \\x1b[2J"  # escapes made visible


# --- hand-built bus messages -------------------------------------------------------------------


class RawPublisher:
    """A bare PUB socket on the bus: sends any frames at all."""

    def __init__(self, endpoint: str) -> None:
        self.sock = zmq.Context.instance().socket(zmq.PUB)
        self.sock.linger = 0
        auth.secure_client(
            self.sock, auth.client_keys(load_config())
        )  # the mesh's key: a peer gone bad
        self.sock.connect(endpoint)
        self.seq = 0

    def frames(self, *frames: bytes) -> None:
        self.sock.send_multipart(list(frames))

    def send(self, topic: str | bytes, payload: Any) -> None:
        """`payload` as written: a list tagged by its first element, any values (msgspec.Raw for raw msgpack)."""
        self.seq += 1
        body = msgspec.msgpack.encode([[1, "evil", self.seq, T0], payload])
        self.frames(topic.encode() if isinstance(topic, str) else topic, body)

    def close(self) -> None:
        self.sock.close()


def quote_columns(
    symbols: list[str],
    bid: list[Any],
    ask: list[Any] | None = None,
    size: list[Any] | None = None,
    ts: list[Any] | None = None,
) -> list[Any]:
    n = len(symbols)
    ask = ask if ask is not None else [b + 0.02 if isinstance(b, float) else b for b in bid]
    size = size if size is not None else [100] * n
    ts = ts if ts is not None else [T0] * n
    # QuoteBatch: symbol, bid_price, bid_size, ask_price, ask_size, bid_exchange, ask_exchange, condition, tape, sequence, ts_event, ts_recv
    return [
        "quotes",
        symbols,
        bid,
        size,
        ask,
        size,
        [1] * n,
        [2] * n,
        [0] * n,
        [1] * n,
        list(range(1, n + 1)),
        ts,
        [T0] * n,
    ]


def deep_map(depth: int) -> msgspec.Raw:
    """A msgpack map nested `depth` levels deep ({"x": {"x": ...}}), about 3 bytes a level."""
    return msgspec.Raw(b"\x81\xa1x" * depth + b"\x80")


def heartbeat(
    service: str, counters: Any, *, state: str = "ok", message: str = "", interval: float = 1.0
) -> list[Any]:
    return ["heartbeat", service, "0000", 4242, state, T0, interval, counters, message]


# --- helpers -------------------------------------------------------------------------------------


def good_quotes(bid: float) -> QuoteBatch:
    return QuoteBatch.from_rows(
        [
            Quote(
                symbol=s,
                bid_price=bid,
                bid_size=100,
                ask_price=bid + 0.02,
                ask_size=200,
                bid_exchange=1,
                ask_exchange=2,
                ts_event=T0,
                ts_recv=T0,
            )
            for s in ("AAPL", "MSFT")
        ]
    )


async def wait_until(pilot, predicate, timeout: float = 25.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def attached(pilot, app: MassiveTui, pub: Publisher, bid: float = 100.0) -> None:  # type: ignore[no-untyped-def]
    """Publish good quotes until the board shows them: the dashboard's subscription is live."""

    def shown() -> bool:
        pub.publish(topics.quotes(), good_quotes(bid))
        return app.market.quotes.get("AAPL", (None,))[0] == bid

    await wait_until(pilot, shown, what=f"AAPL at {bid} on the board")


def log_text(app: MassiveTui) -> str:
    return "\n".join(strip.text for strip in app.query_one("#log", RichLog).lines)


def alive(app: MassiveTui) -> bool:
    return app.is_running and app.crash is None and app.return_code is None


async def show_view(pilot, app: MassiveTui, view_id: str) -> None:  # type: ignore[no-untyped-def]
    """Switch views as the number keys do; at start-up the first view's focus can bring its tab
    back, so switch until the view stays in front, then let it redraw a few times."""
    for _ in range(25):
        app.action_show_view(view_id)
        await pilot.pause(0.3)
        if app.query_one(TabbedContent).active == view_id:
            return
    raise AssertionError(f"the {view_id} view did not come to the front")


def mesh_cell(app: MassiveTui, service: str, column: int) -> str:
    table = app.query_one("#services", DataTable)
    try:
        return str(table.get_cell(service, table.ordered_columns[column].key))
    except Exception:
        return ""


@pytest.fixture
def raw(bus: Bus, mesh_config: Config) -> Iterator[RawPublisher]:
    pub = RawPublisher(mesh_config.bus_pub)
    yield pub
    pub.close()


@pytest.fixture
def pub(bus: Bus, mesh_config: Config) -> Iterator[Publisher]:
    publisher = Publisher("test", mesh_config.bus_pub)
    yield publisher
    publisher.close()


# --- the tests -----------------------------------------------------------------------------------


async def test_bus_text_that_looks_like_markup_is_shown_exactly_as_sent(
    raw: RawPublisher, pub: Publisher, mesh_config: Config
) -> None:
    app = make_app(mesh_config)
    async with app.run_test(size=(160, 40)) as pilot:
        await attached(pilot, app, pub)
        raw.send("sys.event.evil", ["event", "[b]evil[/b]", "error", MARKUP, {}])
        raw.send(
            "sys.heartbeat.evil",
            heartbeat(
                "[/svc]",
                {"note": "[/x]", "events_per_s": "[b]fast"},
                state="[/state]",
                message=MARKUP,
            ),
        )
        await show_view(pilot, app, "logs")  # the log draws its lines once it is on screen
        await wait_until(pilot, lambda: SHOWN_MARKUP in log_text(app), what="the event in Logs")
        assert "[b]evil[/b] ! " + SHOWN_MARKUP in log_text(app)
        await wait_until(
            pilot,
            lambda: any(SHOWN_MARKUP in str(n.message) for n in app._notifications),
            what="the error's pop-up",
        )
        assert all(not n.markup for n in app._notifications)
        await show_view(pilot, app, "mesh")
        await wait_until(
            pilot, lambda: mesh_cell(app, "[/svc]", 0) == "[/svc]", what="the service's row"
        )
        assert mesh_cell(app, "[/svc]", 2) == "[/state]"
        assert mesh_cell(app, "[/svc]", 4) == "[b]fast events/s"
        assert "note=[/x]" in mesh_cell(app, "[/svc]", 6)
        assert mesh_cell(app, "[/svc]", 7) == SHOWN_MARKUP
        assert alive(app) and app.draw_errors == {}


async def test_hostile_messages_are_counted_and_good_quotes_still_show(
    raw: RawPublisher, pub: Publisher, mesh_config: Config
) -> None:
    app = make_app(mesh_config)
    async with app.run_test(size=(160, 40)) as pilot:
        await attached(pilot, app, pub)
        quote_topic = topics.quotes()
        # market data the board cannot show: unequal columns, impossible prices, out-of-range ints
        raw.send(
            quote_topic,
            quote_columns(["AAPL", "MSFT"], [1.0])[:2]
            + quote_columns(["AAPL", "MSFT"], [1.0, 2.0])[2:],
        )
        raw.send(
            quote_topic,
            [
                "trades",
                ["AAPL", "MSFT"],
                [1.0],
                [1, 2],
                [1, 1],
                ["a", "b"],
                [[], []],
                [0, 0],
                [1, 2],
                [T0, T0],
                [T0, T0],
            ],
        )
        raw.send(
            quote_topic,
            quote_columns(["NANCO", "INFCO", "NEGCO"], [float("nan"), float("inf"), -1e308]),
        )
        raw.send(quote_topic, quote_columns(["HUGE"], [10.0], size=[U64_MAX]))
        raw.send(
            quote_topic, quote_columns(["FUTR", "PAST"], [10.0, 11.0], ts=[2**63 - 1, -(2**63)])
        )
        # symbols no exchange lists, with good prices: shown, drawn within their column
        odd = ["X" * 64, "株式会社", "A\x1b[2JB", "[b]MK[/b]", "ÄÖÜ"]
        raw.send(quote_topic, quote_columns(odd, [5.0] * len(odd)))
        raw.send(
            quote_topic, quote_columns(["", "Y" * 300], [5.0, 5.0])
        )  # beyond any name's length
        # service messages of every shape: deep nesting, NaN, huge ints, strings where numbers go
        raw.send("sys.heartbeat.deep", heartbeat("deep", {"nested": deep_map(60)}))
        raw.send("sys.heartbeat.deeper", heartbeat("deeper", {"nested": deep_map(5000)}))
        raw.send(
            "sys.event.deep",
            ["event", "deep", "info", "deeply nested data", {"data": deep_map(5000)}],
        )
        raw.send(
            "sys.heartbeat.odd",
            heartbeat(
                "odd",
                {
                    "msgs_per_s": float("nan"),
                    "big": U64_MAX,
                    "neg": -(2**63),
                    "events_per_s": "fast",
                    "list": list(range(1000)),
                    "malformed": {"body": "x"},
                },
                interval=float("nan"),
            ),
        )
        raw.send(
            "sys.heartbeat.bus",
            heartbeat("bus", {"msgs_per_s": "many", "bytes_per_s": float("inf")}),
        )
        raw.send(
            "sys.heartbeat.ingest",
            heartbeat(
                "ingest",
                {
                    "last_event_age_s": "late",
                    "connection": ["x"],
                    "reconnects": {"a": 1},
                    "server_status": MARKUP,
                },
            ),
        )
        raw.send("sys.heartbeat.recorder", heartbeat("recorder", {"rows": "many"}))
        raw.send(
            "sys.stats.recorder",
            [
                "stats",
                "recorder",
                {
                    "rows": {"quotes": "x", "t": U64_MAX},
                    "wal_depth": [1],
                    "gaps": {"recorded": "?"},
                    "duration_s": float("nan"),
                    "bytes_written": "lots",
                    "dropped": deep_map(40),
                    "session": MARKUP,
                    "error": MARKUP,
                },
            ],
        )
        raw.send("sys.heartbeat.fetcher", heartbeat("fetcher", {}))
        raw.send(
            topics.QUOTA,
            [
                "stats",
                "fetcher",
                {
                    "rest_calls_minute": "x",
                    "rest_calls_per_minute": float("nan"),
                    "rest_calls_today": U64_MAX,
                    "rest_calls_per_day": -5,
                    "s3_bytes_month": float("inf"),
                    "day_resets": MARKUP,
                    "throttled_24h": [1],
                },
            ],
        )
        raw.send(
            "job.evil-1",
            [
                "job",
                "evil-1",
                "fetch",
                "running",
                float("nan"),
                MARKUP,
                {"runs": [{"equity": {"ts": ["a"], "equity": [float("nan")]}}]},
            ],
        )
        raw.send(
            "bt.result.evil-2",
            ["job", "evil-2", "backtest", "done", float("inf"), MARKUP, {"runs": "not a list"}],
        )
        # frames that do not decode at all
        raw.frames(
            "md.quote.stöcks".encode(),
            msgspec.msgpack.encode([[1, "evil", 1, T0], quote_columns(["AAPL"], [1.0])]),
        )
        raw.frames(quote_topic.encode(), os.urandom(64))
        raw.frames(quote_topic.encode(), b"")
        raw.frames(quote_topic.encode(), b"\x92", b"extra")
        raw.send(quote_topic, ["nosuch", 1, 2])
        raw.send(quote_topic, [[[[[]]]]])

        # every view draws with all of that in the state
        for view_id in ("live", "recording", "history", "mesh", "logs", "backtest", "live"):
            await show_view(pilot, app, view_id)
        await attached(pilot, app, pub, bid=123.45)  # good quotes sent after the junk still show

        assert alive(app) and app.draw_errors == {}
        market = app.market
        assert not {"NANCO", "INFCO", "NEGCO", "HUGE"} & market.quotes.keys()
        assert set(odd) <= market.quotes.keys()
        feed = app.feed
        rejected = sum(feed.malformed.values()) + sum(feed.skipped.values())
        assert rejected >= 8, (
            feed.malformed,
            feed.skipped,
        )  # unequal quotes and trades, huge size, topic, 3 bodies, tag
        assert market.dropped_rows + rejected >= 11  # ... and the three impossible prices
        # the odd symbols are drawn within the board's width
        board = app.query_one("#board")
        board.filter_text = ""
        board.update_rows(force=True)
        await pilot.pause(0.1)
        widths = {
            board.render_line(y).cell_length
            for y in range(1, min(len(board.rows), board.size.height - 1) + 1)
        }
        assert widths == {board.size.width}
        # the counts are on the Mesh view, by kind
        await show_view(pilot, app, "mesh")
        summary = str(app.query_one("#mesh-summary", Static).render())
        shown = re.search(r"dashboard malformed ([\d,]+) \(([^)]*)\)\s+skipped ([\d,]+)", summary)
        assert shown, summary
        assert int(shown.group(1).replace(",", "")) == sum(feed.malformed.values()) > 0
        assert "topic" in shown.group(2)
        assert "skipped" in log_text(app)  # the first of each kind is also said in Logs


@pytest.fixture
def tap(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/tui/fake_services.py"), "tap"],
        env=mesh_environ,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 15
        while not control.call(mesh_config.bus_ctl, "bus", "services").get("tap", {}).get("up"):
            assert time.monotonic() < deadline, "the tap did not come up"
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


async def test_a_services_malformed_count_shows_in_the_mesh_view(
    tap: subprocess.Popen[bytes], raw: RawPublisher, pub: Publisher, mesh_config: Config
) -> None:
    app = make_app(mesh_config)
    async with app.run_test(size=(160, 40)) as pilot:
        await attached(
            pilot, app, pub
        )  # the tap subscribed before the dashboard did: it sees all that follows
        await show_view(pilot, app, "mesh")
        await wait_until(
            pilot,
            lambda: mesh_cell(app, "tap", 5) == "0",
            what=f"the tap's malformed count at 0: {app.mesh.services.get('tap')}",
        )
        for _ in range(5):
            raw.frames(topics.quotes().encode(), b"\xc1 not msgpack")
        await wait_until(
            pilot, lambda: mesh_cell(app, "tap", 5) == "5", what="the tap's malformed count at 5"
        )
        assert app.feed.malformed["body"] == 5
        assert "dashboard malformed 5 (body 5)" in str(
            app.query_one("#mesh-summary", Static).render()
        )
        assert alive(app)


def test_an_error_that_ends_the_dashboard_exits_non_zero_with_the_traceback_in_a_log_file(
    mesh_environ: dict[str, str], mesh_config: Config
) -> None:
    # A real failure: the bus endpoint is a socket path longer than the system allows, so the feed's
    # ZeroMQ socket cannot connect and its worker raises; nothing in the app handles that.
    endpoint = "ipc:///tmp/" + "x" * 200
    env = {**mesh_environ, "TEXTUAL_DRIVER": "textual.drivers.headless_driver:HeadlessDriver"}
    started = time.monotonic()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "massive-tui"), "--bus", endpoint],
        env=env,
        cwd=mesh_config.data_dir.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert time.monotonic() - started < 30
    last = done.stderr.strip().splitlines()[-1]
    said = re.fullmatch(
        r"massive-tui: stopped by an error \(ZMQError: (.+)\); the traceback is in (\S+)", last
    )
    assert said, last
    log = Path(said.group(2))
    assert log.parent == mesh_config.data_dir / "logs" and log.name.startswith("tui-")
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "zmq.error.ZMQError" in text
    assert "tui/feed.py" in text and said.group(1) in text
