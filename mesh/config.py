"""Effective configuration: environment, then `.env`, then `api_keys.properties`, then defaults.

One place reads settings so that every service, the CLI and the TUI agree, every value can say
where it came from (`massive config`), and secrets are wrapped so that printing or logging the
configuration never shows them (nor their length: only whether they are set). It also refuses an
unauthenticated bus on a non-loopback address (`MESH_BUS_AUTH=off` is for loopback debugging).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

SIM_API_KEY = "sim-demo-key"
SIM_S3_ACCESS_KEY_ID = "sim-demo-access"
SIM_S3_SECRET_ACCESS_KEY = "sim-demo-secret"
# where what needs a local disk goes when MESH_DATA_DIR is s3:// (MESH_STATE_DIR overrides)
DEFAULT_STATE_DIR = "~/.local/state/massive-mesh"
SIM_HOST = "127.0.0.1"
SIM_WS_PORT = 8701
SIM_REST_PORT = 8702
SIM_S3_PORT = 8703

# Values that only open the local simulator; shown as they are instead of redacted.
_PUBLIC_DEMO_VALUES = {SIM_API_KEY, SIM_S3_ACCESS_KEY_ID, SIM_S3_SECRET_ACCESS_KEY}


class ConfigError(ValueError):
    """A setting that does not parse; the message names the variable and where it came from."""


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(environ: Mapping[str, str] | None = None) -> str:
    """`MESH_LOG_LEVEL` (default INFO) as a level name `logging` accepts, or a `ConfigError`."""
    raw = (os.environ if environ is None else environ).get("MESH_LOG_LEVEL", "")
    value = raw.strip().upper() or "INFO"
    if value == "WARN":
        value = "WARNING"
    if value not in LOG_LEVELS:
        raise ConfigError(
            f"MESH_LOG_LEVEL={raw!r} (from environment): expected one of {', '.join(LOG_LEVELS)}"
        )
    return value


REDACTED = "<set>"
"""What a secret shows instead of itself: that it is set, and nothing more."""


class Secret:
    """A string that never shows itself in `str`, `repr`, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def redacted(self) -> str:
        """Whether the secret is set, never anything about its value (not even its length)."""
        if self._value in _PUBLIC_DEMO_VALUES:
            return f"{self._value} (simulator demo credential)"
        return REDACTED if self._value else "<empty>"

    def __repr__(self) -> str:
        return f"Secret({self.redacted()})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class KdbTarget:
    """Where the kdb publisher sends: `host:port[:user:password]`."""

    host: str
    port: int
    user: str = ""
    password: Secret | None = None

    def __str__(self) -> str:
        password = f":{self.password.redacted()}" if self.password else ""
        auth = f"{self.user}{password}@" if self.user or password else ""
        return f"{auth}{self.host}:{self.port}"


