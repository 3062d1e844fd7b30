"""What a `.u.upd` message carries, decoded with aiokdb (independent of PyKX, which built it),
and the schema in q/sym.q and docs/kdb.md agreeing with the one mapping in mesh/kdb/schema.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mesh.kdb.batcher import Batcher
from mesh.kdb.buffer import Chunk
from mesh.kdb.encode import EncodeError, encode_upd
from mesh.kdb.schema import TABLES, mapping_rows, render_sym_q
from tests.kdb.conftest import Q_EPOCH, T0, bars, paper_records, quotes, trades
from tests.kdb.tickerplant import decode_upd

ROOT = Path(__file__).resolve().parents[2]
NS_DAY = 86_400_000_000_000
TIMESPAN, SYMBOL, FLOAT, LONG, TIMESTAMP, BOOLEAN, LIST = 16, 11, 9, 7, 12, 1, 0


def chunk_of(batch: object, table: str) -> Chunk:
    emitted: list[Chunk] = []
    batcher = Batcher(emitted.append, batch_rows=10_000)
    batcher.add(batch)
    batcher.flush_all()
    assert len(emitted) == 1 and emitted[0].table == table
    return emitted[0]


def test_quotes_are_an_async_upd_of_typed_columns_in_schema_order() -> None:
    chunk = chunk_of(quotes(3), "quote")
    upd = decode_upd(encode_upd(TABLES["quote"], chunk.columns, chunk.rows))
    names = TABLES["quote"].names
    assert upd.msg_type == 0  # async
    assert (upd.function, upd.table) == (".u.upd", "quote")
    assert names == [
        "time",
        "sym",
        "bid_price",
        "bid_size",
        "ask_price",
        "ask_size",
        "bid_exchange",
        "ask_exchange",
        "condition",
        "tape",
        "sequence",
        "ts_event",
        "ts_recv",
    ]
    assert upd.types == [
        TIMESPAN,
        SYMBOL,
        FLOAT,
        LONG,
        FLOAT,
        LONG,
        LONG,
        LONG,
        LONG,
        LONG,
        LONG,
        TIMESTAMP,
        TIMESTAMP,
    ]
    assert upd.column("time", names) == [
        (T0 + i) % NS_DAY for i in range(3)
    ]  # 09:30:00.123456789 + i ns
    assert upd.column("time", names)[0] == (9 * 3600 + 30 * 60) * 10**9 + 123_456_789
    assert upd.column("sym", names) == ["AAPL", "MSFT", "AAPL"]
    assert upd.column("bid_price", names) == [100.0, 100.01, 100.02]
    assert upd.column("ask_size", names) == [200, 201, 202]
    assert upd.column("sequence", names) == [0, 1, 2]
    assert upd.column("ts_event", names) == [
        T0 - Q_EPOCH + i for i in range(3)
    ]  # ns precision, 2000 epoch
    assert upd.column("ts_recv", names) == [T0 + 1000 - Q_EPOCH + i for i in range(3)]


def test_trades_carry_trade_ids_as_strings_and_conditions_as_long_lists() -> None:
    chunk = chunk_of(trades(4), "trade")
    upd = decode_upd(encode_upd(TABLES["trade"], chunk.columns, chunk.rows))
    names = TABLES["trade"].names
    assert upd.table == "trade" and len(upd.types) == 11
    assert upd.types == [
        TIMESPAN,
        SYMBOL,
        FLOAT,
        LONG,
        LONG,
        LIST,
        LIST,
        LONG,
        LONG,
        TIMESTAMP,
        TIMESTAMP,
    ]
    assert upd.item_types[names.index("trade_id")] == {10}  # every id a char vector, even "7"
    assert upd.item_types[names.index("conditions")] == {7}  # every row a long vector, even []
    assert upd.column("trade_id", names) == ["7", "52983525029462", "7", "52983525029464"]
    assert upd.column("conditions", names) == [[], [12, 37], [], [12, 37]]
    assert upd.column("price", names) == [180.5, 181.5, 182.5, 183.5]


def test_bars_of_both_intervals_share_one_table_with_interval_and_replaces_per_row() -> None:
    emitted: list[Chunk] = []
    batcher = Batcher(emitted.append, batch_rows=10_000)
    batcher.add(bars(2, "1m"))
    batcher.add(bars(1, "1s", replaces=True))
    batcher.flush_all()
    [chunk] = emitted
    upd = decode_upd(encode_upd(TABLES["bar"], chunk.columns, chunk.rows))
    names = TABLES["bar"].names
    assert upd.types == [
        TIMESPAN,
        SYMBOL,
        SYMBOL,
        TIMESTAMP,
        TIMESTAMP,
        FLOAT,
        FLOAT,
        FLOAT,
        FLOAT,
        FLOAT,
        FLOAT,
        LONG,
        TIMESTAMP,
        BOOLEAN,
    ]
    assert upd.column("interval", names) == ["1m", "1m", "1s"]
    assert upd.column("replaces", names) == [False, False, True]
    start = T0 - T0 % 60_000_000_000
    assert upd.column("time", names)[0] == start % NS_DAY  # the bar's start, time of day
    assert upd.column("ts_end", names)[0] == start + 60_000_000_000 - Q_EPOCH
    assert upd.column("ts_recv", names)[0] == -(2**63)  # 0 ("not known") arrives as q's null 0Np
    assert upd.column("volume", names) == [1000.0, 2000.0, 1000.0]


def test_a_column_of_the_wrong_length_is_refused_not_sent() -> None:
    chunk = chunk_of(quotes(3), "quote")
    chunk.columns["bid_price"] = chunk.columns["bid_price"][:2]
    with pytest.raises(EncodeError, match="bid_price"):
        encode_upd(TABLES["quote"], chunk.columns, chunk.rows)


def test_the_function_can_be_an_rdb_upd() -> None:
    chunk = chunk_of(quotes(1), "quote")
    assert (
        decode_upd(encode_upd(TABLES["quote"], chunk.columns, 1, function="upd")).function == "upd"
    )


def test_batches_are_cut_at_n_rows_and_the_rest_waits_for_the_timer() -> None:
    emitted: list[Chunk] = []
    batcher = Batcher(emitted.append, batch_rows=100, flush_ms=50)
    batcher.add(quotes(250), now=10.0)
    assert [c.rows for c in emitted] == [100, 100]
    assert [c.columns["sequence"][0] for c in emitted] == [0, 100]
    batcher.flush_due(now=10.04)
    assert len(emitted) == 2 and batcher.pending_rows == 50
    batcher.add(quotes(10, 250), now=10.045)
    batcher.flush_due(now=10.2)
    assert [c.rows for c in emitted] == [100, 100, 60]
    assert emitted[-1].columns["sequence"] == list(range(200, 260))
    assert batcher.next_due() is None


def test_one_row_batches_split_every_bus_batch() -> None:
    emitted: list[Chunk] = []
    Batcher(emitted.append, batch_rows=1).add(quotes(5))
    assert [c.columns["sequence"] for c in emitted] == [[0], [1], [2], [3], [4]]


def test_sym_q_defines_exactly_the_tables_the_publisher_sends() -> None:
    text = (ROOT / "q/sym.q").read_text()
    definitions = [line for line in text.splitlines() if re.match(r"^\w+:\(\[\]", line)]
    assert definitions == render_sym_q()
    for line in definitions:  # kdb+tick's .u.tick insists on `time`sym first
        assert re.match(r"^\w+:\(\[\]time:`timespan\$\(\);sym:`g#`symbol\$\(\);", line)
    assert text.startswith("/ sym.q")


def test_docs_show_every_column_of_the_mapping() -> None:
    doc = (ROOT / "docs/kdb.md").read_text()
    for table, field, column, qtype, _note in mapping_rows():
        assert re.search(
            rf"\|\s*`{table}`\s*\|\s*`{field}`\s*\|\s*`{column}`\s*\|\s*{qtype}\s*\|", doc
        ), (table, field, column, qtype)


def test_long_float_and_symbol_vectors_are_byte_for_byte_what_pykx_serializes() -> None:
    import numpy as np
    import pykx as kx

    from mesh.kdb.encode import column
    from mesh.kdb.schema import QColumn

    quote_columns = {c.name: c for c in TABLES["quote"].columns}
    longs = np.array([0, 1, -5, 2**62, 100], dtype=np.int64)
    floats = np.array([0.0, -1.5, 1e300, float("nan"), 100.01])
    cases: list[tuple[QColumn, object, object]] = [
        (quote_columns["sequence"], longs, kx.toq(longs)),
        (quote_columns["sequence"], longs.tolist(), kx.toq(longs)),
        (quote_columns["bid_price"], floats, kx.toq(floats)),
        (quote_columns["bid_price"], floats.tolist(), kx.toq(floats)),
        (quote_columns["sym"], ["AAPL", "BRK.B", ""], kx.SymbolVector(["AAPL", "BRK.B", ""])),
    ]
    for col, values, reference in cases:
        assert (
            bytes(column(col, values)) == bytes(kx.serialize(reference, mode=3, wait=0).copy())[8:]
        ), col.name


def test_bursts_of_bus_messages_reach_q_as_the_rows_that_were_sent() -> None:
    from mesh import topics, wire

    sent = [quotes(7, start) for start in range(0, 70, 7)]
    frames = [
        wire.encode(topics.quotes(), batch, src="ingest", seq=i + 1) for i, batch in enumerate(sent)
    ]
    emitted: list[Chunk] = []
    batcher = Batcher(emitted.append, batch_rows=20)
    for msg in wire.decode_many(frames).messages:
        batcher.add(msg.payload)
    batcher.flush_all()
    assert [c.rows for c in emitted] == [20, 20, 20, 10]
    names = TABLES["quote"].names
    received = [decode_upd(encode_upd(TABLES["quote"], c.columns, c.rows)) for c in emitted]
    assert sum((upd.column("sequence", names) for upd in received), []) == list(range(70))
    assert sum((upd.column("sym", names) for upd in received), []) == sum(
        (b.symbol for b in sent), []
    )
    assert sum((upd.column("bid_price", names) for upd in received), []) == sum(
        (b.bid_price for b in sent), []
    )


def test_each_paper_record_is_one_row_of_its_table_in_sym_q_order() -> None:
    orders, fills, pnls = paper_records("momo", 3)
    emitted: list[Chunk] = []
    batcher = Batcher(emitted.append, batch_rows=2)
    for record in (*orders, *fills, *pnls):
        assert batcher.add(record)
    batcher.flush_all()
    assert sorted((c.table, c.rows) for c in emitted) == sorted(
        [("order", 2), ("order", 1), ("fill", 2), ("fill", 1), ("pnl", 2), ("pnl", 1)]
    )
    pnl_rows = [c for c in emitted if c.table == "pnl"]
    received = [decode_upd(encode_upd(TABLES["pnl"], c.columns, c.rows)) for c in pnl_rows]
    names = TABLES["pnl"].names
    assert names[:3] == ["time", "sym", "name"] and names[-1] == "fill_count"
    assert sum((u.column("fill_count", names) for u in received), []) == [1, 2, 3]
    assert sum((u.column("equity", names) for u in received), []) == [p.equity for p in pnls]
