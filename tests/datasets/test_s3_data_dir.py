"""MESH_DATA_DIR=s3://...: datasets written to and read from S3-compatible storage (a real S3
protocol server, moto, on 127.0.0.1), the way workers on other machines share them."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pytest
from moto.server import ThreadedMotoServer

from mesh import client, service, topics
from mesh.bus import Bus
from mesh.client import Publisher
from mesh.config import Config
from mesh.control import ControlError
from mesh.datasets import storage
from mesh.recorder.service import RecorderService
from mesh.sim.server import SimServer
from tests.conftest import free_port, mesh_env
from tests.fetcher import conftest as fetcher_fixtures
from tests.fetcher.conftest import sim_env
from tests.meshproc import massive
from tests.recorder.helpers import quotes, trades, wait_for

sim = fetcher_fixtures.sim  # the simulator's REST and S3, and its trading days
days = fetcher_fixtures.days
KEY_ID = "AKIDMESHTESTKEY0001"
SECRET = "mesh-test-secret-9f8e7d6c5b4a"
AWS = {
    "AWS_ACCESS_KEY_ID": KEY_ID,
    "AWS_SECRET_ACCESS_KEY": SECRET,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto S3 server with an empty bucket `team-data`; yields `127.0.0.1:PORT`.

    moto keeps its buckets in this process, shared by every server (the simulator's flat files
    too), so the bucket is emptied before and removed after, and nothing else is touched."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    for key, value in AWS.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
    empty_bucket(s3)
    s3.create_bucket(Bucket="team-data")
    yield f"127.0.0.1:{port}"
    empty_bucket(s3)
    server.stop()


def empty_bucket(s3: Any) -> None:
    try:
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="team-data").get("Contents", [])]
    except s3.exceptions.NoSuchBucket:
        return
    for key in keys:
        s3.delete_object(Bucket="team-data", Key=key)
    s3.delete_bucket(Bucket="team-data")


def data_uri(endpoint: str) -> str:
    return f"s3://team-data/mesh?endpoint_override={endpoint}&scheme=http&region=us-east-1"


def s3_env(base: dict[str, str], endpoint: str, state: Path) -> dict[str, str]:
    return {**base, **AWS, "MESH_DATA_DIR": data_uri(endpoint), "MESH_STATE_DIR": str(state)}


def bucket_objects(endpoint: str) -> dict[str, bytes]:
    s3 = boto3.client("s3", endpoint_url=f"http://{endpoint}", region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="team-data").get("Contents", [])]
    return {k: s3.get_object(Bucket="team-data", Key=k)["Body"].read() for k in keys}


def no_secret_anywhere(texts: list[str], *folders: Path, objects: dict[str, bytes]) -> None:
    for text in texts:
        assert SECRET not in text and KEY_ID not in text
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert SECRET.encode() not in data and KEY_ID.encode() not in data, path
    for key, data in objects.items():
        assert SECRET.encode() not in data and KEY_ID.encode() not in data, key


def test_history_fetched_into_s3_backtests_as_it_does_from_a_local_folder(
    sim: SimServer, days: list[dt.date], s3_server: str, tmp_path: Path
) -> None:
    fetch = ["fetch", "AAPL,MSFT", "--start", str(days[-4]), "--end", str(days[-1])]
    fetch += ["--interval", "5m", "--method", "rest", "--name", "shared", "--json"]
    test = ["backtest", "shared", "-s", "ma-crossover", "--param", "fast=3", "--param", "slow=12"]
    test += ["--json", "--no-save"]
    local_env = sim_env(sim, tmp_path / "local")
    remote_env = s3_env(sim_env(sim, tmp_path / "unused"), s3_server, tmp_path / "state")

    outputs = []
    for env in (local_env, remote_env):
        done = massive(env, *fetch)
        assert done.returncode == 0, done.stderr
        outputs += [done.stdout, done.stderr]
    fetched = json.loads(outputs[2])
    assert fetched["path"] == "s3://team-data/mesh/historical/shared"
    objects = bucket_objects(s3_server)
    assert {
        "mesh/historical/shared/manifest.json",
        "mesh/historical/shared/bars_5m.parquet",
    } <= set(objects)
    assert not (tmp_path / "unused").exists()  # nothing went to a local data folder

    results = []
    for env in (local_env, remote_env):
        done = massive(env, *test)
        assert done.returncode == 0, done.stderr
        outputs += [done.stdout, done.stderr]
        results.append(json.loads(done.stdout)["runs"][0])
    assert json.loads(done.stdout)["dataset"]["path"] == "s3://team-data/mesh/historical/shared"
    assert results[0]["metrics"] == results[1]["metrics"]
    assert results[0]["metrics"]["trades"] > 0
    assert results[0]["per_symbol"] == results[1]["per_symbol"]

    listed = massive(remote_env, "data", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [info] = json.loads(listed.stdout)
    assert info["name"] == "shared" and info["kind"] == "historical"
    assert info["path"] == "s3://team-data/mesh/historical/shared"
    assert info["symbols"] == ["AAPL", "MSFT"] and info["rows_total"] > 0
    outputs += [listed.stdout, listed.stderr]
    offered = massive(remote_env, "backtest", "--datasets", "--json")
    assert offered.returncode == 0, offered.stderr
    assert [d["path"] for d in json.loads(offered.stdout)] == [
        "s3://team-data/mesh/historical/shared"
    ]
    outputs += [offered.stdout, offered.stderr]
    no_secret_anywhere(outputs, tmp_path / "state", objects=bucket_objects(s3_server))


@pytest.mark.timeout(300)
def test_a_sweep_on_an_s3_data_dir_writes_its_table_there_and_matches_the_local_one(
    sim: SimServer, days: list[dt.date], s3_server: str, tmp_path: Path
) -> None:
    fetch = ["fetch", "AAPL,MSFT", "--start", str(days[-4]), "--end", str(days[-1])]
    fetch += ["--interval", "5m", "--method", "rest", "--name", "grid"]
    sweep = ["backtest", "grid", "-s", "ma-crossover", "--param", "fast=3,5", "--param"]
    sweep += ["slow=12,20", "--per-symbol", "--workers", "2", "--top", "1", "--json"]
    local_env = sim_env(sim, tmp_path / "local")
    remote_env = s3_env(sim_env(sim, tmp_path / "unused"), s3_server, tmp_path / "state")
    tables = []
    for env, where in ((local_env, str(tmp_path / "local")), (remote_env, data_uri(s3_server))):
        assert massive(env, *fetch).returncode == 0
        done = massive(env, *sweep, timeout=240)
        assert done.returncode == 0, done.stderr
        sweep_id = json.loads(done.stdout)["sweep_id"]
        assert json.loads(done.stdout)["dataset"]["path"].startswith(where.partition("?")[0])
        results = storage.Location(where).join("sweeps", sweep_id, "results.parquet")
        tables.append(storage.read_table(results))
    assert tables[0].num_rows == 2 * 2 * 2
    assert tables[1].equals(tables[0])
    assert f"mesh/sweeps/{sweep_id}/sweep.json" in bucket_objects(s3_server)

    listed = massive(remote_env, "backtest", "--sweeps", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(d["sweep_id"], d["state"], d["done"]) for d in json.loads(listed.stdout)] == [
        (sweep_id, "done", 8)
    ]
    shown = massive(remote_env, "backtest", "--sweep", sweep_id, "--symbol", "MSFT", "--json")
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)["rows"]) == 4
    no_secret_anywhere(
        [listed.stdout, shown.stdout, shown.stderr],
        tmp_path / "state",
        objects=bucket_objects(s3_server),
    )


def test_a_refetch_under_the_same_name_replaces_the_s3_dataset_and_readers_see_the_new_one(
    sim: SimServer, days: list[dt.date], s3_server: str, tmp_path: Path
) -> None:
    env = s3_env(sim_env(sim, tmp_path / "unused"), s3_server, tmp_path / "state")
    span = ["--start", str(days[-3]), "--end", str(days[-1]), "--method", "rest", "--name", "d"]
    assert massive(env, "fetch", "AAPL", "--interval", "5m", *span).returncode == 0
    assert massive(env, "data", "show", "d").returncode == 0  # a local copy now holds bars_5m
    done = massive(env, "fetch", "AAPL", "--interval", "15m", *span)
    assert done.returncode == 0, done.stderr
    assert [k for k in bucket_objects(s3_server) if "bars_" in k] == [
        "mesh/historical/d/bars_15m.parquet"
    ]
    shown = massive(env, "data", "show", "d", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["tables"] == ["bars_15m"]


# --- a recording made with MESH_DATA_DIR=s3:// ---------------------------------------------------


@pytest.fixture
def mesh_environ(tmp_path: Path, s3_server: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASSIVE_", "MESH_", "KDB_"))}
    env.update(mesh_env(tmp_path / "unused"))
    return s3_env(env, s3_server, tmp_path / "state")


@pytest.fixture
async def recorder(
    bus: Bus, mesh_config: Config, mesh_environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RecorderService]:
    for key, value in mesh_environ.items():
        monkeypatch.setenv(key, value)
    svc = RecorderService(mesh_config, slice_seconds=0.3)
    task = asyncio.create_task(service._amain(svc, "recorder"))
    await asyncio.to_thread(wait_for, lambda: _up(mesh_config))
    yield svc
    svc.runtime.stopping.set()  # type: ignore[union-attr]
    await asyncio.wait_for(task, 10)


def _up(config: Config) -> bool:
    try:
        return client.call("recorder", "ping", config=config, timeout=0.5) == "pong"
    except ControlError:
        return False


def publish(config: Config, batches: list[Any], topic: str) -> None:
    with Publisher("testpub", config.bus_pub) as pub:
        time.sleep(0.3)  # the bus forwards our subscribers' subscriptions to this new publisher
        for batch in batches:
            pub.publish(topic, batch)


async def test_a_recording_made_with_an_s3_data_dir_is_listed_and_read_by_massive_data(
    recorder: RecorderService,
    mesh_config: Config,
    mesh_environ: dict[str, str],
    s3_server: str,
    tmp_path: Path,
) -> None:
    env = mesh_environ
    started = await asyncio.to_thread(massive, env, "record", "start", "remote")
    assert started.returncode == 0, started.stderr
    await asyncio.sleep(0.3)  # the recorder's subscription reaches the bus
    await asyncio.gather(
        asyncio.to_thread(
            publish, mesh_config, [quotes(i * 500, 500) for i in range(4)], topics.quotes()
        ),
        asyncio.to_thread(
            publish, mesh_config, [trades(i * 100, 100) for i in range(3)], topics.trades()
        ),
    )
    await asyncio.to_thread(
        wait_for,
        lambda: (
            recorder.session is not None
            and recorder.session.rows["quotes"] == 2000
            and recorder.session.rows["trades"] == 300
        ),
    )
    # the write-ahead log is in the local state folder while it records
    assert (tmp_path / "state" / "recordings" / "remote" / "wal").is_dir()
    stopped = await asyncio.to_thread(massive, env, "record", "stop", "--json")
    assert stopped.returncode == 0, stopped.stderr
    assert (
        json.loads(stopped.stdout)["session"]["location"] == "s3://team-data/mesh/recordings/remote"
    )

    objects = bucket_objects(s3_server)
    assert "mesh/recordings/remote/manifest.json" in objects
    assert not any("/wal/" in key for key in objects)
    listed = await asyncio.to_thread(massive, env, "data", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [info] = json.loads(listed.stdout)
    assert info["name"] == "remote" and info["kind"] == "recording"
    assert info["rows"]["quotes"] == 2000 and info["rows"]["trades"] == 300
    assert info["path"] == "s3://team-data/mesh/recordings/remote"
    shown = await asyncio.to_thread(massive, env, "data", "show", "recording:remote")
    assert shown.returncode == 0, shown.stderr
    assert "s3://team-data/mesh/recordings/remote" in shown.stdout and "quotes" in shown.stdout
    no_secret_anywhere(
        [started.stdout, started.stderr, stopped.stdout, listed.stdout, shown.stdout, shown.stderr],
        tmp_path / "state",
        objects=objects,
    )


# --- what cannot work ------------------------------------------------------------------------------


def test_an_unreachable_s3_endpoint_is_one_line_naming_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASSIVE_", "MESH_", "KDB_"))}
    env = s3_env(env, f"127.0.0.1:{free_port()}", tmp_path / "state")
    for argv in (["data", "list"], ["data", "show", "x"], ["backtest", "x", "-s", "buy-and-hold"]):
        started = time.monotonic()
        done = massive(env, *argv)
        assert done.returncode == 1, (argv, done.stdout, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
        assert "s3://team-data/mesh" in done.stderr and "MESH_DATA_DIR" in done.stderr
        assert SECRET not in done.stderr and KEY_ID not in done.stderr
        assert time.monotonic() - started < 60
    done = massive(env, "fetch", "AAPL", "--start", "2024-06-03", "--end", "2024-06-04")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "cannot reach s3://team-data/mesh" in done.stderr and "nothing was spent" in done.stderr


def test_keys_in_the_uri_and_local_only_commands_are_refused_with_one_line(
    s3_server: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASSIVE_", "MESH_", "KDB_"))}
    env = s3_env(env, s3_server, tmp_path / "state")
    keyed = {**env, "MESH_DATA_DIR": data_uri(s3_server) + f"&secret_key={SECRET}"}
    done = massive(keyed, "data", "list")
    assert done.returncode != 0 and done.stderr.count("\n") == 1, done.stderr
    assert "AWS_SECRET_ACCESS_KEY" in done.stderr and SECRET not in done.stderr
    done = massive(env, "data", "migrate", "--all")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "local data folder" in done.stderr and "s3://team-data/mesh" in done.stderr
    for argv in (["data", "show", "nope"], ["backtest", "nope", "-s", "buy-and-hold"]):
        done = massive(env, *argv)
        assert done.returncode == 1 and done.stderr.count("\n") == 1, (argv, done.stderr)
        assert "not a recording in s3://team-data/mesh/recordings" in done.stderr
        assert str(tmp_path / "state") not in done.stderr
    for argv in (["reconcile", "demo"], ["heal", "demo"]):
        done = massive(env, *argv)
        assert done.returncode != 0 and done.stderr.count("\n") == 1, (argv, done.stderr)
        assert "needs a local data folder" in done.stderr and "Traceback" not in done.stderr
        assert "s3://team-data/mesh" in done.stderr and "endpoint_override" not in done.stderr
    shown = massive(env, "config", "--json")
    assert shown.returncode == 0, shown.stderr
    variables = json.loads(shown.stdout)["variables"]
    assert variables["MESH_DATA_DIR"]["value"].startswith("s3://team-data/mesh")
    assert variables["MESH_STATE_DIR"]["value"] == str(tmp_path / "state")


def test_sweep_results_round_trip_through_a_location(s3_server: str) -> None:
    where = storage.Location(data_uri(s3_server)).join("sweeps", "abc123", "results.parquet")
    table = pa.table({"run": [0, 1], "sharpe": [1.5, -0.25], "symbol": ["portfolio"] * 2})
    assert storage.write_table(where, table) > 0
    assert storage.read_table(where).equals(table)
    assert "mesh/sweeps/abc123/results.parquet" in bucket_objects(s3_server)
    with pytest.raises(FileNotFoundError):
        storage.read_table(storage.Location(data_uri(s3_server)).join("sweeps", "nope.parquet"))


def test_with_an_s3_data_dir_what_needs_a_disk_defaults_to_local_state_under_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = Config.load(environ={"MESH_DATA_DIR": "s3://team-data/mesh"}, cwd=tmp_path)
    state = tmp_path / "home" / ".local" / "state" / "massive-mesh"
    assert config.data_remote and config.data_dir == state and state.is_dir()
    assert config.data_location == "s3://team-data/mesh"
    local = Config.load(environ={"MESH_DATA_DIR": str(tmp_path / "d")}, cwd=tmp_path)
    assert not local.data_remote and local.data_location == str(tmp_path / "d")
