"""End to end: a recording with a hole is proven incomplete, healed, and proven complete.

The mesh runs as real processes. The sim plays 2026-12-04 from 10:00 ET at 10x; ingest records
every trade and quote of three symbols; after a few seconds ingest is killed with `kill -9` and
restarted about ten seconds later. Reconciliation, over REST and from the day's flat files alike,
must find, per symbol and kind, exactly the rows of the day's history that fell in that hole (and
nothing else); heal must put them back so
the session equals the history row for row (0 missing, 0 extra, 0 differing); and the
backtester's result on the healed session must equal its result on the history of the same span.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from mesh import datasets
from mesh.backtest.runner import run_backtest
from mesh.datasets import TableKind
from mesh.datasets.audit import Method, read_audit
from mesh.fetcher.heal import heal
from mesh.fetcher.reconcile import reconcile
from mesh.recorder.session import Session
from mesh.schema import QuoteBatch, TradeBatch
from mesh.sim import history, market
from mesh.sim.server import SimServer
from tests.fetcher.conftest import config_of, sim_env
from tests.meshproc import Mesh, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

NAME = "holed"
SYMBOLS = ("AAPL", "MSFT", "SPY")
PLAYED = dt.date(2026, 12, 4)
STRATEGY, PARAMS = "ma-crossover", {"fast": 3, "slow": 8}
OPTIONS: dict[str, Any] = {"interval": "1s", "fills": "quotes"}
BEFORE_S, OUTAGE_S, AFTER_S = 4.0, 10.0, 4.0
MS = 1_000_000


def _rows(mesh: Mesh) -> int:
    session = mesh.call("recorder", "status", timeout=2).get("session") or {}
    return int(sum((session.get("rows") or {}).get(t, 0) for t in ("trades", "quotes")))


def _record_with_an_outage(mesh: Mesh) -> None:
    mesh.point_at_sim()
    mesh.start("bus")
    mesh.wait_up(["bus"], 20)
    mesh.start(
        "sim",
        *mesh.sim_args("--at", "2026-12-04T10:00", "--speed", "10", "--symbols", ",".join(SYMBOLS)),
    )
    mesh.start("recorder")
    mesh.wait_up(["sim", "recorder"], 60)
    mesh.call("recorder", "start", name=NAME)
    mesh.start("ingest", "--subscriptions", "Q.*,T.*")
    wait_for(lambda: _rows(mesh) > 0, 45, 0.3, "rows in the recording")
    time.sleep(BEFORE_S)
    mesh.kill9("ingest")
    time.sleep(OUTAGE_S)
    before_restart = _rows(mesh)
    mesh.restart("ingest")
    wait_for(lambda: _rows(mesh) > before_restart, 45, 0.3, "rows after ingest came back")
    time.sleep(AFTER_S)
    mesh.stop_recording()


def _times(folder: Path, kind: str, symbol: str, *, capture_only: bool) -> np.ndarray:
    dataset = datasets.open_path(folder)
    if capture_only:
        dataset = dataset.capture_only()
    table = dataset.table(TableKind(kind))
    assert table is not None
    data = datasets.read_table(table, columns=["ts_event"], symbols=[symbol])
    return np.sort(data["ts_event"].cast(pa.int64()).to_numpy())


def _hole(captured: np.ndarray) -> tuple[int, int]:
    """The recording's longest pause between consecutive events: ingest's outage."""
    gaps = np.diff(captured)
    i = int(np.argmax(gaps))
    return int(captured[i]), int(captured[i + 1])


def _history_recording(data_dir: Path, name: str, lo: int, hi: int) -> Path:
    """The day's history of SYMBOLS over [lo, hi] ns, recorded by the real recorder's writer."""
    trades_parts = [history.day_trades(market.DEFAULT_SEED, s, PLAYED) for s in SYMBOLS]
    quotes_parts = [history.day_quotes(market.DEFAULT_SEED, s, PLAYED) for s in SYMBOLS]

    def ms(ns: np.ndarray) -> np.ndarray:
        return ns // 1_000_000 * 1_000_000

    def pick(t: Any) -> np.ndarray:
        return (ms(t.sip_ns) >= lo) & (ms(t.sip_ns) <= hi)

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts)

    tk = [pick(t) for t in trades_parts]
    t_ns = cat([ms(t.sip_ns)[k] for t, k in zip(trades_parts, tk, strict=True)])
    t_order = np.argsort(t_ns, kind="stable")

    def tcol(get: Any) -> list[Any]:
        return cat([np.asarray(get(t))[k] for t, k in zip(trades_parts, tk, strict=True)])[
            t_order
        ].tolist()

    flags = tcol(lambda t: t.flags)
    trades = TradeBatch(
        symbol=tcol(lambda t: np.full(len(t), t.symbol, object)),
        price=tcol(lambda t: t.price),
        size=tcol(lambda t: t.size),
        exchange=tcol(lambda t: t.exchange),
        trade_id=[str(i) for i in tcol(lambda t: t.trade_id)],
        conditions=[[c for bit, c in history.CONDITION_CODES if f & bit] for f in flags],
        tape=tcol(lambda t: np.full(len(t), t.tape)),
        sequence=tcol(lambda t: t.sequence),
        ts_event=t_ns[t_order].tolist(),
        ts_recv=t_ns[t_order].tolist(),
    )
    qk = [pick(q) for q in quotes_parts]
    q_ns = cat([ms(q.sip_ns)[k] for q, k in zip(quotes_parts, qk, strict=True)])
    q_order = np.argsort(q_ns, kind="stable")

    def qcol(get: Any) -> list[Any]:
        return cat([np.asarray(get(q))[k] for q, k in zip(quotes_parts, qk, strict=True)])[
            q_order
        ].tolist()

    quotes = QuoteBatch(
        symbol=qcol(lambda q: np.full(len(q), q.symbol, object)),
        bid_price=qcol(lambda q: q.bid_price),
        bid_size=qcol(lambda q: q.bid_size),
        ask_price=qcol(lambda q: q.ask_price),
        ask_size=qcol(lambda q: q.ask_size),
        bid_exchange=qcol(lambda q: q.bid_exchange),
        ask_exchange=qcol(lambda q: q.ask_exchange),
        condition=[0] * len(q_order),
        tape=qcol(lambda q: np.full(len(q), q.tape)),
        sequence=qcol(lambda q: q.sequence),
        ts_event=q_ns[q_order].tolist(),
        ts_recv=q_ns[q_order].tolist(),
    )
    session = Session(name, data_dir=data_dir).open()
    session.write("quotes", quotes)
    session.write("trades", trades)
    session.stop()
    return data_dir / "recordings" / name


def test_a_killed_ingest_leaves_a_hole_that_reconcile_finds_and_heal_fills(
    sim: SimServer, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    quota = {"MASSIVE_REST_CALLS_PER_MINUTE": "1000", "MASSIVE_REST_CALLS_PER_DAY": "10000"}
    with Mesh(data_dir, quota) as mesh:
        _record_with_an_outage(mesh)
        config = mesh.config
        folder = data_dir / "recordings" / NAME

        # from the day's flat files (a sim whose clock is today: the played day is complete)
        # and over REST, the hole, and only the hole, is missing
        completed = config_of(sim_env(sim, data_dir), tmp_path)
        by_file = reconcile(NAME, completed, method="flat_file").reconciliation
        found = reconcile(NAME, config, method="rest")
        assert found.reconciliation is not None and by_file is not None
        assert by_file.method is Method.FLAT_FILE and found.reconciliation.method is Method.REST
        assert [
            (r.symbol, r.kind, r.recorded, r.reference, r.matched, r.missing, r.missing_spans)
            for r in by_file.results
        ] == [
            (r.symbol, r.kind, r.recorded, r.reference, r.matched, r.missing, r.missing_spans)
            for r in found.reconciliation.results
        ]
        results = {(r.symbol, str(r.kind)): r for r in found.reconciliation.results}
        assert set(results) == {(s, k) for s in SYMBOLS for k in ("trades", "quotes")}
        for (symbol, kind), result in results.items():
            lo, hi = _hole(_times(folder, kind, symbol, capture_only=True))
            reference = history_ms(kind, symbol)
            in_hole = int(((reference > lo) & (reference < hi)).sum())
            assert in_hole > 0, f"{symbol} {kind}: the outage held no event"
            assert (result.missing, result.extra, result.differing) == (in_hole, 0, 0), (
                symbol,
                kind,
            )
            (span,) = result.missing_spans
            assert lo < span.from_ns <= span.to_ns < hi and span.rows == in_hole

        # heal: the session now equals the history, row for row, and the audit says so
        healed = heal(NAME, config)
        assert healed.complete and healed.reconciled and healed.reconciled_complete
        stored = read_audit(folder).reconciliation
        assert stored is not None and stored.complete
        for result in stored.results:
            assert (result.missing, result.extra, result.differing) == (0, 0, 0)
            assert result.healed == results[(result.symbol, str(result.kind))].missing
        spans = []
        for symbol in SYMBOLS:
            for kind in ("trades", "quotes"):
                # healed rows keep REST's nanoseconds; the feed's carry milliseconds
                mine = np.sort(_times(folder, kind, symbol, capture_only=False) // MS * MS)
                reference = history_ms(kind, symbol)
                expected = reference[(reference >= mine[0]) & (reference <= mine[-1])]
                assert np.array_equal(mine, expected), (
                    f"{symbol} {kind}",
                    len(mine),
                    len(expected),
                    np.setdiff1d(mine, expected)[:5],
                    np.setdiff1d(expected, mine)[:5],
                )
                spans.append((int(mine[0]), int(mine[-1])))

        # the backtester sees the healed session as it sees the history of the same span
        first, last = min(lo for lo, _ in spans), max(hi for _, hi in spans)
        truth = _history_recording(data_dir, "truth", first, last)
        on_history = run_backtest(str(truth), STRATEGY, PARAMS, data_dir=data_dir, **OPTIONS)
        on_healed = run_backtest(NAME, STRATEGY, PARAMS, data_dir=data_dir, **OPTIONS)
        on_capture = run_backtest(
            NAME, STRATEGY, PARAMS, data_dir=data_dir, capture_only=True, **OPTIONS
        )
        assert on_history.metrics["fills"] > 0

        def trading(metrics: dict[str, Any]) -> dict[str, Any]:  # ingest's gap notices stay
            return {k: v for k, v in metrics.items() if k != "dataset_gaps"}

        assert trading(on_healed.metrics) == trading(on_history.metrics)
        assert trading(on_capture.metrics) != trading(on_history.metrics)  # the hole mattered


def history_ms(kind: str, symbol: str) -> np.ndarray:
    """SIP times of the played day's trades or quotes of `symbol`, in ms as the feed carries them."""
    data = (
        history.day_trades(market.DEFAULT_SEED, symbol, PLAYED)
        if kind == "trades"
        else history.day_quotes(market.DEFAULT_SEED, symbol, PLAYED)
    )
    return np.sort(data.sip_ns // 1_000_000 * 1_000_000)
