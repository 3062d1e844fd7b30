"""The recording engine without the bus: rows in equal rows out, append, filters, bars, recovery."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest

from mesh.recorder import promote, recovery, wal
from mesh.recorder.session import Session, SessionError
from mesh.recorder.wal import WalError
from mesh.schema import Fill
from tests.recorder.helpers import T0, quotes, trades


def read(data_dir: Path, name: str, table: str) -> pd.DataFrame:
    return (
        ds.dataset(data_dir / "recordings" / name / table, format="parquet").to_table().to_pandas()
    )


def manifest(data_dir: Path, name: str) -> dict:
    return json.loads((data_dir / "recordings" / name / "manifest.json").read_text())


def test_rows_written_equal_rows_read_back_across_slices(tmp_path: Path) -> None:
    session = Session("s1", data_dir=tmp_path).open()
    for i in range(30):
        session.write("quotes", quotes(i * 100, 100))
        session.write("trades", trades(i * 10, 10))
        if i % 7 == 6:
            session.rotate()
            session.promote_pending()
    session.stop()
    q, t = read(tmp_path, "s1", "quotes"), read(tmp_path, "s1", "trades")
    assert sorted(q["sequence"]) == list(range(3000))
    assert sorted(t["sequence"]) == list(range(300))
    expected = quotes(0, 100)
    first = q.sort_values("sequence").iloc[0]
    assert (first["symbol"], first["bid_price"], first["ts_event"].value) == (
        expected.symbol[0],
        expected.bid_price[0],
        expected.ts_event[0],
    )
    assert str(q["ts_event"].dtype) == "datetime64[ns, UTC]"
    assert t.sort_values("sequence")["conditions"].iloc[0].tolist() == [12, 37]
    m = manifest(tmp_path, "s1")
    assert m["rows"]["quotes"] == 3000 and m["rows"]["trades"] == 300
    assert m["state"] == "stopped" and m["clean"] is True
    assert m["symbols"] == ["AAPL", "MSFT", "NVDA", "TSLA"]
    assert m["first_event_ns"] == quotes(0, 1).ts_event[0]
    assert len([f for f in m["files"] if f["table"] == "quotes"]) == 5
    assert not (tmp_path / "recordings" / "s1" / "wal").exists()  # nothing left to recover


def test_existing_name_appends_and_symbols_filter(tmp_path: Path) -> None:
    first = Session("s2", data_dir=tmp_path).open()
    first.write("quotes", quotes(0, 400))
    first.stop()
    second = Session("s2", data_dir=tmp_path, symbols="aapl, MSFT").open()
    second.write("quotes", quotes(400, 400))
    second.stop()
    q = read(tmp_path, "s2", "quotes")
    assert len(q) == 400 + 200
    later = q[q["sequence"] >= 400]
    assert set(later["symbol"]) == {"AAPL", "MSFT"}
    m = manifest(tmp_path, "s2")
    assert [run["symbols_requested"] for run in m["runs"]] == [None, ["AAPL", "MSFT"]]
    assert m["rows"]["quotes"] == 600


def test_bad_names_are_refused(tmp_path: Path) -> None:
    for name in ("../x", "", "a/b", ".hidden"):
        with pytest.raises(SessionError):
            Session(name, data_dir=tmp_path)


def test_bars_equal_a_pandas_resample_of_the_recorded_rows(tmp_path: Path) -> None:
    session = Session("bars", data_dir=tmp_path).open()
    for i in range(40):  # ~ 40 * 250 * 11 ms of trades: spans minutes and slice boundaries
        session.write("trades", trades(i * 250, 250, step_ns=37_000_000))
        session.write("quotes", quotes(i * 250, 250, step_ns=37_000_000))
        if i % 9 == 8:
            session.rotate()
            session.promote_pending()
    session.stop()
    t = read(tmp_path, "bars", "trades")
    q = read(tmp_path, "bars", "quotes")
    for interval, freq in (("1s", "1s"), ("1m", "1min")):
        bars = pd.read_parquet(tmp_path / "recordings" / "bars" / f"bars_{interval}.parquet")
        t["pv"] = t["price"] * t["size"]
        g = t.sort_values("ts_event", kind="stable").groupby(
            ["symbol", pd.Grouper(key="ts_event", freq=freq)]
        )
        ref = g.agg(
            open=("price", "first"),
            high=("price", "max"),
            low=("price", "min"),
            close=("price", "last"),
            volume=("size", "sum"),
            pv=("pv", "sum"),
            transactions=("price", "count"),
        ).reset_index()
        ref = ref[ref["transactions"] > 0].reset_index(drop=True)
        ref["vwap"] = ref["pv"] / ref["volume"]
        assert len(bars) == len(ref) > 0
        assert (bars["ts_start"] == ref["ts_event"]).all()
        assert (bars["symbol"].values == ref["symbol"].values).all()
        for col in ("open", "high", "low", "close", "volume", "vwap", "transactions"):
            np.testing.assert_allclose(
                bars[col].to_numpy(float), ref[col].to_numpy(float), err_msg=f"{interval} {col}"
            )
        mid = pd.read_parquet(tmp_path / "recordings" / "bars" / f"mid_bars_{interval}.parquet")
        q["mid"] = (q["bid_price"] + q["ask_price"]) / 2
        ref = (
            q.sort_values("ts_event", kind="stable")
            .groupby(["symbol", pd.Grouper(key="ts_event", freq=freq)])["mid"]
            .agg(["first", "max", "min", "last", "count"])
            .reset_index()
        )
        ref = ref[ref["count"] > 0]
        assert len(mid) == len(ref)
        np.testing.assert_allclose(
            mid[["open", "high", "low", "close"]].to_numpy(),
            ref[["first", "max", "min", "last"]].to_numpy(),
        )
        assert (mid["transactions"].to_numpy() == ref["count"].to_numpy()).all()
    assert manifest(tmp_path, "bars")["rows"]["bars_1m"] == len(
        pd.read_parquet(tmp_path / "recordings" / "bars" / "bars_1m.parquet")
    )


def _crash(session: Session) -> None:
    """What `kill -9` leaves: open segment files without an end marker, nothing finished."""
    session.wal._closed.set()
    for fd in session.wal._fds.values():
        import os

        os.close(fd)


def test_recovery_promotes_the_log_of_a_killed_session_and_resumes_it(tmp_path: Path) -> None:
    session = Session("crash", data_dir=tmp_path).open()
    session.write("quotes", quotes(0, 500))
    session.rotate()
    session.promote_pending()
    session.write("quotes", quotes(500, 500))
    session.write("trades", trades(0, 50))
    _crash(session)
    assert recovery.pending(tmp_path) == ["crash"]
    done = recovery.recover(tmp_path, "crash")
    assert done.resume and done.segments == 1 and done.rows == 550
    q = read(tmp_path, "crash", "quotes")
    assert sorted(q["sequence"]) == list(range(1000))
    m = manifest(tmp_path, "crash")
    assert m["state"] == "stopped" and m["clean"] is False and m["runs"][-1]["recovered"] is True
    assert [g["kind"] for g in m["gaps"]] == ["recorder"]
    assert recovery.pending(tmp_path) == []
    again = Session("crash", data_dir=tmp_path).open()  # resume: new parts after the old ones
    again.write("quotes", quotes(1000, 10))
    again.stop()
    assert sorted(read(tmp_path, "crash", "quotes")["sequence"]) == list(range(1010))


def test_torn_tail_of_a_segment_keeps_every_complete_batch(tmp_path: Path) -> None:
    session = Session("torn", data_dir=tmp_path).open()
    for i in range(5):
        session.write("quotes", quotes(i * 100, 100))
    _crash(session)
    segment = next((tmp_path / "recordings" / "torn" / "wal").glob("quotes-*.arrows"))
    data = segment.read_bytes()
    segment.write_bytes(data[: len(data) - 500])  # the last batch was being written
    done = recovery.recover(tmp_path, "torn")
    assert done.torn == ["quotes-1"]
    assert sorted(read(tmp_path, "torn", "quotes")["sequence"]) == list(range(400))


def test_crash_during_promotion_never_duplicates_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = Session("promo", data_dir=tmp_path).open()
    session.write("quotes", quotes(0, 300))
    session.write("trades", trades(0, 30))
    session.rotate()

    def die(number: int) -> None:
        raise SystemExit("killed after writing Parquet, before deleting the segment")

    monkeypatch.setattr(promote, "_after_write", die)
    with pytest.raises(SystemExit):
        session.promote_pending()
    _crash(session)
    monkeypatch.setattr(promote, "_after_write", None)
    # Parquet files and their segments both exist now; recovery must not add the rows twice.
    assert list((tmp_path / "recordings" / "promo" / "quotes").glob("part-*.parquet"))
    assert list((tmp_path / "recordings" / "promo" / "wal").glob("quotes-*.arrows"))
    recovery.recover(tmp_path, "promo")
    recovery.recover(tmp_path, "promo")  # and recovering twice changes nothing
    assert sorted(read(tmp_path, "promo", "quotes")["sequence"]) == list(range(300))
    assert sorted(read(tmp_path, "promo", "trades")["sequence"]) == list(range(30))
    assert manifest(tmp_path, "promo")["rows"]["quotes"] == 300


def test_half_written_parquet_from_a_crash_is_invisible_and_cleaned(tmp_path: Path) -> None:
    session = Session("tmpfile", data_dir=tmp_path).open()
    session.write("quotes", quotes(0, 100))
    _crash(session)
    quotes_dir = tmp_path / "recordings" / "tmpfile" / "quotes"
    quotes_dir.mkdir(parents=True)
    (quotes_dir / ".part-000001.parquet.1234abcd.tmp").write_bytes(b"PAR1 half a file")
    assert ds.dataset(quotes_dir, format="parquet").count_rows() == 0  # readers skip it
    recovery.recover(tmp_path, "tmpfile")
    assert [p.name for p in quotes_dir.iterdir()] == ["part-000001.parquet"]
    assert len(read(tmp_path, "tmpfile", "quotes")) == 100


def test_disk_full_fails_the_session_and_keeps_what_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = Session("full", data_dir=tmp_path).open()
    for i in range(5):
        session.write("quotes", quotes(i * 100, 100))
    real_write = wal._write

    def full(fd: int, data: memoryview) -> int:
        real_write(fd, data[: len(data) // 2])  # part of it fits, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(wal, "_write", full)
    with pytest.raises(WalError, match="disk full"):
        session.write("quotes", quotes(500, 100))
    session.fail("disk full")
    monkeypatch.setattr(wal, "_write", real_write)
    assert session.status()["state"] == "failed"
    m = manifest(tmp_path, "full")
    assert m["state"] == "failed" and m["error"] == "disk full" and m["clean"] is False
    assert sorted(read(tmp_path, "full", "quotes")["sequence"]) == list(range(500))


def test_permission_denied_while_promoting_leaves_the_log_for_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = Session("perm", data_dir=tmp_path).open()
    session.write("quotes", quotes(0, 200))
    session.rotate()

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("mesh.datasets.storage.pq.ParquetWriter", denied)
    with pytest.raises(PermissionError):
        session.promote_pending()
    session.fail("permission denied")
    monkeypatch.undo()
    assert list((tmp_path / "recordings" / "perm" / "wal").glob("quotes-*.arrows"))  # kept
    assert recovery.pending(tmp_path) == ["perm"]
    done = recovery.recover(tmp_path, "perm")
    assert not done.resume  # a failed session is not resumed
    assert sorted(read(tmp_path, "perm", "quotes")["sequence"]) == list(range(200))


def test_paper_records_survive_a_crash_during_promotion_once_each_and_follow_the_symbol_filter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fills = [
        Fill(
            name="momo",
            symbol=("AAPL", "MSFT")[i % 2],
            order_id=i + 1,
            qty=10.0,
            price=100.0 + i,
            ref_price=99.99 + i,
            fee=0.0,
            ts_event=T0 + i,
            position=10.0 * (i + 1),
            cash=-1000.0 * (i + 1),
        )
        for i in range(6)
    ]
    session = Session("paper", data_dir=tmp_path, symbols="AAPL").open()
    assert session.write_records("fills", fills[:4]) == 2  # MSFT's are not this session's
    session.write("quotes", quotes(0, 40))
    session.rotate()

    def die(number: int) -> None:
        raise SystemExit("killed after writing Parquet, before deleting the segment")

    monkeypatch.setattr(promote, "_after_write", die)
    with pytest.raises(SystemExit):
        session.promote_pending()
    session.write_records("fills", fills[4:])
    _crash(session)
    monkeypatch.setattr(promote, "_after_write", None)
    recovery.recover(tmp_path, "paper")
    recovery.recover(tmp_path, "paper")  # and recovering twice changes nothing
    kept = read(tmp_path, "paper", "fills").sort_values("order_id")
    assert kept["order_id"].tolist() == [1, 3, 5] and set(kept["symbol"]) == {"AAPL"}
    assert kept["ts_event"].astype("int64").tolist() == [T0, T0 + 2, T0 + 4]
    assert manifest(tmp_path, "paper")["rows"]["fills"] == 3
