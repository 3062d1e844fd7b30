"""`massive data migrate --all` killed with SIGKILL at random moments: every reader still opens
every dataset with all its rows, and running it again finishes the job.

The data folder holds the kept version-1 recording, a version-1 fetch enlarged so that rewriting
it takes a moment, a version-1 backfill (`trades.parquet`, `quotes.parquet`), and a version-1 fetch
whose manifest was edited by hand to list no files. Each run is a real `massive` process, killed
at a random delay after it is ready to work; every fifth run (and any run after one that
finished) starts again from version 1, so the kills land in every phase (new files written,
manifest replaced, old files deleted) and runs that resume an interrupted one are killed too.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mesh import datasets
from mesh.datasets import migration
from mesh.datasets.atomic import write_json
from mesh.datasets.layout import is_hidden
from tests.datasets.helpers import V1_HISTORICAL, V1_RECORDING, copy_v1

pytestmark = pytest.mark.slow

KILLS = 20
BIG_ROWS = 600_000  # version-1 bars in the enlarged fetch
# a child that is ready to migrate (imports done) says so, then migrates every dataset
CHILD = """
import sys
import pyarrow.parquet
from mesh import cli, datasets
print("ready", flush=True)
sys.exit(cli.main(["data", "migrate", "--all"]))
"""


def enlarge_v1_fetch(folder: Path, rows: int) -> None:
    """The fixture's version-1 bars repeated on later days until there are about `rows` of them."""
    table = pq.read_table(folder / "bars.parquet")
    copies = rows // table.num_rows
    big = pa.concat_tables([table] * copies)
    start = big.schema.get_field_index("timestamp")
    day = 86_400 * 10**9
    ns = big.column(start).cast(pa.int64()).to_numpy()
    ns = ns + np.repeat(np.arange(copies, dtype=np.int64) * day, table.num_rows)
    big = big.set_column(start, "timestamp", pa.array(ns).cast(table.schema.field(start).type))
    pq.write_table(big, folder / "bars.parquet")


def version_1_data(root: Path) -> Path:
    data = copy_v1(root)
    fetched = data / "historical" / V1_HISTORICAL
    enlarge_v1_fetch(fetched, BIG_ROWS)
    unlisted = data / "historical" / "unlisted"
    shutil.copytree(data / "historical" / V1_HISTORICAL, unlisted)
    manifest = json.loads((unlisted / "manifest.json").read_text())
    del manifest["files"]  # edited by hand: the folder's files are the dataset
    (unlisted / "manifest.json").write_text(json.dumps(manifest))
    backfill = data / "historical" / "old-backfill"
    backfill.mkdir()
    recording = data / "recordings" / V1_RECORDING
    for table, copies in (("trades", 2_000), ("quotes", 1_000)):
        rows = pq.read_table(recording / table / "part-000001.parquet")
        pq.write_table(pa.concat_tables([rows] * copies), backfill / f"{table}.parquet")
    (backfill / "manifest.json").write_text(
        json.dumps(
            {
                "format": 1,
                "kind": "backfill",
                "name": "old-backfill",
                "files": ["trades.parquet", "quotes.parquet"],
            }
        )
    )
    return data


def rows_by_dataset(data: Path) -> dict[str, dict[str, int]]:
    """What every reader sees: each dataset opened, each table read in full, its rows counted."""
    seen: dict[str, dict[str, int]] = {}
    for info in datasets.list_datasets(data):
        assert info.error is None, info.error
        dataset = datasets.resolve(f"{info.kind}:{info.name}", data)
        seen[info.name] = {}
        for table in dataset.tables.values():
            read = datasets.read_table(table)
            assert read.num_rows == table.rows, (info.name, table.name)
            seen[info.name][table.name] = read.num_rows
    return seen


def migrate(data: Path, *, kill_after: float | None = None) -> tuple[int, float]:
    """(exit code, seconds from ready to exit) of one `migrate --all`, killed after `kill_after` s."""
    env = {**os.environ, "MESH_DATA_DIR": str(data), "PYKX_UNLICENSED": "true"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        env=env,
        cwd=data.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    ready = time.monotonic()
    if kill_after is not None:
        time.sleep(kill_after)
        child.send_signal(signal.SIGKILL)
    _, err = child.communicate(timeout=120)
    assert "Traceback" not in err
    return child.returncode, time.monotonic() - ready


def test_a_migration_killed_at_random_moments_leaves_every_dataset_readable(
    tmp_path: Path,
) -> None:
    original = version_1_data(tmp_path / "v1")
    expected = rows_by_dataset(original)
    data = tmp_path / "data"
    shutil.copytree(original, data)
    code, work = migrate(data)  # one whole run, imports excluded
    assert code == 0
    assert rows_by_dataset(data) == expected

    rng = random.Random(20)
    outcomes: list[int] = []
    for kill in range(KILLS):
        if kill % 5 == 0 or outcomes[-1:] == [0]:  # every fifth, and after a run that finished
            shutil.rmtree(data)
            shutil.copytree(original, data)
        outcomes.append(migrate(data, kill_after=rng.uniform(0.0, work))[0])
        assert rows_by_dataset(data) == expected, f"after kill {kill}"
    assert outcomes.count(-signal.SIGKILL) >= KILLS // 2  # most kills landed mid-run

    assert migrate(data)[0] == 0
    assert rows_by_dataset(data) == expected
    assert {i.schema_version for i in datasets.list_datasets(data)} == {2}
    assert not [p for p in data.rglob("*") if is_hidden(p.name)]  # no temporaries left
    again = subprocess.run(
        [sys.executable, "-m", "mesh.cli", "data", "migrate", "--all"],
        env={**os.environ, "MESH_DATA_DIR": str(data), "PYKX_UNLICENSED": "true"},
        cwd=data.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0
    assert all(line.endswith("nothing to do") for line in again.stdout.splitlines())


class Crash(Exception):
    pass


@pytest.mark.parametrize("kind", ["historical", "backfill"])
def test_a_manifest_listing_no_files_survives_a_crash_before_its_new_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    data = copy_v1(tmp_path)
    folder = data / "historical" / "unlisted"
    if kind == "historical":
        shutil.copytree(data / "historical" / V1_HISTORICAL, folder)
        manifest = json.loads((folder / "manifest.json").read_text())
        del manifest["files"]
    else:
        folder.mkdir()
        trades = data / "recordings" / V1_RECORDING / "trades" / "part-000001.parquet"
        shutil.copy(trades, folder / "trades.parquet")
        manifest = {"format": 1, "kind": "backfill"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    before = rows_by_dataset(data)["unlisted"]

    def crash_at_the_final_manifest(path: Path, content: dict[str, object]) -> Path:
        if content.get("schema_version") == 2:  # killed with the new files written, not listed
            raise Crash("killed")
        return write_json(path, content)

    monkeypatch.setattr(migration, "write_json", crash_at_the_final_manifest)
    with pytest.raises(Crash):
        datasets.migrate(datasets.resolve("unlisted", data))
    monkeypatch.undo()
    assert rows_by_dataset(data)["unlisted"] == before  # one version, no rows twice
    done = datasets.migrate(datasets.resolve("unlisted", data))
    assert done.from_version == 1 and rows_by_dataset(data)["unlisted"] == before
    assert datasets.resolve("unlisted", data).schema_version == 2