@dataclass(frozen=True)
class Config:
    """Every setting the mesh reads, parsed and typed. `sources` says where each came from."""

    api_key: Secret | None
    feed: str
    subscriptions: str
    s3_access_key_id: Secret | None
    s3_secret_access_key: Secret | None
    s3_endpoint: str
    s3_bucket: str
    ws_url: str
    rest_url: str
    rest_calls_per_day: int
    rest_calls_per_minute: int
    s3_bytes_per_month: int
    bus_pub: str
    bus_sub: str
    bus_ctl: str
    bus_auth: bool
    data_dir: Path
    kdb_tickerplant: KdbTarget | None
    sim_mode: bool
    ingest_scanner: bool = True  # MESH_INGEST_SCANNER: off sends every frame through msgspec
    auto_reconcile: bool = True  # MESH_AUTO_RECONCILE: the fetcher reconciles finished recordings
    auto_heal: bool = False  # MESH_AUTO_HEAL: ... and heals those it finds incomplete
    # MESH_DATA_DIR=s3://bucket/prefix?options: datasets live there, and `data_dir` is the local
    # state folder (MESH_STATE_DIR, default ~/.local/state/massive-mesh) for what needs a disk
    data_uri: str = ""
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def load(
        cls, environ: Mapping[str, str] | None = None, cwd: Path | str | None = None
    ) -> Config:
        """Read the environment (it wins), then `.env`, then `api_keys.properties` in `cwd`."""
        return _load(dict(os.environ if environ is None else environ), Path(cwd or os.getcwd()))

    def as_table(self) -> list[tuple[str, str, str]]:
        """(variable, shown value, source) rows with every secret redacted."""
        rows = []
        for spec in _SPECS:
            value = getattr(self, spec.attr)
            rows.append((spec.var, _show(value), self.sources.get(spec.var, "default")))
        rows.append(
            (
                "(sim mode)",
                str(self.sim_mode).lower(),
                "derived: no MASSIVE_API_KEY" if self.sim_mode else "derived",
            )
        )
        return rows

    def as_json(self) -> dict[str, Any]:
        return {
            "sim_mode": self.sim_mode,
            "variables": {
                var: {"value": shown, "source": source}
                for var, shown, source in self.as_table()
                if not var.startswith("(")
            },
        }

    def exposed(self) -> list[str]:
        """The bus endpoints (`MESH_BUS_PUB`, `_SUB`, `_CTL`) that are not loopback or local."""
        return [
            endpoint
            for endpoint in (self.bus_pub, self.bus_sub, self.bus_ctl)
            if not is_local_endpoint(endpoint)
        ]

    def auth_warning(self) -> str | None:
        """The one line to show at start, in `massive status` and the dashboard when the bus is open."""
        return None if self.bus_auth else AUTH_OFF_WARNING

    @property
    def data_remote(self) -> bool:
        """Whether datasets live in S3-compatible storage (MESH_DATA_DIR=s3://...)."""
        return bool(self.data_uri)

    @property
    def data_location(self) -> str:
        """Where datasets live: the s3:// URI (with its options) or the local data folder."""
        return self.data_uri or str(self.data_dir)

    @property
    def shown_data_location(self) -> str:
        """`data_location` as it may be shown: no options, no keys."""
        return self.data_uri.partition("?")[0] if self.data_uri else str(self.data_dir)

    @property
    def state_location(self) -> str:
        """The local folder for the write-ahead log, quota ledger and keys when data is in S3."""
        if self.data_uri:
            return str(self.data_dir)
        return "(unused: state lives in the data folder)"

    @property
    def s3_credentials(self) -> tuple[str, str] | None:
        if self.s3_access_key_id and self.s3_secret_access_key:
            return self.s3_access_key_id.reveal(), self.s3_secret_access_key.reveal()
        return None

    def __repr__(self) -> str:  # dataclass repr would be fine (Secrets redact) but this is shorter
        return (
            "Config("
            + ", ".join(
                f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.name != "sources"
            )
            + ")"
        )


def _show(value: object) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, Secret):
        return value.redacted()
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


@dataclass(frozen=True)
class _Spec:
    var: str
    attr: str
    default: str | None
    secret: bool = False


