"""Who may use the bus: CURVE keys, roles, and the ZAP handler the bus runs.

Every bus socket speaks ZeroMQ's CURVE (encryption and authentication by key pair, the
"Ironhouse" pattern): the bus holds the server key pair, and a client connects only with a key
pair whose public key the bus knows, for the role that socket serves:

    role        bus socket                  lets a key ...
    subscribe   MESH_BUS_SUB (XPUB)         read the bus
    publish     MESH_BUS_PUB (XSUB)         publish on it
    control     MESH_BUS_CTL (ROUTER)       send commands, and register a service

The keys live under `MESH_DATA_DIR/state/auth/`, readable only by their owner, and are made on
first use, so nobody configures anything: the mesh's own services, the CLI, the dashboard,
`massive tap` and `mesh.client` all load the `mesh` key pair (every role). `massive auth add NAME
--role subscribe` makes a key pair for someone else's program (a colleague's notebook may read
the firehose and nothing more); `MESH_KEY_FILE` points a process at it. The files are pyzmq's
certificate format, so a plain pyzmq client loads them with `zmq.auth.load_certificate`.

The bus runs pyzmq's own ZAP implementation (`zmq.auth.thread.ThreadAuthenticator`) with a
callback that reads the registry (`clients.json`) afresh when it changes: a key added or revoked
counts for every connection made after it. The authenticated key's name becomes the ZeroMQ
`User-Id` of each message, which is how the bus ties a service name to who registered it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from mesh.files import replace_file

log = logging.getLogger(__name__)

ROLES = ("subscribe", "publish", "control")
DOMAINS = {"subscribe": "sub", "publish": "pub", "control": "ctl"}  # ZAP domain of each bus socket
MESH = "mesh"  # the key pair of the mesh's own processes
# The mesh's own services: only the mesh's key may register these names (mesh.cli runs them).
MESH_SERVICES = frozenset({"bus", "sim", "ingest", "recorder", "kdb", "fetcher", "backtester"})
SERVER = "bus"  # the bus's key pair
_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}")


class AuthError(RuntimeError):
    """A key that cannot be made, found or read; the message is one line for the user."""


@dataclass(frozen=True)
class ClientKeys:
    """What a client socket needs: its own key pair and the bus's public key (all z85)."""

    public: bytes
    secret: bytes
    server: bytes


@dataclass(frozen=True)
class Client:
    """A key the bus knows: a name, its public key (z85) and what it may do."""

    name: str
    public: str
    roles: tuple[str, ...]
    added_ns: int


