"""End to end: a session recorded from the sim's feed (ingest -> bus -> recorder) is its REST history.

The mesh runs as real processes; the sim plays 2026-12-04 from 09:30 ET at 20x, ingest subscribes
to every trade and quote, the recorder records for a few seconds, and the recorded trades and
quotes strictly inside the recorded span equal what Massive's official REST client gets from the
same sim for that span, row for row.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.dataset as ds
from massive import RESTClient

from tests.meshproc import Mesh

NAME = "played"
SYMBOLS = ("AAPL", "MSFT", "SPY")
RECORD_S = 6.0
MS = 1_000_000


def _recorded(folder: Path, table: str, columns: list[str]) -> list[dict[str, Any]]:
    data = ds.dataset(folder / table, format="parquet").to_table(columns=columns)
    data = data.set_column(
        data.schema.get_field_index("ts_event"),
        "ts_event",
        pc.cast(data.column("ts_event"), "int64"),
    )
    return sorted(data.to_pylist(), key=lambda r: (r["symbol"], r["ts_event"], r["sequence"]))


def test_a_recorded_session_equals_rest_trades_and_quotes_row_for_row(tmp_path: Path) -> None:
    with Mesh(tmp_path / "data") as mesh:
        mesh.point_at_sim()
        mesh.start("bus")
        mesh.wait_up(["bus"], 20)
        mesh.start(
            "sim",
            *mesh.sim_args(
                "--at", "2026-12-04T09:30", "--speed", "20", "--symbols", ",".join(SYMBOLS)
            ),
        )
        mesh.start("recorder")
        mesh.wait_up(["sim", "recorder"], 60)
        mesh.call("recorder", "start", name=NAME)
        mesh.start("ingest", "--subscriptions", "Q.*,T.*")
        mesh.wait_recording()
        time.sleep(RECORD_S)
        mesh.stop_recording()
        rest = RESTClient(
            api_key="sim-demo-key", base=f"http://127.0.0.1:{mesh.sim_ports['rest']}", retries=0
        )
        folder = tmp_path / "data" / "recordings" / NAME
        trades = _recorded(
            folder,
            "trades",
            [
                "symbol",
                "trade_id",
                "price",
                "size",
                "conditions",
                "exchange",
                "sequence",
                "ts_event",
            ],
        )
        quotes = _recorded(
            folder,
            "quotes",
            ["symbol", "bid_price", "bid_size", "ask_price", "ask_size", "sequence", "ts_event"],
        )
        for rows, kind in ((trades, "trades"), (quotes, "quotes")):
            assert len(rows) > 100, f"only {len(rows)} {kind} recorded"
            lo = min(r["ts_event"] for r in rows) // MS + 1
            hi = max(r["ts_event"] for r in rows) // MS - 1
            for symbol in SYMBOLS:
                mine = [
                    r for r in rows if r["symbol"] == symbol and lo <= r["ts_event"] // MS <= hi
                ]
                recorded, served = _compared(rest, kind, symbol, mine, lo, hi)
                assert recorded and recorded == served, f"{symbol} {kind} differ"


Row = tuple[Any, ...]


def _compared(
    rest: RESTClient, kind: str, symbol: str, mine: list[dict[str, Any]], lo: int, hi: int
) -> tuple[list[Row], list[Row]]:
    """The recorded rows and REST's rows of [lo, hi] ms, as comparable tuples."""
    span: dict[str, Any] = {
        "timestamp_gte": lo * MS,
        "timestamp_lt": (hi + 1) * MS,
        "order": "asc",
        "sort": "timestamp",
        "limit": 50_000,
    }
    if kind == "trades":
        return (
            [
                (
                    r["trade_id"],
                    r["price"],
                    r["size"],
                    list(r["conditions"] or []),
                    r["exchange"],
                    r["sequence"],
                    r["ts_event"] // MS,
                )
                for r in mine
            ],
            [
                (
                    t.id,
                    t.price,
                    t.size,
                    list(t.conditions or []),
                    t.exchange,
                    t.sequence_number,
                    t.sip_timestamp // MS,
                )
                for t in rest.list_trades(symbol, **span)
            ],
        )
    return (
        [(r["bid_price"], r["bid_size"], r["ask_price"], r["ask_size"], r["sequence"], r["ts_event"] // MS) for r in mine],
        [(q.bid_price, q.bid_size, q.ask_price, q.ask_size, q.sequence_number, q.sip_timestamp // MS) for q in rest.list_quotes(symbol, **span)],
    )  # fmt: skip
