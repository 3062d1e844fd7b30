"""Datasets damaged the ways a careless hand or a crashed tool leaves them: one line, never a traceback.

Each damage below is made to a dataset named `bad` in an otherwise healthy data folder, and every
command that takes a dataset is run on it in this process (so any exception fails the test):
`data list` and `data list --json` list it as damaged, `data show`, `backtest`, `kdb load` (to a
closed port on 127.0.0.1) and `data migrate` refuse it with the same line, which starts with the
file at fault. Rows without a symbol or the time that orders them are found from the footer's
statistics when it has them; NaN times, and nulls in a file written without statistics, are named
when the rows are read: by `backtest`, `migrate` and `read_table`.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mesh import cli, datasets
from mesh.datasets import DatasetError, Problem
from mesh.intervals import DAY
from tests.conftest import free_port
from tests.datasets.helpers import V1_RECORDING, bars, copy_v1, write_historical


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MESH_DATA_DIR", str(tmp_path / "data"))
    for var in ("KDB_TICKERPLANT", "MASSIVE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    data = copy_v1(tmp_path / "data")
    write_historical(data, "good", DAY)
    return data


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err


def historical(data_dir: Path, table: pa.Table | None = None) -> Path:
    folder = write_historical(data_dir, "bad", DAY)
    if table is not None:
        pq.write_table(table, folder / "bars_1d.parquet")
    return folder


def edit_manifest(folder: Path, **changes: object) -> Path:
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), **changes}))
    return manifest


def recording(data_dir: Path) -> Path:
    folder = data_dir / "recordings" / "bad"
    (data_dir / "recordings" / V1_RECORDING).rename(folder)
    return folder


def column_as(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


# --- damage a reader sees when it opens the dataset -----------------------------------------------
# each maker damages `bad` and returns (the file the line starts with, what the line then says)


def prices_stored_as_text(data_dir: Path) -> tuple[Path, str]:
    table = bars(interval=DAY)
    table = column_as(table, "close", table.column("close").cast(pa.string()))
    folder = historical(data_dir, table)
    return folder / "bars_1d.parquet", "wrong column types: close is string (expected a number)"


def bar_starts_stored_as_text(data_dir: Path) -> tuple[Path, str]:
    table = bars(interval=DAY)
    table = column_as(table, "ts_start", pa.array(["yesterday"] * table.num_rows))
    folder = historical(data_dir, table)
    return (
        folder / "bars_1d.parquet",
        "wrong column types: ts_start is string (expected a timestamp or a number)",
    )


def quote_prices_stored_as_text(data_dir: Path) -> tuple[Path, str]:
    part = recording(data_dir) / "quotes" / "part-000001.parquet"
    table = pq.read_table(part)
    pq.write_table(column_as(table, "bid_price", pa.array(["x"] * table.num_rows)), part)
    return part, "wrong column types: bid_price is string (expected a number)"


def trade_times_stored_as_text(data_dir: Path) -> tuple[Path, str]:
    part = recording(data_dir) / "trades" / "part-000001.parquet"
    table = pq.read_table(part)
    pq.write_table(column_as(table, "ts_event", pa.array(["noon"] * table.num_rows)), part)
    return part, "wrong column types: ts_event is string (expected a timestamp or a number)"


def a_zero_byte_parquet_file(data_dir: Path) -> tuple[Path, str]:
    part = recording(data_dir) / "quotes" / "part-000002.parquet"
    part.write_bytes(b"")
    return part, "not a readable Parquet file (truncated or overwritten?): "


def a_part_file_that_is_a_folder(data_dir: Path) -> tuple[Path, str]:
    part = recording(data_dir) / "trades" / "part-000002.parquet"
    part.mkdir()
    return part, "not a Parquet file: a folder"


def a_listed_file_that_is_a_folder(data_dir: Path) -> tuple[Path, str]:
    path = historical(data_dir) / "bars_1d.parquet"
    path.unlink()
    path.mkdir()
    return path, "listed in manifest.json, but not a file: a folder"


def a_listed_file_that_is_a_link_loop(data_dir: Path) -> tuple[Path, str]:
    path = historical(data_dir) / "bars_1d.parquet"
    path.unlink()
    os.symlink(path.name, path)
    return path, "listed in manifest.json, but not a file: a symbolic link that leads nowhere"


def a_listed_file_that_is_a_dangling_link(data_dir: Path) -> tuple[Path, str]:
    path = historical(data_dir) / "bars_1d.parquet"
    path.unlink()
    os.symlink(data_dir / "gone.parquet", path)
    return path, "listed in manifest.json, but not a file: a symbolic link that leads nowhere"


def a_file_listed_twice(data_dir: Path) -> tuple[Path, str]:
    folder = historical(data_dir)
    manifest = edit_manifest(folder, files=["bars_1d.parquet", "bars_1d.parquet"])
    return manifest, "lists 'bars_1d.parquet' twice"


def a_listed_name_with_a_nul_byte(data_dir: Path) -> tuple[Path, str]:
    manifest = edit_manifest(historical(data_dir), files=["bars\x00.parquet"])
    return manifest, "lists 'bars\\x00.parquet', which is not a file inside the dataset folder"


def a_listed_name_that_climbs_out(data_dir: Path) -> tuple[Path, str]:
    manifest = edit_manifest(historical(data_dir), files=["../good/bars_1d.parquet"])
    return (
        manifest,
        "lists '../good/bars_1d.parquet', which is not a file inside the dataset folder",
    )


def files_that_is_not_a_list(data_dir: Path) -> tuple[Path, str]:
    manifest = edit_manifest(historical(data_dir), files="bars_1d.parquet")
    return manifest, "`files` is not a list of file names"


def a_manifest_that_is_a_list(data_dir: Path) -> tuple[Path, str]:
    manifest = historical(data_dir) / "manifest.json"
    manifest.write_text("[1, 2]")
    return manifest, "not a JSON object"


def a_number_where_text_belongs(data_dir: Path) -> tuple[Path, str]:
    manifest = edit_manifest(historical(data_dir), interval=5)
    return manifest, "`interval` is 5, expected text"


def a_kind_that_is_a_number(data_dir: Path) -> tuple[Path, str]:
    manifest = edit_manifest(historical(data_dir), kind=3)
    return manifest, "`kind` is 3, expected text"


def symbols_that_are_numbers(data_dir: Path) -> tuple[Path, str]:
    manifest = edit_manifest(historical(data_dir), symbols=[1, 2])
    return manifest, "`symbols` is [1, 2], expected a list of tickers"


def a_gap_count_that_is_text(data_dir: Path) -> tuple[Path, str]:
    manifest = edit_manifest(recording(data_dir), gaps_total="x")
    return manifest, '`gaps_total` is "x", expected a count (a whole number, 0 or more)'


def a_bar_time_beyond_int64(data_dir: Path) -> tuple[Path, str]:
    manifest = edit_manifest(historical(data_dir), first_bar_ns=2**63 + 5)
    return manifest, f"`first_bar_ns` is {2**63 + 5}, expected a time in ns since the epoch"


def a_huge_event_time(data_dir: Path) -> tuple[Path, str]:
    manifest = edit_manifest(recording(data_dir), last_event_ns=10**40)
    return manifest, "not valid JSON (a number of 41 digits)"


def a_schema_version_of_text(data_dir: Path) -> tuple[Path, str]:
    manifest = edit_manifest(historical(data_dir), schema_version="abc")
    return manifest, 'schema_version "abc" is not a version number'


def a_schema_version_of_null(data_dir: Path) -> tuple[Path, str]:
    manifest = edit_manifest(historical(data_dir), schema_version=None)
    return manifest, "schema_version null is not a version number"


def a_negative_schema_version(data_dir: Path) -> tuple[Path, str]:
    manifest = edit_manifest(historical(data_dir), schema_version=-1)
    return manifest, "schema_version -1 is not a version number"


def a_schema_version_from_the_future(data_dir: Path) -> tuple[Path, str]:
    manifest = edit_manifest(historical(data_dir), schema_version=99)
    return manifest, "schema_version 99 is newer than this massive reads (2): upgrade massive-mesh"


def rows_without_a_symbol(data_dir: Path) -> tuple[Path, str]:
    table = bars(interval=DAY)
    table = column_as(table, "symbol", pa.nulls(table.num_rows, pa.string()))
    return historical(data_dir, table) / "bars_1d.parquet", "symbol is null in 10 of 10 rows"


def quotes_without_a_time(data_dir: Path) -> tuple[Path, str]:
    part = recording(data_dir) / "quotes" / "part-000001.parquet"
    table = pq.read_table(part)
    kind = table.schema.field("ts_event").type
    pq.write_table(column_as(table, "ts_event", pa.nulls(table.num_rows, kind)), part)
    return part, "ts_event is null in 120 of 120 rows"


def trades_without_a_receipt_time(data_dir: Path) -> tuple[Path, str]:
    part = recording(data_dir) / "trades" / "part-000001.parquet"
    table = pq.read_table(part)
    kind = table.schema.field("ts_recv").type
    pq.write_table(column_as(table, "ts_recv", pa.nulls(table.num_rows, kind)), part)
    return part, "ts_recv is null in 60 of 60 rows"


def a_number_of_five_thousand_digits(data_dir: Path) -> tuple[Path, str]:
    manifest = historical(data_dir) / "manifest.json"
    manifest.write_text('{"kind": "historical", "schema_version": ' + "9" * 5000 + "}")
    return manifest, "not valid JSON (a number of 5,000 digits)"


def a_number_beyond_64_bits(data_dir: Path) -> tuple[Path, str]:
    manifest = edit_manifest(historical(data_dir), rows=10**19 * 2)
    return manifest, f"not valid JSON ({10**19 * 2} does not fit in 64 bits)"


def a_manifest_nested_40_deep(data_dir: Path) -> tuple[Path, str]:
    nested: list[object] = []
    for _ in range(39):
        nested = [nested]
    manifest = edit_manifest(historical(data_dir), extra=nested)
    return manifest, "nested more than 32 levels deep"


OPEN_DAMAGE: list[Callable[[Path], tuple[Path, str]]] = [
    prices_stored_as_text,
    bar_starts_stored_as_text,
    quote_prices_stored_as_text,
    trade_times_stored_as_text,
    a_zero_byte_parquet_file,
    a_part_file_that_is_a_folder,
    a_listed_file_that_is_a_folder,
    a_listed_file_that_is_a_link_loop,
    a_listed_file_that_is_a_dangling_link,
    a_file_listed_twice,
    a_listed_name_with_a_nul_byte,
    a_listed_name_that_climbs_out,
    files_that_is_not_a_list,
    a_manifest_that_is_a_list,
    a_number_where_text_belongs,
    a_kind_that_is_a_number,
    symbols_that_are_numbers,
    a_gap_count_that_is_text,
    a_bar_time_beyond_int64,
    a_huge_event_time,
    a_schema_version_of_text,
    a_schema_version_of_null,
    a_negative_schema_version,
    a_schema_version_from_the_future,
    rows_without_a_symbol,
    quotes_without_a_time,
    trades_without_a_receipt_time,
    a_number_of_five_thousand_digits,
    a_number_beyond_64_bits,
    a_manifest_nested_40_deep,
]


@pytest.mark.parametrize("damage", OPEN_DAMAGE, ids=lambda f: f.__name__)
def test_every_command_names_the_damaged_file_in_one_line(
    damage: Callable[[Path], tuple[Path, str]],
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    at_fault, what = damage(data_dir)
    with pytest.raises(DatasetError) as caught:
        datasets.resolve("bad", data_dir)
    line = str(caught.value)
    assert caught.value.problem is Problem.DAMAGED
    assert line.startswith(f"{at_fault}: {what}") and "\n" not in line

    code, out, _ = run(["data", "list"], capsys)
    assert code == 1 and f"DAMAGED: {line}" in out
    assert "good " in out  # the healthy datasets are still listed
    code, out, _ = run(["data", "list", "--json"], capsys)
    listed = {d["name"]: d for d in json.loads(out)}
    assert code == 1 and listed["bad"]["error"] == line and listed["good"]["error"] is None
    for argv, prefix in (
        (["data", "show", "bad"], "massive: "),
        (["backtest", "bad", "--strategy", "ma-crossover", "--no-save"], "massive: "),
        (["kdb", "load", "bad", "--target", f"127.0.0.1:{free_port()}"], "massive kdb load: "),
        (["data", "migrate", "bad"], "massive: "),
    ):
        code, _, err = run(argv, capsys)
        assert (code, err) == (1, f"{prefix}{line}\n"), argv
    code, out, _ = run(["data", "migrate", "--all"], capsys)
    assert code == 1 and f"bad: not migrated: {line}\n" in out


# --- damage only the rows show (nulls the footer does not count, NaN) --------------------------


def bar_starts_that_are_nan(data_dir: Path) -> tuple[Path, str]:
    table = bars(interval=DAY)
    table = column_as(table, "ts_start", pa.array([float("nan")] * table.num_rows))
    return historical(
        data_dir, table
    ) / "bars_1d.parquet", "ts_start is null or NaN in 10 of 10 rows"


def symbols_missing_from_a_file_without_statistics(data_dir: Path) -> tuple[Path, str]:
    table = bars(interval=DAY)
    table = column_as(table, "symbol", pa.array(["AAA"] * 7 + [None] * 3, pa.string()))
    folder = historical(data_dir)
    pq.write_table(table, folder / "bars_1d.parquet", write_statistics=False)
    return folder / "bars_1d.parquet", "symbol is null in 3 of 10 rows"


BACKTEST = ["backtest", "bad", "--strategy", "ma-crossover", "--no-save"]
MIGRATE = ["data", "migrate", "bad"]  # rewrites a historical dataset's bars, not a recording's


@pytest.mark.parametrize(
    ("damage", "readers"),
    [
        (bar_starts_that_are_nan, [BACKTEST, MIGRATE]),
        (symbols_missing_from_a_file_without_statistics, [BACKTEST, MIGRATE]),
    ],
    ids=lambda f: getattr(f, "__name__", ""),
)
def test_rows_without_their_symbol_or_time_that_the_footer_misses_are_named_when_read(
    damage: Callable[[Path], tuple[Path, str]],
    readers: list[list[str]],
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    at_fault, what = damage(data_dir)
    line = f"{at_fault}: {what}"
    dataset = datasets.resolve("bad", data_dir)
    table = next(t for t in dataset.tables.values() if at_fault in t.files)
    with pytest.raises(DatasetError) as caught:
        datasets.read_table(table)
    assert str(caught.value) == line
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from NaN times on the way
        code, _, _ = run(["data", "list"], capsys)
        assert code == 0
        for argv in readers:
            code, _, err = run(argv, capsys)
            assert (code, err) == (1, f"massive: {line}\n"), argv


# --- names and folders ------------------------------------------------------------------------------


def test_a_dataset_folder_that_is_a_file_is_named(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stray = data_dir / "historical" / "bad"
    stray.write_text("not a dataset")
    code, _, err = run(["data", "show", "bad"], capsys)
    assert (code, err) == (1, f"massive: {stray}: not a dataset folder: a file\n")
    code, out, _ = run(["data", "list"], capsys)
    assert code == 0 and "bad" not in out  # a stray file is not listed as a dataset


def test_a_dataset_folder_that_is_a_link_loop_is_named(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loop = data_dir / "recordings" / "bad"
    os.symlink(loop.name, loop)
    code, _, err = run(["backtest", "bad", "--strategy", "ma-crossover", "--no-save"], capsys)
    assert (code, err) == (
        1,
        f"massive: {loop}: not a dataset folder: a symbolic link that leads nowhere (or loops)\n",
    )
    code, _, _ = run(["data", "list"], capsys)
    assert code == 0


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("x" * 10_000, "a dataset name is at most 255 bytes"),
        ("é" * 200, "a dataset name is at most 255 bytes"),
        ("recording:" + "x" * 300, "a dataset name is at most 255 bytes"),
        ("historical:..", "a dataset name has no path separators"),
        ("a\x00b", "a dataset name has no NUL characters"),
    ],
    ids=["10k-characters", "unicode-over-255-bytes", "prefixed-too-long", "dot-dot", "nul"],
)
def test_a_name_no_folder_can_have_is_not_found_in_one_line(
    name: str, why: str, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(DatasetError) as caught:
        datasets.resolve(name, data_dir)
    assert caught.value.problem is Problem.NOT_FOUND
    line = str(caught.value)
    assert why in line and "\n" not in line and len(line) <= 400
    code, _, err = run(["data", "show", name], capsys)
    assert code == 1 and err.count("\n") == 1 and why in err


def test_a_path_too_long_for_the_file_system_is_not_found(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["data", "show", "exports/" + "x" * 10_000], capsys)
    assert code == 1 and err.startswith("massive: no dataset at exports/xxx")
    assert err.endswith(": no such file or folder\n") and err.count("\n") == 1


def test_an_empty_name_is_bad_usage(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["data", "show", ""], ["data", "show", "  "], ["data", "migrate", ""]):
        code, _, err = run(argv, capsys)
        assert code == 2 and err.count("\n") == 1 and "NAME" in err, argv


def test_a_data_folder_that_does_not_exist_is_said(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError, match=r"/nowhere/historical, not a path; the data folder does not exist"
    ):
        datasets.resolve("demo", tmp_path / "nowhere")
    assert datasets.list_datasets(tmp_path / "nowhere") == []


def test_a_current_dataset_with_a_stale_manifest_is_brought_to_the_layout(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit_manifest(data_dir / "historical" / "good", interval="1y")
    code, out, _ = run(["data", "migrate", "good"], capsys)
    assert code == 0
    assert out.splitlines()[0] == "good: brought to the current layout (version 2)"
    manifest = json.loads((data_dir / "historical" / "good" / "manifest.json").read_text())
    assert manifest["interval"] == "1d"
