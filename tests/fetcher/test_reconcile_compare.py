"""The comparison engine on hand-built tables: what counts as matched, missing, extra, differing."""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
import pytest

from mesh.datasets.audit import EventKind, Span
from mesh.datasets.columns import QUOTES, STORAGE, TRADES
from mesh.fetcher.compare import compare

MS = 1_000_000
T0 = 1_796_400_000_000_000_000  # 2026-12-04 (some time that day)


def trades(*rows: dict[str, Any]) -> pa.Table:
    """Trades in the storage schema; each row gives what differs from a default trade."""
    base = {
        "symbol": "AAPL", "price": 100.0, "size": 100, "exchange": 4, "trade_id": "1",
        "conditions": [], "tape": 3, "sequence": 1, "ts_event": T0, "ts_recv": T0,
    }  # fmt: skip
    full = [{**base, **row} for row in rows]
    return pa.Table.from_pylist(full, schema=STORAGE[TRADES])


def quotes(*rows: dict[str, Any]) -> pa.Table:
    base = {
        "symbol": "AAPL", "bid_price": 99.0, "bid_size": 1, "ask_price": 101.0, "ask_size": 2,
        "bid_exchange": 11, "ask_exchange": 12, "condition": 0, "tape": 3, "sequence": 1,
        "ts_event": T0, "ts_recv": T0,
    }  # fmt: skip
    return pa.Table.from_pylist([{**base, **row} for row in rows], schema=STORAGE[QUOTES])


def tape(n: int, symbol: str = "AAPL") -> list[dict[str, Any]]:
    return [
        {"symbol": symbol, "trade_id": str(i), "ts_event": T0 + i * 10 * MS + 123, "sequence": i}
        for i in range(n)
    ]