class KeyStore:
    """The key files under `MESH_DATA_DIR/state/auth/` (a folder only its owner can enter)."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = Path(data_dir) / "state" / "auth"
        self.keys_dir = self.dir / "keys"
        self.registry = self.dir / "clients.json"

    # --- creating on first use ---------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Processes starting together (honcho starts them all at once) make the keys once."""
        try:
            self.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.dir, 0o700)
            os.chmod(self.keys_dir, 0o700)
            with open(self.dir / ".lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
        except OSError as exc:
            raise AuthError(
                f"cannot use the bus keys in {self.dir}: {exc.strerror or exc}"
            ) from None

    def ensure(self) -> None:
        """The bus's and the mesh's key pairs, and the registry, made if missing."""
        if (
            (self.keys_dir / f"{SERVER}.key_secret").exists()
            and (self.keys_dir / f"{MESH}.key_secret").exists()
            and self.registry.exists()
        ):
            return
        with self._locked():
            for name in (SERVER, MESH):
                if not (self.keys_dir / f"{name}.key_secret").exists():
                    self._make_pair(name)
            if not self.registry.exists():
                public = self._public(self.keys_dir / f"{MESH}.key")
                self._write_registry({MESH: Client(MESH, public, ROLES, time.time_ns())})

    def _make_pair(self, name: str) -> Path:
        old = os.umask(0o077)  # files readable by their owner only, from the first byte
        try:
            _, secret = zmq.auth.create_certificates(self.keys_dir, name)
        finally:
            os.umask(old)
        for path in (self.keys_dir / f"{name}.key", Path(secret)):
            os.chmod(path, 0o600)
        return Path(secret)

    @staticmethod
    def _public(path: Path) -> str:
        public, _ = zmq.auth.load_certificate(path)
        return public.decode("ascii")

    # --- reading -----------------------------------------------------------------------------

    def server_keys(self) -> tuple[bytes, bytes]:
        """(public, secret) of the bus."""
        self.ensure()
        return _load_pair(self.keys_dir / f"{SERVER}.key_secret")

    def client_keys(self, key_file: Path | None = None) -> ClientKeys:
        """The key pair a client uses: `key_file` (from `MESH_KEY_FILE`), else the mesh's own."""
        self.ensure()
        public, secret = _load_pair(key_file or self.keys_dir / f"{MESH}.key_secret")
        try:
            server, _ = zmq.auth.load_certificate(self.keys_dir / f"{SERVER}.key")
        except (OSError, ValueError) as exc:
            raise AuthError(
                f"cannot read the bus's public key {self.keys_dir / f'{SERVER}.key'}: {exc}"
            ) from None
        return ClientKeys(public, secret, server)

    def clients(self) -> dict[str, Client]:
        """Every key the bus lets in, by name."""
        try:
            raw = json.loads(self.registry.read_text())
            return dict(_client(name, entry) for name, entry in _mapping(raw).items())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise AuthError(
                f"the key registry {self.registry} is damaged ({exc}); restore it, or remove it to start again with the mesh's own key only (then `massive auth add` again)"
            ) from None

    def _write_registry(self, clients: dict[str, Client]) -> None:
        data = {
            c.name: {"public": c.public, "roles": list(c.roles), "added_ns": c.added_ns}
            for c in clients.values()
        }
        replace_file(self.registry, json.dumps(data, indent=2, sort_keys=True), mode=0o600)

    # --- managing ------------------------------------------------------------------------------

    def add(self, name: str, roles: tuple[str, ...]) -> Path:
        """A new key pair for `name` with `roles`; returns its secret key file (to hand over)."""
        if not _NAME.fullmatch(name) or name in (MESH, SERVER):
            raise AuthError(
                f"{name!r} cannot name a key: use 1-64 letters, digits, '-' or '_' (and not {MESH!r} or {SERVER!r})"
            )
        unknown = [r for r in roles if r not in ROLES]
        if unknown or not roles:
            raise AuthError(
                f"unknown role {', '.join(unknown) or '(none)'}: roles are {', '.join(ROLES)}"
            )
        self.ensure()
        with self._locked():
            clients = self.clients()
            if name in clients:
                raise AuthError(
                    f"a key named {name!r} exists already; `massive auth revoke {name}` first to replace it"
                )
            for stale in (self.keys_dir / f"{name}.key", self.keys_dir / f"{name}.key_secret"):
                stale.unlink(missing_ok=True)
            secret = self._make_pair(name)
            clients[name] = Client(
                name,
                self._public(self.keys_dir / f"{name}.key"),
                tuple(dict.fromkeys(roles)),
                time.time_ns(),
            )
            self._write_registry(clients)
        return secret

    def revoke(self, name: str) -> None:
        """`name`'s key is let in no more (and its files are deleted)."""
        if name == MESH:
            raise AuthError(
                f"the {MESH!r} key is the mesh's own; to replace it, stop the mesh and delete {self.dir}"
            )
        with self._locked():
            clients = self.clients()
            if name not in clients:
                raise AuthError(f"no key named {name!r} (see `massive auth list`)")
            del clients[name]
            self._write_registry(clients)
            for path in (self.keys_dir / f"{name}.key", self.keys_dir / f"{name}.key_secret"):
                path.unlink(missing_ok=True)


def _mapping(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"expected a JSON object of keys by name, found {type(raw).__name__}")
    return raw


def _client(name: Any, entry: Any) -> tuple[str, Client]:
    """One registry entry, checked field by field: a wrong shape is damage, never "no roles"."""
    if not isinstance(name, str) or not isinstance(entry, dict):
        raise ValueError(f"entry {name!r} is not an object")
    public, roles, added = entry.get("public"), entry.get("roles"), entry.get("added_ns", 0)
    if not isinstance(public, str) or len(public) != 40:
        raise ValueError(f"entry {name!r}: 'public' is not a 40-character z85 key")
    if not isinstance(roles, list) or not all(isinstance(r, str) and r in ROLES for r in roles):
        raise ValueError(f"entry {name!r}: 'roles' is not a list of {', '.join(ROLES)}")
    if not isinstance(added, int) or isinstance(added, bool) or not 0 <= added < 2**63:
        raise ValueError(f"entry {name!r}: 'added_ns' is not a time in ns")
    return name, Client(name, public, tuple(roles), added)


def _load_pair(path: Path) -> tuple[bytes, bytes]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise AuthError(f"cannot read the key file {path}: {exc}") from None
    if secret is None:
        raise AuthError(f"{path} holds no secret key: a client needs the .key_secret file")
    return public, secret


# --- sockets ---------------------------------------------------------------------------------

_client_cache: dict[tuple[str, str], ClientKeys] = {}


def client_keys(config: Any) -> ClientKeys | None:
    """The keys for this process's client sockets (None when `MESH_BUS_AUTH=off`), loaded once."""
    if not config.bus_auth:
        return None
    key_file = os.environ.get("MESH_KEY_FILE", "")
    cache_key = (str(config.data_dir), key_file)
    keys = _client_cache.get(cache_key)
    if keys is None:
        keys = _client_cache[cache_key] = KeyStore(config.data_dir).client_keys(
            Path(key_file) if key_file else None
        )
    return keys


def secure_client(sock: zmq.Socket[Any], keys: ClientKeys | None) -> None:
    """Make `sock` a CURVE client of the bus (before it connects); nothing when auth is off."""
    if keys is not None:
        sock.curve_publickey = keys.public
        sock.curve_secretkey = keys.secret
        sock.curve_serverkey = keys.server


def secure_server(sock: zmq.Socket[Any], keys: tuple[bytes, bytes], role: str) -> None:
    """Make the bus's `sock` a CURVE server whose clients need `role` (before it binds)."""
    sock.curve_server = True
    sock.curve_publickey, sock.curve_secretkey = keys
    sock.zap_domain = DOMAINS[role].encode()


class Gatekeeper(ThreadAuthenticator):
    """pyzmq's ZAP handler, answering from the registry: a key gets in on the sockets its roles
    name, and the messages it sends carry its name as their `User-Id`."""

    def __init__(self, context: zmq.Context[Any], store: KeyStore) -> None:
        super().__init__(context)
        self.store = store
        self._clients: dict[bytes, Client] = {}
        self._stamp: tuple[int, int] | None = None
        self.refused = 0
        self.start()
        for domain in DOMAINS.values():  # pyzmq looks callbacks up by the socket's exact domain
            self.configure_curve_callback(domain, credentials_provider=self)

    def _known(self) -> dict[bytes, Client]:
        try:
            stat = self.store.registry.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = (0, 0)
        if stamp != self._stamp:
            try:
                self._clients = {c.public.encode(): c for c in self.store.clients().values()}
            except AuthError as exc:
                log.error("%s", exc)
                self._clients = {}
            self._stamp = stamp
        return self._clients

    def callback(self, domain: str, key: bytes) -> bool:
        try:
            client = self._known().get(key)
            allowed = client is not None and any(DOMAINS[role] == domain for role in client.roles)
        except Exception as exc:  # the handler thread must never die: refuse, say why once
            log.error("refusing a connection: the key check failed (%r)", exc)
            client, allowed = None, False
        if not allowed:
            self.refused += 1
            if self.refused <= 3 or self.refused % 1000 == 0:
                who = f"key {client.name!r}" if client else "an unknown key"
                log.warning(
                    "refused %s on the %s socket (%d refused so far)", who, domain, self.refused
                )
        return allowed

    def curve_user_id(self, client_public_key: bytes) -> str:
        try:
            client = self._known().get(zmq.utils.z85.encode(client_public_key))
        except Exception:
            client = None
        return client.name if client else "?"