_SPECS = [
    _Spec("MASSIVE_API_KEY", "api_key", None, secret=True),
    _Spec("MASSIVE_FEED", "feed", "delayed"),
    _Spec("MASSIVE_SUBSCRIPTIONS", "subscriptions", "Q.*,T.*,A.*"),
    _Spec("MASSIVE_S3_ACCESS_KEY_ID", "s3_access_key_id", None, secret=True),
    _Spec("MASSIVE_S3_SECRET_ACCESS_KEY", "s3_secret_access_key", None, secret=True),
    _Spec("MASSIVE_S3_ENDPOINT", "s3_endpoint", "https://files.massive.com"),
    _Spec("MASSIVE_S3_BUCKET", "s3_bucket", "flatfiles"),
    _Spec("MASSIVE_WS_URL", "ws_url", None),
    _Spec("MASSIVE_REST_URL", "rest_url", None),
    _Spec("MASSIVE_REST_CALLS_PER_DAY", "rest_calls_per_day", "100"),
    _Spec("MASSIVE_REST_CALLS_PER_MINUTE", "rest_calls_per_minute", "5"),
    _Spec("MASSIVE_S3_BYTES_PER_MONTH", "s3_bytes_per_month", "10GB"),
    _Spec("MESH_BUS_PUB", "bus_pub", "tcp://127.0.0.1:7701"),
    _Spec("MESH_BUS_SUB", "bus_sub", "tcp://127.0.0.1:7702"),
    _Spec("MESH_BUS_CTL", "bus_ctl", "tcp://127.0.0.1:7703"),
    _Spec("MESH_BUS_AUTH", "bus_auth", "on"),
    _Spec("MESH_DATA_DIR", "data_location", "./data"),
    _Spec("MESH_STATE_DIR", "state_location", None),
    _Spec("KDB_TICKERPLANT", "kdb_tickerplant", None, secret=True),
    _Spec("MESH_INGEST_SCANNER", "ingest_scanner", "on"),
    _Spec("MESH_AUTO_RECONCILE", "auto_reconcile", "on"),
    _Spec("MESH_AUTO_HEAL", "auto_heal", "off"),
]
VARIABLES = tuple(spec.var for spec in _SPECS)

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*[=:]\s*(.*?)\s*$")


