"""`massive auth add NAME --role ROLE | list | revoke NAME`: who may use the bus (mesh.auth).

Keys are made on the machine that runs the bus, under `MESH_DATA_DIR/state/auth/`; the secret
key file `add` prints is what the other program loads (`MESH_KEY_FILE=PATH` for our own client
library, or `zmq.auth.load_certificate(PATH)` in plain pyzmq, docs/protocol.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mesh import auth
from mesh.commandline import load_config

if TYPE_CHECKING:
    from mesh.commandline import Subparsers


def register(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "auth",
        help="keys that may use the bus: add, list, revoke",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    cmds = p.add_subparsers(dest="auth_cmd", required=True, metavar="COMMAND")
    add = cmds.add_parser(
        "add", help="make a key pair for NAME with the given roles and print its secret key file"
    )
    add.add_argument("name", help="who the key is for: 1-64 letters, digits, '-' or '_'")
    add.add_argument(
        "--role",
        action="append",
        choices=auth.ROLES,
        required=True,
        help="subscribe (read the bus), publish, or control (commands); repeat for several",
    )
    add.set_defaults(func=cmd_add)
    ls = cmds.add_parser("list", help="every key the bus lets in, with its roles")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_list)
    revoke = cmds.add_parser(
        "revoke", help="let NAME's key in no more (connections made from then on)"
    )
    revoke.add_argument("name")
    revoke.set_defaults(func=cmd_revoke)


def _store() -> auth.KeyStore:
    return auth.KeyStore(load_config().data_dir)


def _fail(exc: auth.AuthError) -> int:
    print(f"massive auth: {exc}", file=sys.stderr)
    return 1


def cmd_add(args: argparse.Namespace) -> int:
    try:
        secret = _store().add(args.name, tuple(args.role))
    except auth.AuthError as exc:
        return _fail(exc)
    print(f"key {args.name!r} added with role(s) {', '.join(dict.fromkeys(args.role))}")
    print(f"secret key file: {secret}  (readable by you only; hand it over privately)")
    print(f"use it with:     MESH_KEY_FILE={secret}  (or zmq.auth.load_certificate in plain pyzmq)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    try:
        clients = _store().clients()
    except auth.AuthError as exc:
        return _fail(exc)
    if args.json:
        print(
            json.dumps(
                {
                    c.name: {"roles": list(c.roles), "public_key": c.public, "added_ns": c.added_ns}
                    for c in clients.values()
                },
                indent=2,
                sort_keys=True,
            )
        )
        return 0
    print(f"{'NAME':<20}{'ROLES':<30}ADDED")
    for c in sorted(clients.values(), key=lambda c: c.name):
        try:
            added = (
                datetime.fromtimestamp(c.added_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M UTC")
                if c.added_ns
                else ""
            )
        except (OverflowError, ValueError, OSError):
            added = "?"
        print(f"{c.name:<20}{','.join(c.roles):<30}{added}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    try:
        _store().revoke(args.name)
    except auth.AuthError as exc:
        return _fail(exc)
    print(f"key {args.name!r} revoked: new connections with it are refused")
    return 0
