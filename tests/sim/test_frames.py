"""The feed's T, Q, A and AM frames, pinned byte for byte for the generator and the playback.

Both sources render through one layout; these frames were recorded from fixed seeds and must not
change by a byte (a client parsing them, a recorded session replayed, the benchmark's baseline all
depend on it), and both sources must name and order every event type's fields alike.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging

import numpy as np
import pytest
from massive.websocket.models import EquityAgg, EquityQuote, EquityTrade, Market, parse

from mesh.sim import history
from mesh.sim.frames import digits, sorted_digits
from mesh.sim.generator import LiveSource
from mesh.sim.playback import PlaybackStep, build_tape
from mesh.sim.source import Batch

NOW_MS = 1_732_633_019_000  # 2024-11-26 10:36:59 ET: a minute closes one second in
DAY = dt.date(2024, 11, 26)
DELAYED_MS = 15 * 60 * 1000


def _events(batch: Batch) -> list[bytes]:
    return list(batch.loose) + [bytes(row).rstrip(b",") for row in batch.rows]


def generator_events() -> list[bytes]:
    src = LiveSource(["AAPL", "MSFT", "SPY"], seed=7, rate=50_000, clock=lambda: NOW_MS * 1_000_000)
    out: list[bytes] = []
    for i in range(1, 80):
        step = src.step(NOW_MS + 20 * i)
        out += _events(step.render(0)) + _events(step.render(DELAYED_MS))
    return out


def playback_events() -> list[bytes]:
    tape = build_tape(7, ["AAPL", "MSFT"], DAY, scale=0.02)
    _, open_ns, _, _ = history.session_bounds_ns(DAY)
    out: list[bytes] = []
    for after, upto in ((open_ns - 120 * 10**9, open_ns + 120 * 10**9), (open_ns + 3600 * 10**9, open_ns + 3660 * 10**9)):  # fmt: skip
        step = PlaybackStep(tape, after, upto)
        out += _events(step.render(0)) + _events(step.render(DELAYED_MS))
    return out


@pytest.fixture(scope="module")
def generated() -> list[bytes]:
    return generator_events()


@pytest.fixture(scope="module")
def played() -> list[bytes]:
    return playback_events()


def _first(events: list[bytes], ev: str, conditions: bool = False) -> bytes:
    return next(
        e
        for e in events
        if e.lstrip().startswith(b'{"ev":"%s"' % ev.encode()) and (b'"c":[' in e) == conditions
    )


def _digest(events: list[bytes]) -> str:
    return hashlib.sha256(b"\n".join(events)).hexdigest()


def test_the_generators_frames_are_the_recorded_bytes(generated: list[bytes]) -> None:
    for ev, conditions, recorded in GENERATOR_EXAMPLES:
        assert _first(generated, ev, conditions) == recorded
    assert (len(generated), _digest(generated)) == GENERATOR_DIGEST


def test_the_playbacks_frames_are_the_recorded_bytes(played: list[bytes]) -> None:
    for ev, conditions, recorded in PLAYBACK_EXAMPLES:
        assert _first(played, ev, conditions) == recorded
    assert (len(played), _digest(played)) == PLAYBACK_DIGEST


@pytest.mark.parametrize("ev,conditions", [("T", False), ("T", True), ("Q", False), ("A", False), ("AM", False)])  # fmt: skip
def test_both_sources_name_and_order_each_events_fields_alike(
    generated: list[bytes], played: list[bytes], ev: str, conditions: bool
) -> None:
    keys = [list(json.loads(_first(events, ev, conditions))) for events in (generated, played)]
    assert keys[0] == keys[1]


def test_the_official_client_parses_every_event_of_both_sources(
    generated: list[bytes], played: list[bytes]
) -> None:
    for events in (generated, played):
        dicts = [json.loads(e) for e in events]
        parsed = parse(dicts, logging.getLogger(__name__), Market.Stocks)
        assert len(parsed) == len(dicts)
        assert {type(p) for p in parsed} == {EquityTrade, EquityQuote, EquityAgg}
        trades = [p for p in parsed if isinstance(p, EquityTrade)]
        assert all(isinstance(t.id, str) and t.id.isdigit() for t in trades)
        assert any(t.conditions for t in trades) and all(t.price and t.size for t in trades)


# Recorded from the sources at fixed seeds; whitespace included (JSON ignores it, bytes do not).
GENERATOR_DIGEST = (158012, "24f7ef52a6efa3aaef9325e9f5735bc634a86a1565e8a5401c463ae4dd724e72")
GENERATOR_EXAMPLES = [
    (
        "T",
        False,
        b'  {"ev":"T","sym":"MSFT"  ,"i":"100000000002","x":     2   ,"p":     435.46    ,"s":     200                   ,"t":   1732633019001   ,"q":  1000000002   ,"z":   3      }',
    ),
    (
        "T",
        True,
        b'  {"ev":"T","sym":"SPY"   ,"i":"100000000001","x":    21   ,"p":     581.17    ,"s":      26,"c":[37]          ,"t":   1732633019001   ,"q":  1000000001   ,"z":   2      }',
    ),
    (
        "Q",
        False,
        b'  {"ev":"Q","sym":"MSFT"  ,"bx":   7  ,"bp":     435.46   ,"bs":  26  ,"ax":  17  ,"ap":     435.51   ,"as":  15   ,"t":   1732633019001   ,"q":  1000000001   ,"z":   3  }',
    ),
    (
        "A",
        False,
        b'{"ev":"A","sym":"AAPL","v":675803,"av":675803,"op":226.74,"vw":226.7695,"o":226.74,"c":226.82,"h":226.83,"l":226.7,"a":226.7695,"z":150,"s":1732633019000,"e":1732633020000}',
    ),
    (
        "AM",
        False,
        b'{"ev":"AM","sym":"AAPL","v":675803,"av":676536,"op":226.74,"vw":226.7695,"o":226.74,"c":226.82,"h":226.83,"l":226.7,"a":226.7695,"z":150,"s":1732632960000,"e":1732633020000}',
    ),
]
PLAYBACK_DIGEST = (326, "e58cfd4fc20dfb9d4d47e7f583db1e79a9be259c4e773f7320bfef92afd130d4")
PLAYBACK_EXAMPLES = [
    (
        "T",
        False,
        b'  {"ev":"T","sym":"MSFT"   ,"i":      "161938843","x":     4   ,"p":     437.08    ,"s":    9700                   ,"t":   1732631400008   ,"q":        3262   ,"z":   3          }',
    ),
    (
        "T",
        True,
        b'  {"ev":"T","sym":"AAPL"   ,"i":      "218188160","x":    12   ,"p":     226.48    ,"s":      42,"c":[37]          ,"t":   1732631407440   ,"q":        5620   ,"z":   3          }',
    ),
    (
        "Q",
        False,
        b'  {"ev":"Q","sym":"AAPL"  ,"bx":  15  ,"bp":     226.38   ,"bs":      27  ,"ax":  21  ,"ap":     226.46   ,"as":      25   ,"t":   1732631297994   ,"q":        4507   ,"z":   3  }',
    ),
    (
        "A",
        False,
        b'{"ev":"A","sym":"AAPL","v":19800,"av":32403,"op":226.46,"vw":226.46,"o":226.46,"c":226.46,"h":226.46,"l":226.46,"a":226.4706,"z":19800,"s":1732631400000,"e":1732631401000}',
    ),
    (
        "AM",
        False,
        b'{"ev":"AM","sym":"AAPL","v":23896,"av":36499,"op":226.46,"vw":226.456,"o":226.46,"c":226.4,"h":226.5,"l":226.4,"a":226.4669,"z":1038,"s":1732631400000,"e":1732631460000}',
    ),
]


def test_sorted_digits_writes_every_number_as_digits_does() -> None:
    values = np.array([0, 5, 123, 9_999, 10_000, 12_345, 99_999_999, 100_000_000, 10**11])
    for words in (1, 2, 3, 4):
        fits = values[values < 10 ** (4 * words)]
        assert sorted_digits(fits, words).tobytes() == digits(fits, words).tobytes()
        assert [int(n) for n in digits(fits, words).view(f"S{4 * words}").ravel()] == fits.tolist()
