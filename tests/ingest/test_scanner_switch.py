"""MESH_INGEST_SCANNER: the compiled scanner and the msgspec path publish the same batches, the
switch really selects the msgspec path, and no batch is ever written past its buffer."""

from __future__ import annotations

import json
import random
import time

import msgspec
import numpy as np
import pytest

from mesh.bus import Bus
from mesh.client import Subscriber
from mesh.config import Config, ConfigError
from mesh.ingest.scan import Columns
from mesh.ingest.service import IngestService
from tests.hostile.test_ws_replies import junk_frames
from tests.ingest.fake_massive import FakeMassive
from tests.ingest.test_ingest_service import collect, ingest_counters, start_ingest, stop
from tests.ingest.test_scan import DECLINED, QUOTE, RECEIVED, SECOND, TRADE, TS_MS, random_frame

Published = list[tuple[str, bytes]]


class Runtime:
    """What IngestService publishes, as the bytes each payload goes on the bus as."""

    def __init__(self) -> None:
        self.published: Published = []

    def publish(self, topic: str, payload: object) -> None:
        self.published.append((topic, msgspec.msgpack.encode(payload)))


def service(scanner: str) -> IngestService:
    return IngestService(Config.load(environ={"MESH_INGEST_SCANNER": scanner}))


def publish(scanner: str, groups: list[list[tuple[int, bytes]]]) -> tuple[Published, IngestService]:
    ingest, runtime = service(scanner), Runtime()
    for group in groups:
        ingest.process_frames(runtime, group)  # type: ignore[arg-type]
    return runtime.published, ingest


def frame(*events: object) -> bytes:
    return json.dumps(list(events), ensure_ascii=False).encode()


def hostile_frames() -> list[bytes]:
    """Every kind of frame the scanner declines, and the broken frames of the hostile tests."""
    declined = [
        bad.encode() if isinstance(bad, str) else frame(QUOTE, TRADE, *bad)
        for bad in DECLINED.values()
    ]
    return declined + list(junk_frames().values())


def test_the_switch_is_read_from_the_environment_and_shown_by_massive_config() -> None:
    assert Config.load(environ={}).ingest_scanner is True
    off = Config.load(environ={"MESH_INGEST_SCANNER": "OFF"})
    assert off.ingest_scanner is False
    assert ("MESH_INGEST_SCANNER", "off", "environment") in off.as_table()
    assert off.as_json()["variables"]["MESH_INGEST_SCANNER"]["value"] == "off"
    with pytest.raises(ConfigError, match="MESH_INGEST_SCANNER='sometimes'"):
        Config.load(environ={"MESH_INGEST_SCANNER": "sometimes"})


def test_both_paths_publish_identical_batches_for_generated_frames_taken_eight_at_a_time() -> None:
    rng = random.Random(16)
    groups = []
    for _ in range(60):
        group = [
            (rng.randint(TS_MS[0], TS_MS[1]) * 1_000_000, random_frame(rng))
            for _ in range(rng.randint(1, 8))
        ]
        if rng.random() < 0.3:  # a bar frame between them: each path publishes it on its own
            group.insert(rng.randrange(len(group) + 1), (RECEIVED, frame(SECOND)))
        groups.append(group)
    scanned, on = publish("on", groups)
    referenced, off = publish("off", groups)
    assert scanned == referenced and len(scanned) > 60
    frames = sum(len(g) for g in groups)
    assert on.counters()["frames_scanned"] + on.counters()["frames_via_msgspec"] == frames
    assert on.counters()["frames_scanned"] > 0
    assert off.counters()["scanner"] == "off" and off.counters()["frames_scanned"] == 0
    assert off.counters()["frames_via_msgspec"] == frames


def test_both_paths_publish_identical_batches_and_counts_for_hostile_frames() -> None:
    frames = hostile_frames()
    good = frame(QUOTE, TRADE)
    groups = [[(RECEIVED + i, data)] for i, data in enumerate(frames)] + [[(RECEIVED, good)]]
    scanned, on = publish("on", groups)
    referenced, off = publish("off", groups)
    assert scanned == referenced
    assert on.errors.counts == off.errors.counts and on.errors.total > 20
    assert scanned[-2:] == [
        ("md.quote.stocks", scanned[-2][1]),
        ("md.trade.stocks", scanned[-1][1]),
    ]  # and the stream goes on after them
    assert on.counters()["frames_scanned"] == 1  # only the good frame
    assert off.counters()["frames_scanned"] == 0


def test_a_frame_that_would_overflow_the_encoders_buffer_goes_to_msgspec_and_is_counted() -> None:
    ingest, runtime = service("on"), Runtime()
    ingest.columns.out = np.empty(400, dtype=np.uint8)  # room for one quote's worst case, not two
    one, two = frame(dict(QUOTE, q=1)), frame(dict(QUOTE, q=2), dict(QUOTE, q=3))
    ingest.process_frames(runtime, [(RECEIVED, one), (RECEIVED, two)])  # type: ignore[arg-type]
    counters = ingest.counters()
    assert counters["frames_over_capacity"] == 1
    assert counters["frames_scanned"] == 1 and counters["frames_via_msgspec"] == 1
    reference, _ = publish("off", [[(RECEIVED, one)], [(RECEIVED, two)]])
    assert runtime.published == reference  # the same batches, each path's share in feed order


def test_the_scanner_never_writes_past_a_buffer_too_small_for_its_batch() -> None:
    columns = Columns(8192)
    canary = np.full(columns.out.shape[0], 0xAB, dtype=np.uint8)
    columns.out = canary[:400]  # one quote's worst case (365 bytes) fits, two do not
    before = columns.state.copy()
    assert not columns.add(frame(dict(QUOTE, q=1), dict(QUOTE, q=2)), RECEIVED)
    assert columns.over_capacity == 1 and (columns.state == before).all()
    assert columns.add(frame(dict(QUOTE, q=1)), RECEIVED)  # one quote fits
    columns.out = canary[:100]  # the encoder is then handed a buffer too small for it
    with pytest.raises(RuntimeError, match="encoder's buffer"):
        columns.take()
    assert (canary == 0xAB).all()  # refused before writing a byte


def test_with_the_scanner_off_a_running_ingest_publishes_through_msgspec(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str]
) -> None:
    fake = FakeMassive()
    sub = Subscriber(["md.quote."], mesh_config.bus_sub)
    proc = start_ingest(dict(mesh_environ, MESH_INGEST_SCANNER="off"), fake.url)
    try:
        fake.wait_streaming()
        time.sleep(0.3)  # the subscriber's subscription reaches the bus
        fake.send([QUOTE, TRADE])
        got = collect(sub, "md.quote.stocks", 1)
        assert [q.symbol for m in got for q in m.payload.rows()] == ["MSFT"]
        deadline = time.monotonic() + 10
        counters = ingest_counters(mesh_config)
        while counters.get("frames_via_msgspec", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
            counters = ingest_counters(mesh_config)
        assert counters["scanner"] == "off" and counters["frames_scanned"] == 0
        assert counters["frames_via_msgspec"] >= 1
    finally:
        log = stop(proc)
        sub.close()
        fake.close()
    assert "frame scanner off (MESH_INGEST_SCANNER=off)" in log