def read_settings_file(path: Path) -> dict[str, str]:
    """Parse a `.env` or Java-style `.properties` file: KEY=VALUE lines, `#`/`!` comments, quotes."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        match = _LINE.match(line)
        if not match:
            continue
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def _load(environ: dict[str, str], cwd: Path) -> Config:
    log_level(environ)
    layers = [
        ("environment", environ),
        (".env", read_settings_file(cwd / ".env")),
        ("api_keys.properties", read_settings_file(cwd / "api_keys.properties")),
    ]
    raw: dict[str, str] = {}
    sources: dict[str, str] = {}
    for spec in _SPECS:
        for source, layer in layers:
            value = layer.get(spec.var)
            if value is not None and value.strip() != "":
                raw[spec.var], sources[spec.var] = value.strip(), source
                break
        else:
            if spec.default is not None:
                raw[spec.var], sources[spec.var] = spec.default, "default"

    def where(var: str) -> str:
        return sources.get(var, "default")

    api_key = Secret(raw["MASSIVE_API_KEY"]) if "MASSIVE_API_KEY" in raw else None
    sim_mode = api_key is None

    feed = raw["MASSIVE_FEED"].lower()
    if feed not in ("delayed", "realtime"):
        raise ConfigError(
            f"MASSIVE_FEED={raw['MASSIVE_FEED']!r} (from {where('MASSIVE_FEED')}): expected 'delayed' or 'realtime'"
        )
    subscriptions = _parse_subscriptions(
        raw["MASSIVE_SUBSCRIPTIONS"], where("MASSIVE_SUBSCRIPTIONS")
    )

    s3_key = raw.get("MASSIVE_S3_ACCESS_KEY_ID")
    s3_secret = raw.get("MASSIVE_S3_SECRET_ACCESS_KEY")
    s3_endpoint = raw["MASSIVE_S3_ENDPOINT"]
    if sim_mode:
        api_key = Secret(SIM_API_KEY)
        sources["MASSIVE_API_KEY"] = "derived: simulator demo key (sim mode)"
        if where("MASSIVE_FEED") == "default":
            feed = "realtime"
            sources["MASSIVE_FEED"] = "derived: the simulator streams in real time (sim mode)"
        if s3_key is None and s3_secret is None:
            s3_key, s3_secret = SIM_S3_ACCESS_KEY_ID, SIM_S3_SECRET_ACCESS_KEY
            sources["MASSIVE_S3_ACCESS_KEY_ID"] = sources["MASSIVE_S3_SECRET_ACCESS_KEY"] = (
                "derived: simulator demo key pair (sim mode)"
            )
        if where("MASSIVE_S3_ENDPOINT") == "default":
            s3_endpoint = f"http://{SIM_HOST}:{SIM_S3_PORT}"
            sources["MASSIVE_S3_ENDPOINT"] = "derived: simulator (sim mode)"
    _check_url("MASSIVE_S3_ENDPOINT", s3_endpoint, ("http://", "https://"), sources)

    ws_url = raw.get("MASSIVE_WS_URL")
    if ws_url is None:
        if sim_mode:
            path = "/stocks" if feed == "realtime" else "/delayed/stocks"
            ws_url = f"ws://{SIM_HOST}:{SIM_WS_PORT}{path}"
            sources["MASSIVE_WS_URL"] = "derived: simulator (sim mode)"
        else:
            host = "socket.massive.com" if feed == "realtime" else "delayed.massive.com"
            ws_url = f"wss://{host}/stocks"
            sources["MASSIVE_WS_URL"] = f"derived: MASSIVE_FEED={feed}"
    _check_url("MASSIVE_WS_URL", ws_url, ("ws://", "wss://"), sources)

    rest_url = raw.get("MASSIVE_REST_URL")
    if rest_url is None:
        rest_url = f"http://{SIM_HOST}:{SIM_REST_PORT}" if sim_mode else "https://api.massive.com"
        sources["MASSIVE_REST_URL"] = "derived: simulator (sim mode)" if sim_mode else "derived"
    _check_url("MASSIVE_REST_URL", rest_url, ("http://", "https://"), sources)

    endpoints = {}
    for var in ("MESH_BUS_PUB", "MESH_BUS_SUB", "MESH_BUS_CTL"):
        endpoints[var] = _parse_endpoint(var, raw[var], where(var))
    if len(set(endpoints.values())) != 3:
        raise ConfigError(
            "MESH_BUS_PUB, MESH_BUS_SUB and MESH_BUS_CTL must be three different endpoints"
        )
    bus_auth = _parse_switch(
        "MESH_BUS_AUTH", raw["MESH_BUS_AUTH"], where("MESH_BUS_AUTH"), strict=True
    )
    if not bus_auth:
        _refuse_exposure(endpoints, where)

    data_uri = ""
    if raw["MESH_DATA_DIR"].startswith("s3://"):
        data_uri = _data_uri(raw["MESH_DATA_DIR"], where("MESH_DATA_DIR"))
        state = raw.get("MESH_STATE_DIR") or DEFAULT_STATE_DIR
        data_dir = _data_dir(state, where("MESH_STATE_DIR"), var="MESH_STATE_DIR")
        sources.setdefault("MESH_STATE_DIR", "default")
    else:
        data_dir = _data_dir(raw["MESH_DATA_DIR"], where("MESH_DATA_DIR"))
        sources["MESH_STATE_DIR"] = "derived: MESH_DATA_DIR is a local folder"

    return Config(
        api_key=api_key,
        feed=feed,
        subscriptions=subscriptions,
        s3_access_key_id=Secret(s3_key) if s3_key else None,
        s3_secret_access_key=Secret(s3_secret) if s3_secret else None,
        s3_endpoint=s3_endpoint.rstrip("/"),
        s3_bucket=raw["MASSIVE_S3_BUCKET"],
        ws_url=ws_url,
        rest_url=rest_url.rstrip("/"),
        rest_calls_per_day=_parse_count("MASSIVE_REST_CALLS_PER_DAY", raw, where),
        rest_calls_per_minute=_parse_count("MASSIVE_REST_CALLS_PER_MINUTE", raw, where),
        s3_bytes_per_month=parse_bytes(
            "MASSIVE_S3_BYTES_PER_MONTH",
            raw["MASSIVE_S3_BYTES_PER_MONTH"],
            where("MASSIVE_S3_BYTES_PER_MONTH"),
        ),
        bus_pub=endpoints["MESH_BUS_PUB"],
        bus_sub=endpoints["MESH_BUS_SUB"],
        bus_ctl=endpoints["MESH_BUS_CTL"],
        bus_auth=bus_auth,
        data_dir=data_dir,
        data_uri=data_uri,
        kdb_tickerplant=_parse_kdb(raw.get("KDB_TICKERPLANT"), where("KDB_TICKERPLANT")),
        sim_mode=sim_mode,
        ingest_scanner=_parse_switch(
            "MESH_INGEST_SCANNER", raw["MESH_INGEST_SCANNER"], where("MESH_INGEST_SCANNER")
        ),
        auto_reconcile=_parse_switch(
            "MESH_AUTO_RECONCILE", raw["MESH_AUTO_RECONCILE"], where("MESH_AUTO_RECONCILE")
        ),
        auto_heal=_parse_switch("MESH_AUTO_HEAL", raw["MESH_AUTO_HEAL"], where("MESH_AUTO_HEAL")),
        sources=sources,
    )


def _check_url(var: str, value: str, schemes: tuple[str, ...], sources: Mapping[str, str]) -> None:
    if not value.startswith(schemes) or len(value) <= len(value.split("://")[0]) + 3:
        raise ConfigError(
            f"{var}={value!r} (from {sources.get(var, 'default')}): expected a URL starting with {' or '.join(schemes)}"
        )


def local_state_dir(data_location: str | Path, environ: Mapping[str, str] | None = None) -> Path:
    """The local folder for what needs a disk: the data folder itself, or, when datasets are in
    S3 (`s3://`), MESH_STATE_DIR (default ~/.local/state/massive-mesh). For a process that has
    no Config, such as a sweep's worker on another machine."""
    if not str(data_location).startswith("s3://"):
        return Path(data_location)
    env = os.environ if environ is None else environ
    return Path(env.get("MESH_STATE_DIR") or DEFAULT_STATE_DIR).expanduser().absolute()


