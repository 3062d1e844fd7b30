"""Fixtures: the simulator's REST and S3 in a background thread, and configs pointed at it."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh import calendar
from mesh.config import Config
from mesh.sim.server import SimServer
from tests.simulator import ThreadedSim


@pytest.fixture(scope="session")
def sim() -> Iterator[SimServer]:
    with ThreadedSim(rate=5, free_keys=("sim-free-key",)) as server:
        yield server


@pytest.fixture(scope="session")
def days() -> list[dt.date]:
    """The last ten trading days before today (the sim has minute history for them)."""
    today = calendar.today_et()
    return calendar.trading_days(today - dt.timedelta(days=40), today - dt.timedelta(days=1))[-10:]


def base_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASSIVE_", "MESH_", "KDB_"))}
    env["MESH_DATA_DIR"] = str(data_dir)
    return env


def sim_env(sim: SimServer, data_dir: Path, **overrides: str) -> dict[str, str]:
    """Sim mode (demo key and key pair) with REST/S3 at the test sim and generous limits."""
    env = base_env(data_dir)
    env.update(
        MASSIVE_REST_URL=sim.rest_url,
        MASSIVE_S3_ENDPOINT=sim.s3_endpoint,
        MASSIVE_REST_CALLS_PER_MINUTE="1000",
        MASSIVE_REST_CALLS_PER_DAY="1000",
    )
    env.update(overrides)
    return env


def config_of(env: dict[str, str], cwd: Path) -> Config:
    return Config.load(environ=env, cwd=cwd)


@pytest.fixture
def sim_config(sim: SimServer, tmp_path: Path) -> Config:
    return config_of(sim_env(sim, tmp_path / "data"), tmp_path)
