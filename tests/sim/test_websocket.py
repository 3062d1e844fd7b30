"""The WebSocket feed as Massive's official client and a raw websockets client see it."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import websockets
from massive import WebSocketClient
from massive.exceptions import AuthError
from massive.websocket.models import EquityAgg, EquityQuote, EquityTrade
from websockets.exceptions import ConnectionClosed

from mesh.sim.server import SimServer

KEY = "sim-demo-key"


def ws_only(**options: Any) -> SimServer:
    return SimServer(rest=False, s3=False, **options)


async def open_session(url: str, key: str = KEY, subscribe: str | None = None) -> Any:
    ws = await websockets.connect(url, max_size=None)
    assert json.loads(await ws.recv()) == [
        {"ev": "status", "status": "connected", "message": "Connected Successfully"}
    ]
    await ws.send(json.dumps({"action": "auth", "params": key}))
    reply = json.loads(await ws.recv())
    if subscribe:
        await ws.send(json.dumps({"action": "subscribe", "params": subscribe}))
    return ws, reply


async def statuses_until_close(
    ws: Any, timeout: float = 10
) -> tuple[list[dict[str, Any]], int | None]:
    """Read to the close frame; return every status seen and the close code."""
    seen: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            async for frame in ws:
                seen += [m for m in json.loads(frame) if m["ev"] == "status"]
    except ConnectionClosed:
        pass
    return seen, ws.close_code


async def test_official_client_receives_parsed_quotes_trades_and_bars() -> None:
    async with ws_only(rate=3000, symbols=["AAPL", "MSFT", "SPY"]) as sim:
        client = WebSocketClient(
            api_key=KEY,
            feed=f"127.0.0.1:{sim.ws_port}",
            secure=False,
            subscriptions=["Q.*", "T.AAPL", "A.*"],
        )
        got: dict[type, list[Any]] = {EquityQuote: [], EquityTrade: [], EquityAgg: []}

        async def handle(msgs: list[Any]) -> None:
            for m in msgs:
                got[type(m)].append(m)
            if all(got.values()):
                await client.close()

        await asyncio.wait_for(client.connect(handle), 15)
        quote, trade, agg = got[EquityQuote][0], got[EquityTrade][0], got[EquityAgg][0]
        now_ms = time.time() * 1000
        assert quote.symbol in {"AAPL", "MSFT", "SPY"} and 0 < quote.bid_price < quote.ask_price
        assert (
            quote.bid_size >= 1 and quote.ask_size >= 1 and abs(quote.timestamp - now_ms) < 10_000
        )
        assert {t.symbol for t in got[EquityTrade]} == {"AAPL"}
        assert (
            trade.price > 0 and trade.size > 0 and len(trade.id) == 12 and trade.sequence_number > 0
        )
        assert agg.event_type == "A" and agg.end_timestamp - agg.start_timestamp == 1000
        assert (
            agg.low <= min(agg.open, agg.close) <= max(agg.open, agg.close) <= agg.high
            and agg.volume > 0
        )
        trades = got[EquityTrade]
        assert all(
            a.sequence_number < b.sequence_number for a, b in zip(trades, trades[1:], strict=False)
        )


async def test_official_client_raises_auth_error_on_a_wrong_key() -> None:
    async with ws_only(rate=100) as sim:
        client = WebSocketClient(
            api_key="not-a-key",
            feed=f"127.0.0.1:{sim.ws_port}",
            secure=False,
            subscriptions=["T.*"],
        )

        async def handle(msgs: list[Any]) -> None:
            pass

        with pytest.raises(AuthError, match="authentication failed"):
            await asyncio.wait_for(client.connect(handle), 10)
        assert sim.ws.auth_failures == 1


async def test_free_plan_key_has_no_websocket_access() -> None:
    async with ws_only(rate=100) as sim:
        ws, reply = await open_session(sim.ws_url, key="sim-free-key")
        assert reply[0]["status"] == "auth_failed" and "websocket access" in reply[0]["message"]
        await ws.close()


async def test_actions_before_auth_get_auth_required_and_bad_input_gets_errors() -> None:
    async with ws_only(rate=100) as sim:
        async with websockets.connect(sim.ws_url) as ws:
            await ws.recv()
            await ws.send(json.dumps({"action": "subscribe", "params": "T.*"}))
            assert json.loads(await ws.recv())[0]["status"] == "auth_required"
            for bad in ["{not json", json.dumps([1, 2]), json.dumps({"params": "x"})]:
                await ws.send(bad)
                assert json.loads(await ws.recv())[0]["status"] == "error"
            await ws.send(json.dumps({"action": "auth", "params": KEY}))
            assert json.loads(await ws.recv())[0]["status"] == "auth_success"
            await ws.send(json.dumps({"action": "dance", "params": "x"}))
            assert json.loads(await ws.recv())[0] == {
                "ev": "status",
                "status": "error",
                "message": "unknown action: dance",
            }
            await ws.send(json.dumps({"action": "subscribe", "params": "T.AAPL,nonsense,Q.MSFT"}))
            acks = [json.loads(await ws.recv())[0] for _ in range(3)]
            assert [a["status"] for a in acks] == ["success", "error", "success"]
            assert acks[0]["message"] == "subscribed to: T.AAPL"
            await ws.send(json.dumps({"action": "unsubscribe", "params": "T.AAPL"}))
            while (msg := json.loads(await ws.recv()))[0]["ev"] != "status":
                pass
            assert msg[0]["message"] == "unsubscribed to: T.AAPL"
        # the server is still fine for the next client
        ws, reply = await open_session(sim.ws_url)
        assert reply[0]["status"] == "auth_success"
        await ws.close()


async def test_subscription_filters_by_event_and_symbol_and_frames_mix_events() -> None:
    async with ws_only(rate=20_000) as sim:
        ws, _ = await open_session(sim.ws_url, subscribe="T.AAPL,Q.MSFT")
        kinds: set[tuple[str, str]] = set()
        mixed = False
        async with asyncio.timeout(10):
            while len(kinds) < 2 or not mixed:
                events = [e for e in json.loads(await ws.recv()) if e["ev"] != "status"]
                kinds |= {(e["ev"], e["sym"]) for e in events}
                mixed = mixed or len({e["ev"] for e in events}) == 2
        assert kinds == {("T", "AAPL"), ("Q", "MSFT")}
        await ws.close()


async def test_delayed_feed_is_fifteen_minutes_behind() -> None:
    async with ws_only(rate=2000) as sim:
        ws, _ = await open_session(sim.delayed_ws_url, subscribe="Q.*")
        async with asyncio.timeout(10):
            while not (events := [e for e in json.loads(await ws.recv()) if e["ev"] == "Q"]):
                pass
        lag_s = time.time() - events[0]["t"] / 1000
        assert 890 < lag_s < 910
        await ws.close()


async def test_second_connection_with_the_same_key_gets_max_connections_and_1008() -> None:
    async with ws_only(rate=100) as sim:
        first, _ = await open_session(sim.ws_url, subscribe="T.*")
        second, reply = await open_session(sim.ws_url)
        assert [m["status"] for m in reply] == ["auth_success", "max_connections"]
        await asyncio.wait_for(second.wait_closed(), 5)
        assert second.close_code == 1008
        assert sim.counters()["max_connections"] == 1
        await first.close()
        await asyncio.sleep(0.1)
        third, reply = await open_session(sim.ws_url)  # the key is free again
        assert reply[0]["status"] == "auth_success" and len(reply) == 1
        await third.close()


async def test_a_client_that_stops_reading_is_dropped_as_slow_consumer() -> None:
    async with ws_only(rate=100_000, queue_limit_bytes=256 * 1024) as sim:
        ws, _ = await open_session(sim.ws_url, subscribe="T.*,Q.*")
        deadline = time.monotonic() + 15
        while sim.feed.slow_consumers == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)  # not reading: buffers fill, then the sim's queue
        assert sim.feed.slow_consumers == 1
        seen, code = await statuses_until_close(ws)
        assert seen[-1]["status"] == "slow_consumer"
        assert code == 1008


async def test_force_disconnect_from_python_and_from_rest_admin_path() -> None:
    async with SimServer(rate=500, s3=False) as sim:
        ws, _ = await open_session(sim.ws_url, subscribe="T.*")
        assert sim.force_disconnect() == 1
        seen, code = await statuses_until_close(ws)
        assert seen[-1]["status"] == "force_disconnect" and code == 1008

        ws, _ = await open_session(sim.ws_url, subscribe="T.*")
        import httpx

        async with httpx.AsyncClient() as http:
            r = await http.post(f"{sim.rest_url}/_sim/disconnect", params={"apiKey": KEY})
        assert r.json()["disconnected"] == 1
        seen, code = await statuses_until_close(ws)
        assert seen[-1]["status"] == "force_disconnect" and code == 1008


async def test_official_client_reconnects_and_resubscribes_after_force_disconnect() -> None:
    async with ws_only(rate=2000, symbols=["AAPL"]) as sim:
        client = WebSocketClient(
            api_key=KEY, feed=f"127.0.0.1:{sim.ws_port}", secure=False, subscriptions=["Q.AAPL"]
        )
        batches = 0

        async def handle(msgs: list[Any]) -> None:
            nonlocal batches
            batches += 1
            if batches == 3:
                sim.force_disconnect()
            if sim.ws.connections_total >= 2 and batches > 10:
                await client.close()

        await asyncio.wait_for(client.connect(handle), 15)
        assert sim.ws.connections_total == 2 and sim.ws.forced == 1


async def test_unknown_path_is_refused_at_handshake() -> None:
    async with ws_only(rate=100) as sim:
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(f"ws://127.0.0.1:{sim.ws_port}/options")


async def test_silence_gets_auth_timeout() -> None:
    async with SimServer(rest=False, s3=False, rate=100, auth_timeout=0.3) as sim:
        async with websockets.connect(sim.ws_url) as ws:
            await ws.recv()
            seen, code = await statuses_until_close(ws)
        assert seen[-1]["status"] == "auth_timeout" and code == 1008
