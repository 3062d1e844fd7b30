"""A session's symbols start trading one quote at a time: where each began is saved soon, without
a disk write per symbol in front of the first bars' decisions."""

from __future__ import annotations

import time
from pathlib import Path

from mesh.backtest.strategies import get_strategy
from mesh.paper import session as paper
from mesh.paper.session import Session, Spec

SYMBOLS = [f"S{i:02d}" for i in range(50)]
T0 = 1_796_396_400 * 1_000_000_000


def test_fifty_symbols_starting_one_by_one_are_saved_in_two_writes_within_a_second(
    tmp_path: Path, monkeypatch
) -> None:
    writes: list[float] = []
    real_save = Session.save

    def counted(self: Session) -> None:
        writes.append(time.monotonic())
        real_save(self)

    monkeypatch.setattr(Session, "save", counted)
    strategy = get_strategy("ma-crossover")
    spec = Spec(name="start", strategy="ma-crossover", params={}, symbols=SYMBOLS).check()
    session = Session.create(spec, strategy, strategy.resolve({}), tmp_path, "rec")
    session.begin()
    begun = len(writes)  # create's own
    for j, symbol in enumerate(SYMBOLS):  # each symbol's first quote on its own, as a live feed
        session.quotes([(symbol, T0 + j, 99.99, 100.01, 100.0, 100.0)], time.monotonic())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and session.backlog:
        time.sleep(0.01)
    time.sleep(paper.FIRST_SAVE_S + 0.1)
    session.quotes([(SYMBOLS[0], T0 + 10**6, 99.99, 100.01, 100.0, 100.0)], time.monotonic())
    while time.monotonic() < deadline and set(Session.load(tmp_path / "start").first_ts) != set(
        SYMBOLS
    ):
        time.sleep(0.02)
    try:
        assert set(Session.load(tmp_path / "start").first_ts) == set(SYMBOLS)
        assert len(writes) - begun <= 2  # not one per symbol
    finally:
        session.stop()
