"""Recording to shared object storage: an s3:// location on a real S3 protocol server (moto)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
from moto.server import ThreadedMotoServer

from mesh.recorder import recovery
from mesh.recorder.replay import replay_events
from mesh.recorder.session import Session
from mesh.recording import read_recording
from tests.conftest import free_port
from tests.recorder.helpers import quotes, trades


@pytest.fixture
def s3_uri(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "test-key",
        "AWS_SECRET_ACCESS_KEY": "test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(key, value)
    boto3.client(
        "s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1"
    ).create_bucket(Bucket="team-data")
    yield f"s3://team-data/recordings?endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
    server.stop()


def test_session_promotes_to_s3_and_readers_find_it_there(tmp_path: Path, s3_uri: str) -> None:
    session = Session("remote", data_dir=tmp_path, output=s3_uri).open()
    for i in range(4):
        session.write("quotes", quotes(i * 250, 250))
        session.write("trades", trades(i * 25, 25))
        session.rotate()
        session.promote_pending()
    status = session.stop()
    assert status["location"] == "s3://team-data/recordings/remote"
    fs, root = pafs.FileSystem.from_uri(s3_uri)
    quotes_ds = ds.dataset(f"{root}/remote/quotes", filesystem=fs, format="parquet")
    assert sorted(quotes_ds.to_table().column("sequence").to_pylist()) == list(range(1000))
    manifest = json.loads(fs.open_input_stream(f"{root}/remote/manifest.json").read())
    assert (
        manifest["rows"]["quotes"] == 1000
        and manifest["rows"]["trades"] == 100
        and manifest["clean"]
    )
    base, query = s3_uri.split("?")
    session_uri = f"{base}/remote?{query}"
    assert sorted(read_recording(session_uri, "trades")["sequence"]) == list(range(100))
    assert sum(1 for _ in replay_events(session_uri)) == 1100
    assert not (
        tmp_path / "recordings" / "remote" / "wal"
    ).exists()  # the log stayed local and is done


def test_crash_with_s3_output_recovers_from_the_local_log(tmp_path: Path, s3_uri: str) -> None:
    session = Session("remote2", data_dir=tmp_path, output=s3_uri).open()
    session.write("quotes", quotes(0, 300))
    session.wal._closed.set()  # kill -9: nothing promoted, the segment still open
    assert recovery.pending(tmp_path) == ["remote2"]
    done = recovery.recover(tmp_path, "remote2")
    assert done.rows == 300 and done.resume
    fs, root = pafs.FileSystem.from_uri(s3_uri)
    table = ds.dataset(f"{root}/remote2/quotes", filesystem=fs, format="parquet").to_table()
    assert sorted(table.column("sequence").to_pylist()) == list(range(300))
    manifest = json.loads(fs.open_input_stream(f"{root}/remote2/manifest.json").read())
    assert manifest["clean"] is False and manifest["gaps"][0]["kind"] == "recorder"