def ms(row: dict[str, Any]) -> dict[str, Any]:
    """The row as the WebSocket delivers it: event time in milliseconds."""
    return {**row, "ts_event": row["ts_event"] // MS * MS}


def test_a_recording_equal_to_the_reference_is_complete_even_at_millisecond_times() -> None:
    ref = tape(50) + tape(20, "MSFT")
    result = compare(EventKind.TRADES, trades(*map(ms, ref)), trades(*ref))
    assert [(r.symbol, r.recorded, r.reference, r.matched) for r in result.results] == [
        ("AAPL", 50, 50, 50),
        ("MSFT", 20, 20, 20),
    ]
    assert all(r.complete and r.completeness_pct == 100.0 for r in result.results)
    assert result.missing_rows.num_rows == 0


def test_rows_removed_from_the_recording_are_missing_in_one_span_per_hole() -> None:
    ref = tape(100)
    kept = [r for i, r in enumerate(ref) if not (10 <= i < 20 or i == 50)]
    (result,) = compare(EventKind.TRADES, trades(*kept), trades(*ref)).results
    assert (result.matched, result.missing, result.extra, result.differing) == (89, 11, 0, 0)
    assert result.missing_spans == (
        Span(from_ns=ref[10]["ts_event"], to_ns=ref[19]["ts_event"], rows=10),
        Span(from_ns=ref[50]["ts_event"], to_ns=ref[50]["ts_event"], rows=1),
    )
    assert result.completeness_pct == 89.0


def test_a_changed_price_size_condition_or_millisecond_makes_a_row_differ() -> None:
    ref = tape(6)
    mine = [dict(r) for r in ref]
    mine[1]["price"] = 100.01
    mine[2]["size"] = 99
    mine[3]["conditions"] = [37]
    mine[4]["ts_event"] += 2 * MS
    (result,) = compare(EventKind.TRADES, trades(*mine), trades(*ref)).results
    assert (result.matched, result.differing, result.missing, result.extra) == (2, 4, 0, 0)
    assert not result.complete


def test_conditions_compare_as_sets_in_any_order() -> None:
    ref = trades({"conditions": [12, 37]}, {"trade_id": "2", "conditions": None})
    mine = trades({"conditions": [37, 12]}, {"trade_id": "2", "conditions": []})
    (result,) = compare(EventKind.TRADES, mine, ref).results
    assert (result.matched, result.differing) == (2, 0)


def test_the_same_trade_id_on_another_exchange_is_another_trade() -> None:
    ref = trades({"exchange": 4}, {"exchange": 11})
    mine = trades({"exchange": 4}, {"exchange": 12})
    (result,) = compare(EventKind.TRADES, mine, ref).results
    assert (result.matched, result.missing, result.extra) == (1, 1, 1)


def test_a_key_recorded_twice_pairs_once_and_the_copy_is_extra() -> None:
    ref = trades({"trade_id": "1"}, {"trade_id": "2"})
    mine = trades({"trade_id": "1"}, {"trade_id": "1"}, {"trade_id": "2"})
    (result,) = compare(EventKind.TRADES, mine, ref).results
    assert (result.recorded, result.matched, result.extra, result.missing) == (3, 2, 1, 0)


def test_duplicates_at_massive_pair_one_for_one() -> None:
    ref = trades({"trade_id": "1"}, {"trade_id": "1", "ts_event": T0 + MS})
    mine = trades({"trade_id": "1"})
    (result,) = compare(EventKind.TRADES, mine, ref).results
    assert (result.matched, result.missing, result.extra) == (1, 1, 0)
    assert result.missing_spans == (Span(from_ns=T0 + MS, to_ns=T0 + MS, rows=1),)


def test_empty_sides() -> None:
    empty = trades().slice(0, 0)
    (nothing_recorded,) = compare(EventKind.TRADES, empty, trades(*tape(3))).results
    assert (nothing_recorded.missing, nothing_recorded.completeness_pct) == (3, 0.0)
    assert nothing_recorded.missing_spans[0].rows == 3
    (nothing_at_massive,) = compare(EventKind.TRADES, trades(*tape(3)), empty).results
    assert (nothing_at_massive.extra, nothing_at_massive.completeness_pct) == (3, 100.0)
    (listed,) = compare(EventKind.TRADES, empty, empty, symbols=["SPY"]).results
    assert (listed.symbol, listed.reference, listed.complete) == ("SPY", 0, True)


def test_only_rows_inside_the_spans_count_on_both_sides() -> None:
    ref = tape(100)
    mine = ref[20:30]
    span = (ref[20]["ts_event"], ref[39]["ts_event"])
    (result,) = compare(EventKind.TRADES, trades(*mine), trades(*ref), spans=[span]).results
    assert (result.reference, result.matched, result.missing) == (20, 10, 10)
    assert result.missing_spans == (
        Span(from_ns=ref[30]["ts_event"], to_ns=ref[39]["ts_event"], rows=10),
    )


def test_columns_only_one_side_has_are_not_compared() -> None:
    ref = trades(*tape(4))
    mine = ref.drop_columns(["conditions", "price", "tape"]).append_column(
        "note", pa.array(["x"] * 4)
    )
    (result,) = compare(EventKind.TRADES, mine, ref).results
    assert result.matched == 4
    with pytest.raises(ValueError, match="lack the column"):
        compare(EventKind.TRADES, ref.drop_columns(["trade_id"]), ref)


def test_nan_prices_equal_each_other_but_not_a_price() -> None:
    ref = quotes({"bid_price": math.nan}, {"sequence": 2, "bid_price": math.nan})
    mine = quotes({"bid_price": math.nan}, {"sequence": 2, "bid_price": 99.0})
    (result,) = compare(EventKind.QUOTES, mine, ref).results
    assert (result.matched, result.differing) == (1, 1)


def test_quotes_match_on_sequence_and_compare_both_sides_of_the_book() -> None:
    ref = quotes(*({"sequence": i, "ts_event": T0 + i * MS} for i in range(5)))
    mine = quotes(
        {"sequence": 0, "ts_event": T0},
        {"sequence": 1, "ts_event": T0 + MS, "ask_exchange": 1},
        {"sequence": 3, "ts_event": T0 + 3 * MS},
        {"sequence": 9, "ts_event": T0 + 9 * MS},
    )
    comparison = compare(EventKind.QUOTES, mine, ref)
    (result,) = comparison.results
    assert (result.matched, result.differing, result.missing, result.extra) == (2, 1, 2, 1)
    assert comparison.missing_rows.column("sequence").to_pylist() == [2, 4]
    assert [s.rows for s in result.missing_spans] == [1, 1]


def test_trade_ids_written_differently_are_different_trades() -> None:
    ref = trades({"trade_id": "7"}, {"trade_id": "52983525035312"}, {"trade_id": "x-1"})
    mine = trades({"trade_id": "007"}, {"trade_id": "52983525035312"}, {"trade_id": "x-1"})
    (result,) = compare(EventKind.TRADES, mine, ref).results
    assert (result.matched, result.missing, result.extra) == (2, 1, 1)


@pytest.mark.parametrize("spelled", ["007", "+7", "-07", "-0"])
def test_an_integer_trade_id_spelled_otherwise_is_another_trade(spelled: str) -> None:
    plain = {"-0": "0", "-07": "-7"}.get(spelled, "7")
    ref = trades({"trade_id": plain}, {"trade_id": "52983525035312"})
    # a slice of a longer column: the spelling is read where the slice starts
    mine = trades({"trade_id": "1"}, {"trade_id": spelled}, {"trade_id": "52983525035312"})
    (result,) = compare(EventKind.TRADES, mine.slice(1), ref).results
    assert (result.matched, result.missing, result.extra) == (1, 1, 1)
    (same,) = compare(EventKind.TRADES, ref.slice(0), ref).results
    assert (same.matched, same.missing, same.extra) == (2, 0, 0)


def test_row_order_on_either_side_does_not_change_the_result() -> None:
    ref = quotes(
        *(
            {"symbol": s, "sequence": i, "ts_event": T0 + i * MS}
            for s in ("AAPL", "MSFT", "SPY")
            for i in range(200)
        )
    )
    mine = ref.filter(pa.array([i % 7 != 3 for i in range(ref.num_rows)]))
    mine = mine.take(pa.array(sorted(range(mine.num_rows), key=lambda i: (i % 200, i))))
    shuffled = ref.take(pa.array(list(range(ref.num_rows))[::-1]))
    in_order = compare(EventKind.QUOTES, mine, ref)
    reversed_ = compare(EventKind.QUOTES, mine, shuffled)
    assert in_order.results == reversed_.results
    assert [r.missing for r in in_order.results] == [29, 28, 29]
    assert in_order.results[0].missing_spans[0] == Span(
        from_ns=T0 + 3 * MS, to_ns=T0 + 3 * MS, rows=1
    )
    doubled = pa.concat_tables([mine, mine.slice(0, 1)])
    assert sum(r.extra for r in compare(EventKind.QUOTES, doubled, ref).results) == 1


@pytest.mark.parametrize("twice", [False, True], ids=["once", "one recorded twice"])
@pytest.mark.parametrize("spacing", [1, 2**40], ids=["dense sequences", "sparse sequences"])
def test_quotes_pair_alike_whether_their_sequence_numbers_are_dense_or_sparse(
    spacing: int, twice: bool
) -> None:
    ref = [
        {"symbol": s, "sequence": 1000 + i * spacing, "ts_event": T0 + i * MS}
        for s in ("AAPL", "MSFT")
        for i in range(300)
    ]
    mine = [dict(r) for i, r in enumerate(ref) if i % 10 != 3]  # 30 missing a symbol
    mine[5]["bid_price"] = 98.5  # one differing AAPL quote
    if twice:
        mine.append(dict(mine[-1]))  # one MSFT quote recorded twice: the copy is extra
    mine.sort(key=lambda r: (r["ts_event"], r["symbol"]))  # arrival order
    result = compare(EventKind.QUOTES, quotes(*mine), quotes(*ref)).results
    assert [(r.symbol, r.matched, r.missing, r.extra, r.differing) for r in result] == [
        ("AAPL", 269, 30, 0, 1),
        ("MSFT", 270, 30, int(twice), 0),
    ]