def _data_uri(value: str, source: str) -> str:
    """An s3:// data location: a bucket is named, and no keys are written in it."""
    parts = urlsplit(value)
    shown = f"MESH_DATA_DIR={value.partition('?')[0]!r} (from {source})"
    if not parts.netloc:
        raise ConfigError(f"{shown}: expected s3://BUCKET/PREFIX (pyarrow's S3 options after ?)")
    keys = {key for key, _ in parse_qsl(parts.query)} & {
        "access_key",
        "secret_key",
        "session_token",
    }
    if keys:
        raise ConfigError(
            f"{shown}: keys do not go in the URI ({', '.join(sorted(keys))}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead"
        )
    return value


def _data_dir(value: str, source: str, var: str = "MESH_DATA_DIR") -> Path:
    """The data folder, created if it is missing; a file or an unwritable folder is a `ConfigError`."""
    path = Path(value).expanduser()
    shown = f"{var}={value if len(value) <= 200 else value[:199] + '…'!r} (from {source})"
    try:
        a_file = path.exists() and not path.is_dir()
        if not a_file:
            path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a name too long for the file system, a parent that is a file
        raise ConfigError(f"{shown}: cannot create the folder ({exc.strerror or exc})") from None
    except ValueError as exc:  # a NUL byte
        raise ConfigError(f"{shown}: not a path ({exc})") from None
    if a_file:
        raise ConfigError(
            f"{shown} is a file, not a folder: point it at a folder (it is created if missing)"
        )
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{shown}: the folder is not writable by this user")
    return path.absolute() if var == "MESH_STATE_DIR" else path


def _parse_subscriptions(value: str, source: str) -> str:
    items = [item.strip() for item in value.split(",") if item.strip()]
    for item in items:
        if not re.fullmatch(r"[A-Z]{1,4}\.(\*|[A-Za-z0-9.:/\-]+)", item):
            raise ConfigError(
                f"MASSIVE_SUBSCRIPTIONS item {item!r} (from {source}): expected EVENT.SYMBOL such as Q.AAPL or T.*"
            )
    if not items:
        raise ConfigError(f"MASSIVE_SUBSCRIPTIONS (from {source}) is empty")
    return ",".join(items)


