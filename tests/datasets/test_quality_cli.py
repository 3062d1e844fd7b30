"""`massive data quality SESSION` and the quality line of `massive data show`: what a user sees,
and what is kept in the recording's audit.json."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mesh import cli
from mesh.datasets import audit
from mesh.datasets.audit import QualityIssue
from tests.datasets.helpers import write_historical
from tests.datasets.quality_helpers import record_day


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MESH_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err


def cross_one_quote(session: Path) -> None:
    (path,) = (session / "quotes").glob("*.parquet")
    rows = pq.read_table(path)
    bids = rows.column("bid_price").to_pylist()
    bids[5000] = rows.column("ask_price")[5000].as_py() + 0.10
    i = rows.schema.get_field_index("bid_price")
    pq.write_table(rows.set_column(i, "bid_price", pa.array(bids, pa.float64())), path)


def test_quality_prints_the_findings_and_keeps_them_in_audit_json(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session = record_day(data_dir, "day", ("AAPL",))
    cross_one_quote(session)
    code, out, _ = run(["data", "quality", "day"], capsys)
    assert code == 0
    assert out.splitlines()[0] == "day: 1 crossed quote"
    assert "AAPL       crossed_quote         1  2026-12-04" in out
    stored = audit.read_audit(session).quality
    assert stored is not None and [(f.symbol, f.issue) for f in stored.findings] == [
        ("AAPL", QualityIssue.CROSSED_QUOTE)
    ]
    code, out, _ = run(["data", "quality", "day", "--json"], capsys)
    assert code == 0 and json.loads(out)["findings"][0]["issue"] == "crossed_quote"


def test_show_gives_the_quality_and_keeps_it_for_a_finished_recording(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session = record_day(data_dir, "day", ("AAPL",))
    code, out, _ = run(["data", "show", "day"], capsys)
    assert code == 0 and "quality:        clean" in out
    assert audit.read_audit(session).quality is not None
    code, out, _ = run(["data", "show", "day", "--json"], capsys)
    assert json.loads(out)["quality"]["findings"] == []


def test_show_does_not_keep_the_quality_of_a_session_still_recording(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session = record_day(data_dir, "live", ("AAPL",))
    manifest = json.loads((session / "manifest.json").read_text())
    (session / "manifest.json").write_text(json.dumps({**manifest, "state": "recording"}))
    cross_one_quote(session)
    code, out, _ = run(["data", "show", "live"], capsys)
    assert code == 0 and "quality:        1 crossed quote" in out
    assert not (session / audit.AUDIT).exists()


def test_quality_of_a_dataset_that_is_not_a_recording_is_one_line(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_historical(data_dir, "daily")
    code, _, err = run(["data", "quality", "daily"], capsys)
    assert code == 1 and "quality is checked on recordings" in err
    code, _, err = run(["data", "quality", "nothing-here"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1
