"""Configuration: precedence, sim mode, clear errors naming the variable, secrets never shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mesh.config import Config, ConfigError, parse_bytes


def test_environment_wins_over_dotenv_which_wins_over_properties(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "MASSIVE_REST_CALLS_PER_DAY=200\nMASSIVE_FEED=realtime\n# comment\nexport MESH_DATA_DIR='/tmp/x y'\n"
    )
    (tmp_path / "api_keys.properties").write_text(
        "MASSIVE_REST_CALLS_PER_DAY=300\nMASSIVE_REST_CALLS_PER_MINUTE=9\nMASSIVE_API_KEY=prop-key-1\n"
    )
    config = Config.load(environ={"MASSIVE_REST_CALLS_PER_DAY": "400"}, cwd=tmp_path)
    assert (
        config.rest_calls_per_day == 400
        and config.sources["MASSIVE_REST_CALLS_PER_DAY"] == "environment"
    )
    assert config.feed == "realtime" and config.sources["MASSIVE_FEED"] == ".env"
    assert (
        config.rest_calls_per_minute == 9
        and config.sources["MASSIVE_REST_CALLS_PER_MINUTE"] == "api_keys.properties"
    )
    assert str(config.data_dir) == "/tmp/x y"
    assert not config.sim_mode
    assert config.api_key is not None and config.api_key.reveal() == "prop-key-1"


def test_no_api_key_means_sim_mode_pointing_at_the_simulator(tmp_path: Path) -> None:
    config = Config.load(environ={}, cwd=tmp_path)
    assert config.sim_mode
    assert config.ws_url == "ws://127.0.0.1:8701/stocks"
    assert config.rest_url == "http://127.0.0.1:8702"
    assert config.s3_endpoint == "http://127.0.0.1:8703"
    assert config.api_key is not None and config.api_key.reveal() == "sim-demo-key"
    assert config.s3_credentials == ("sim-demo-access", "sim-demo-secret")
    assert (config.bus_pub, config.bus_sub, config.bus_ctl) == (
        "tcp://127.0.0.1:7701",
        "tcp://127.0.0.1:7702",
        "tcp://127.0.0.1:7703",
    )
    assert config.bus_auth is True and config.auth_warning() is None
    assert (
        config.rest_calls_per_day == 100
        and config.rest_calls_per_minute == 5
        and config.s3_bytes_per_month == 10 * 10**9
    )


def test_a_real_key_uses_massive_hosts_by_feed(tmp_path: Path) -> None:
    delayed = Config.load(environ={"MASSIVE_API_KEY": "k" * 32}, cwd=tmp_path)
    assert (
        delayed.ws_url == "wss://delayed.massive.com/stocks"
        and delayed.rest_url == "https://api.massive.com"
    )
    assert delayed.s3_endpoint == "https://files.massive.com" and delayed.s3_credentials is None
    realtime = Config.load(
        environ={"MASSIVE_API_KEY": "k" * 32, "MASSIVE_FEED": "realtime"}, cwd=tmp_path
    )
    assert realtime.ws_url == "wss://socket.massive.com/stocks"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("MASSIVE_FEED", "fast"),
        ("MASSIVE_REST_CALLS_PER_DAY", "lots"),
        ("MASSIVE_REST_CALLS_PER_MINUTE", "-1"),
        ("MASSIVE_S3_BYTES_PER_MONTH", "ten gigs"),
        ("MESH_BUS_PUB", "127.0.0.1:7701"),
        ("MESH_BUS_CTL", "tcp://127.0.0.1:99999"),
        ("MASSIVE_WS_URL", "http://example"),
        ("MASSIVE_SUBSCRIPTIONS", "AAPL"),
        ("MESH_BUS_AUTH", "bogus"),
    ],
)
def test_a_value_that_does_not_parse_names_its_variable(
    tmp_path: Path, var: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=var):
        Config.load(environ={var: value}, cwd=tmp_path)


def test_kdb_target_error_never_echoes_the_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        Config.load(environ={"KDB_TICKERPLANT": "host:notaport:user:hunter2"}, cwd=tmp_path)
    assert "hunter2" not in str(info.value)


def test_secrets_never_appear_in_printed_config(tmp_path: Path) -> None:
    secrets = {
        "MASSIVE_API_KEY": "realkey_abcdefghijklmnop",
        "MASSIVE_S3_ACCESS_KEY_ID": "access_abcdefghijklmnop",
        "MASSIVE_S3_SECRET_ACCESS_KEY": "secret_abcdefghijklmnop",
        "KDB_TICKERPLANT": "tp:5010:alice:pw_abcdefghijklmnop",
    }
    config = Config.load(environ=secrets, cwd=tmp_path)
    shown = "\n".join(
        [
            repr(config),
            str(config),
            json.dumps(config.as_json()),
            str(config.as_table()),
            str(config.kdb_tickerplant),
        ]
    )
    for value in [
        "realkey_abcdefghijklmnop",
        "access_abcdefghijklmnop",
        "secret_abcdefghijklmnop",
        "pw_abcdefghijklmnop",
    ]:
        assert value not in shown
    assert config.kdb_tickerplant is not None and config.kdb_tickerplant.port == 5010
    assert (
        config.kdb_tickerplant.password is not None
        and config.kdb_tickerplant.password.reveal() == "pw_abcdefghijklmnop"
    )


def test_sizes_accept_units() -> None:
    assert parse_bytes("X", "10GB") == 10 * 10**9
    assert parse_bytes("X", "512 MiB") == 512 * 2**20
    assert parse_bytes("X", "1024") == 1024


def test_automatic_reconcile_is_on_and_heal_off_unless_switched_and_config_shows_both(
    tmp_path: Path,
) -> None:
    default = Config.load(environ={}, cwd=tmp_path)
    assert (default.auto_reconcile, default.auto_heal) == (True, False)
    assert ("MESH_AUTO_HEAL", "off", "default") in default.as_table()
    switched = Config.load(
        environ={"MESH_AUTO_RECONCILE": "OFF", "MESH_AUTO_HEAL": "on"}, cwd=tmp_path
    )
    assert (switched.auto_reconcile, switched.auto_heal) == (False, True)
    assert switched.as_json()["variables"]["MESH_AUTO_HEAL"]["value"] == "on"
    as_in_a_shell = Config.load(environ={"MESH_AUTO_HEAL": "1"}, cwd=tmp_path)
    assert as_in_a_shell.auto_heal is True
    assert Config.load(environ={"MESH_AUTO_RECONCILE": "0"}, cwd=tmp_path).auto_reconcile is False
    with pytest.raises(ConfigError, match="MESH_AUTO_HEAL='maybe'.*expected on or off"):
        Config.load(environ={"MESH_AUTO_HEAL": "maybe"}, cwd=tmp_path)
