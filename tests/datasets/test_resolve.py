"""One resolver: what a name, a prefixed name or a path means, and the one line when it means nothing."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mesh import datasets
from mesh.datasets import DatasetError, DatasetKind, Problem, TableKind
from mesh.intervals import MINUTE
from tests.datasets.helpers import V1_HISTORICAL, V1_RECORDING, bars, copy_v1, write_historical


def test_names_find_recordings_and_historical_datasets(tmp_path: Path) -> None:
    copy_v1(tmp_path)
    recording = datasets.resolve(V1_RECORDING, tmp_path)
    assert recording.kind is DatasetKind.RECORDING
    assert list(recording.tables) == [
        "quotes", "trades", "bars_1s", "bars_1m", "mid_bars_1s", "mid_bars_1m",
    ]  # fmt: skip
    history = datasets.resolve(V1_HISTORICAL, tmp_path)
    assert history.kind is DatasetKind.HISTORICAL and list(history.tables) == ["bars_5m"]
    assert datasets.resolve(f"historical:{V1_HISTORICAL}", tmp_path).path == history.path
    assert datasets.resolve(f"recording:{V1_RECORDING}", tmp_path).path == recording.path


def test_paths_open_folders_and_single_files(tmp_path: Path) -> None:
    copy_v1(tmp_path)
    folder = tmp_path / "recordings" / V1_RECORDING
    assert datasets.resolve(str(folder), tmp_path).kind is DatasetKind.RECORDING
    quotes = datasets.resolve(str(folder / "quotes"), tmp_path)
    assert quotes.kind is DatasetKind.FILE and list(quotes.tables) == ["quotes"]
    one = datasets.resolve(str(folder / "bars_1m.parquet"), tmp_path)
    assert one.kind is DatasetKind.FILE and one.bar_tables()[0].interval == MINUTE
    own = tmp_path / "mine.parquet"
    pq.write_table(bars(), own)
    mine = datasets.resolve(str(own), tmp_path)
    assert mine.name == "mine" and mine.has(TableKind.BARS)


def test_a_name_in_both_places_is_ambiguous_until_prefixed(tmp_path: Path) -> None:
    copy_v1(tmp_path)
    write_historical(tmp_path, V1_RECORDING)
    with pytest.raises(DatasetError) as caught:
        datasets.resolve(V1_RECORDING, tmp_path)
    assert caught.value.problem is Problem.AMBIGUOUS
    assert str(caught.value) == (
        f"'{V1_RECORDING}' is both a recording and a historical dataset: "
        f"say recording:{V1_RECORDING} or historical:{V1_RECORDING}"
    )
    assert datasets.resolve(f"historical:{V1_RECORDING}", tmp_path).kind is DatasetKind.HISTORICAL


def test_an_unknown_name_says_where_it_looked_and_what_there_is(tmp_path: Path) -> None:
    copy_v1(tmp_path)
    with pytest.raises(DatasetError) as caught:
        datasets.resolve("v1-recordin", tmp_path)
    assert caught.value.problem is Problem.NOT_FOUND
    message = str(caught.value)
    assert message.startswith("no dataset 'v1-recordin': not a recording in ")
    assert f"known datasets: {V1_HISTORICAL}, {V1_RECORDING}" in message and "\n" not in message
    with pytest.raises(
        DatasetError, match="no dataset at /no/such.parquet: no such file or folder"
    ):
        datasets.resolve("/no/such.parquet", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="has no recordings or historical datasets yet"):
        datasets.resolve("anything", tmp_path / "empty")
    with pytest.raises(
        DatasetError, match=r"/nowhere/historical, not a path; the data folder does not exist"
    ):
        datasets.resolve("anything", tmp_path / "nowhere")


def test_a_backfill_prefix_takes_only_backfills(tmp_path: Path) -> None:
    copy_v1(tmp_path)
    with pytest.raises(
        DatasetError, match=f"no backfill '{V1_HISTORICAL}'.*is a historical dataset"
    ):
        datasets.resolve(f"backfill:{V1_HISTORICAL}", tmp_path)
