"""Fixtures of the backtester tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.backtest.sweep_helpers import write_sweep_data


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """MESH_DATA_DIR with a few days of 1-minute bars of three symbols (`mins`) and a user
    strategy file; the working folder is its parent."""
    return write_sweep_data(tmp_path, monkeypatch)
