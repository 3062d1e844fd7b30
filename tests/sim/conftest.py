"""Fixtures: a sim with REST and S3 running in a background thread, shared by a module's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mesh.sim.server import SimServer
from tests.simulator import ThreadedSim


@pytest.fixture(scope="module")
def http_sim() -> Iterator[SimServer]:
    """REST + S3 (+ a slow live feed) with one free key per test that needs one."""
    with ThreadedSim(rate=200, free_keys=("sim-free-key", "free-a", "free-b")) as sim:
        yield sim
