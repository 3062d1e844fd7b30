"""`massive reconcile` from the shell: the table, the spans in New York time, exit codes, one-line errors."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mesh import calendar
from mesh.sim.server import SimServer
from tests.fetcher.conftest import sim_env
from tests.fetcher.recordings import et_ns, rewrite, write_recording
from tests.fetcher.test_cli_service import massive


@pytest.fixture(scope="module")
def day(days: list[dt.date]) -> dt.date:
    return days[-2]


def test_the_table_shows_each_symbol_and_kind_and_the_missing_span_in_new_york_time(
    sim: SimServer, tmp_path: Path, day: dt.date
) -> None:
    env = sim_env(sim, tmp_path / "data")
    folder = write_recording(tmp_path / "data", "s", day, "10:00", "10:04", ("AAPL", "SPY"))
    before = rewrite(folder, "quotes")
    times = before.column("ts_event").cast(pa.int64()).to_numpy()
    spy = np.array(before.column("symbol").to_pylist()) == "SPY"
    cut = spy & (times >= et_ns(day, "10:01:00")) & (times < et_ns(day, "10:01:20"))
    rewrite(folder, "quotes", keep=~cut)
    done = massive(env, "reconcile", "s")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].split() == [
        "symbol", "kind", "recorded", "at", "Massive", "matched", "missing", "extra", "differing", "complete",
    ]  # fmt: skip
    rows = {tuple(line.split()[:2]): line.split() for line in lines[2:6]}
    assert set(rows) == {(s, k) for s in ("AAPL", "SPY") for k in ("trades", "quotes")}
    assert rows[("SPY", "quotes")][5] == f"{int(cut.sum()):,}"
    assert rows[("AAPL", "trades")][-1] == "100.00%"
    first = times[cut].min() // 1_000_000
    shown = dt.datetime.fromtimestamp(first / 1000, calendar.ET)
    (span,) = [line for line in lines if line.startswith("  SPY quotes")]
    assert span.split()[2].startswith(shown.strftime("%H:%M:%S.") + f"{first % 1000:03d}–10:01:")
    assert f"{int(cut.sum()):,} row(s)" in span
    assert lines[-1].startswith(f"incomplete: {int(cut.sum()):,} row(s) missing, 0 differing")
    assert "method: rest (auto: small span" in done.stderr
    stored = json.loads((folder / "audit.json").read_text())["reconciliation"]
    as_json = massive(env, "reconcile", "s", "--json")
    assert json.loads(as_json.stdout)["results"] == stored["results"]


def test_dry_run_prints_the_cost_and_a_plan_that_does_not_fit_exits_1(
    sim: SimServer, tmp_path: Path, day: dt.date
) -> None:
    write_recording(tmp_path / "data", "s", day, "10:00", "10:01", ("AAPL",))
    env = sim_env(sim, tmp_path / "data")
    dry = massive(env, "reconcile", "s", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "cost      at least 2 REST call(s)" in dry.stdout
    assert not (tmp_path / "data" / "recordings" / "s" / "audit.json").exists()
    plan = json.loads(massive(env, "reconcile", "s", "--dry-run", "--json").stdout)
    assert (plan["method"], plan["rest_calls"], plan["fits"]) == ("rest", 2, True)
    tight = sim_env(sim, tmp_path / "data", MASSIVE_REST_CALLS_PER_DAY="1")
    refused = massive(tight, "reconcile", "s", "--method", "rest")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].startswith("massive: quota: ")
    assert "at least 2 REST call(s) needed but 1 left today" in refused.stderr
    assert massive(tight, "reconcile", "s", "--method", "rest", "--dry-run").returncode == 1
    foreign = massive(env, "reconcile", "s", "--symbols", "AAPL,TSLA", "--dry-run")
    assert foreign.returncode == 2
    assert "TSLA: not a symbol of s (it has AAPL)" in foreign.stderr


def test_unknown_session_and_bad_usage(sim: SimServer, tmp_path: Path) -> None:
    env = sim_env(sim, tmp_path / "data")
    unknown = massive(env, "reconcile", "nosuch")
    assert unknown.returncode == 1
    assert unknown.stderr.strip().startswith("massive: no dataset 'nosuch'")
    assert len(unknown.stderr.strip().splitlines()) == 1
    assert massive(env, "reconcile", "nosuch", "--method", "ftp").returncode == 2
    assert massive(env, "reconcile", "nosuch", "--symbols", ",").returncode == 2
