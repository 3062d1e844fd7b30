"""Redaction shows whether a secret is set, never its value, its length or its first characters."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from mesh.config import REDACTED, Config, KdbTarget, Secret
from tests.conftest import mesh_env

# distinctive values of distinctive lengths (the lengths appear nowhere else in the output)
API_KEY = "QZX7-api-" + "k" * 38  # 47 characters
S3_SECRET = "QZX8-s3-" + "s" * 53  # 61 characters
KDB_PASSWORD = "QZX9pw" + "p" * 77  # 83 characters
SECRETS = {API_KEY: 47, S3_SECRET: 61, KDB_PASSWORD: 83}


def massive_config(tmp_path: Path, *argv: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASSIVE_", "MESH_", "KDB_"))}
    env.update(mesh_env(tmp_path / "data"))
    env.update(
        {
            "MASSIVE_API_KEY": API_KEY,
            "MASSIVE_S3_ACCESS_KEY_ID": "QZX6-access-id",
            "MASSIVE_S3_SECRET_ACCESS_KEY": S3_SECRET,
            "KDB_TICKERPLANT": f"127.0.0.1:5010:alice:{KDB_PASSWORD}",
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "mesh.cli", "config", *argv],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def assert_nothing_about_the_secrets(shown: str, tmp_path: Path) -> None:
    assert "QZX" not in shown, shown  # no value, and no prefix of one
    text = shown.replace(str(tmp_path), "")  # the data folder's path may hold any number
    for value, length in SECRETS.items():
        assert value not in text
        assert not re.search(rf"(?<![\d.:]){length}(?![\d.:])", text), (
            f"the length {length} shows:\n{text}"
        )
    assert "chars" not in text and "characters" not in text and "len" not in text.lower()


def test_massive_config_says_each_secret_is_set_and_nothing_more(tmp_path: Path) -> None:
    shown = massive_config(tmp_path)
    assert_nothing_about_the_secrets(shown, tmp_path)
    rows = {line.split()[0]: line for line in shown.splitlines() if line.strip()}
    for var in ("MASSIVE_API_KEY", "MASSIVE_S3_ACCESS_KEY_ID", "MASSIVE_S3_SECRET_ACCESS_KEY"):
        assert rows[var].split()[1] == REDACTED, rows[var]
    assert f"alice:{REDACTED}@127.0.0.1:5010" in rows["KDB_TICKERPLANT"]


def test_massive_config_json_says_each_secret_is_set_and_nothing_more(tmp_path: Path) -> None:
    shown = massive_config(tmp_path, "--json")
    assert_nothing_about_the_secrets(shown, tmp_path)
    variables = json.loads(shown)["variables"]
    for var in ("MASSIVE_API_KEY", "MASSIVE_S3_ACCESS_KEY_ID", "MASSIVE_S3_SECRET_ACCESS_KEY"):
        assert variables[var] == {"value": REDACTED, "source": "environment"}
    assert variables["KDB_TICKERPLANT"]["value"] == f"alice:{REDACTED}@127.0.0.1:5010"


def test_secrets_of_different_lengths_look_the_same_everywhere(tmp_path: Path) -> None:
    short, long = Secret("a1"), Secret("b" * 500)
    for show in (repr, str, Secret.redacted):
        assert show(short) == show(long) and "2" not in show(short) and "500" not in show(long)
    assert (
        str(KdbTarget("h", 1, "u", Secret("x")))
        == str(KdbTarget("h", 1, "u", Secret("y" * 40)))
        == f"u:{REDACTED}@h:1"
    )
    assert str(KdbTarget("h", 1, "u")) == "u@h:1"  # no password: nothing claims one is set
    config = Config.load(
        environ={**mesh_env(tmp_path / "data"), "MASSIVE_API_KEY": API_KEY}, cwd=tmp_path
    )
    assert_nothing_about_the_secrets(
        repr(config) + str(config.as_table()) + json.dumps(config.as_json()), tmp_path
    )


def test_the_simulator_demo_credentials_are_shown_as_they_are(tmp_path: Path) -> None:
    config = Config.load(environ=mesh_env(tmp_path / "data"), cwd=tmp_path)
    assert (
        config.as_json()["variables"]["MASSIVE_API_KEY"]["value"]
        == "sim-demo-key (simulator demo credential)"
    )