def _parse_endpoint(var: str, value: str, source: str) -> str:
    if re.fullmatch(r"tcp://(?:[^\s:/\[\]]+|\[[0-9A-Fa-f:.%\w]+\]):\d{1,5}", value):
        port = int(value.rsplit(":", 1)[1])
        if 0 < port < 65536:
            return value
    elif re.fullmatch(r"(ipc|inproc)://\S+", value):
        return value
    raise ConfigError(
        f"{var}={value!r} (from {source}): expected a ZeroMQ endpoint such as tcp://127.0.0.1:7701 or ipc:///tmp/bus.pub"
    )


AUTH_OFF_WARNING = "bus authentication is off (MESH_BUS_AUTH=off): any local process can read, publish and command; for loopback debugging only"

# A switch is on or off; the spellings shells and .env files commonly use for those are taken too.
_SWITCH = {"on": True, "off": False}
_SWITCH_SPELLINGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _parse_switch(var: str, value: str, source: str, *, strict: bool = False) -> bool:
    """`on`/`off`; unless `strict` (the bus's authentication, which says exactly what it does),
    also 1/0, true/false and yes/no."""
    word = value.strip().lower()
    spellings = _SWITCH if strict else {**_SWITCH, **_SWITCH_SPELLINGS}
    try:
        return spellings[word]
    except KeyError:
        also = "" if strict else " (or 1/0, true/false, yes/no)"
        raise ConfigError(f"{var}={value!r} (from {source}): expected on or off{also}") from None


def is_local_endpoint(endpoint: str) -> bool:
    """True for `ipc://`, `inproc://` and tcp on 127.0.0.0/8, `localhost` or `[::1]`.

    Everything else reaches (or may reach) other machines: `0.0.0.0`, `*`, `[::]`, an interface
    name, a host name or any other address.
    """
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = endpoint[len("tcp://") :].rsplit(":", 1)[0]
    if host.lower() == "localhost":
        return True
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _refuse_exposure(endpoints: Mapping[str, str], where: Any) -> None:
    """Protected mode: with authentication off, the bus may only listen where no one else can reach."""
    exposed = [
        f"{var}={value} (from {where(var)})"
        for var, value in endpoints.items()
        if not is_local_endpoint(value)
    ]
    if exposed:
        verb = "is not a loopback address" if len(exposed) == 1 else "are not loopback addresses"
        raise ConfigError(
            f"{' and '.join(exposed)} {verb} and MESH_BUS_AUTH=off (from {where('MESH_BUS_AUTH')}): "
            "anyone who can reach the bus could read, publish and command the mesh without a key; "
            "set MESH_BUS_AUTH=on (the default) or use tcp://127.0.0.1:PORT"
        )


def _parse_count(var: str, raw: Mapping[str, str], where: Any) -> int:
    value = raw[var]
    try:
        number = int(value.replace("_", ""))
    except ValueError:
        raise ConfigError(f"{var}={value!r} (from {where(var)}): expected a whole number") from None
    if number < 0:
        raise ConfigError(f"{var}={value!r} (from {where(var)}): must not be negative")
    return number


_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parse_bytes(var: str, value: str, source: str = "default") -> int:
    """`10GB`, `10 GB`, `512MiB` or a plain number of bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", value)
    if not match or match.group(2).upper() not in _UNITS:
        raise ConfigError(
            f"{var}={value!r} (from {source}): expected a size such as 10GB, 500MB or 1073741824"
        )
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _parse_kdb(value: str | None, source: str) -> KdbTarget | None:
    if not value:
        return None
    parts = value.split(":")
    if (
        len(parts) not in (2, 3, 4)
        or not parts[0]
        or not parts[1].isdigit()
        or not 0 < int(parts[1]) < 65536
    ):
        # never echo the value: it may hold a password
        raise ConfigError(f"KDB_TICKERPLANT (from {source}): expected host:port[:user:password]")
    user = parts[2] if len(parts) > 2 else ""
    password = Secret(parts[3]) if len(parts) > 3 else None
    return KdbTarget(parts[0], int(parts[1]), user, password)


def load_config() -> Config:
    """The configuration of this process, read from its working folder."""
    return Config.load()
