"""`massive data list | show NAME | quality SESSION | migrate [NAME|--all]`: every dataset under MESH_DATA_DIR.

`list` shows each recording, historical dataset and backfill with its kind, schema version, time
range, rows, size, symbols and (recordings) known gaps; `show` one dataset's tables and files;
`quality` checks a recording's trades and quotes and stores the report in its audit.json;
`migrate` rewrites datasets of an older schema version in the current one (docs/data.md). All of
it comes from `mesh.datasets`, so a name here means what it means to `massive backtest`,
`massive kdb load` and `massive run sim --replay`, and a damaged dataset is the same one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from mesh.commandline import BAD_USAGE, FAILED, CliError, load_config

if TYPE_CHECKING:
    from mesh.commandline import Subparsers
    from mesh.config import Config
    from mesh.datasets import Dataset, DatasetInfo, Migration, Table
    from mesh.datasets.audit import Audit, Quality

EPILOG = """\
examples:
  massive data list
  massive data show demo
  massive data show historical:spy-daily --json
  massive data quality demo
  massive data migrate --all --dry-run
see docs/data.md for the layout on disk, the bar schema and how to query it with DuckDB or polars"""


def register(subparsers: Subparsers) -> None:
    data = subparsers.add_parser(
        "data",
        help="list, show, check and migrate recordings, historical datasets and backfills",
        description="Every dataset under MESH_DATA_DIR: recordings, historical datasets and backfills.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    listing = sub.add_parser(
        "list", help="every dataset: kind, version, time range, rows, size, symbols, gaps"
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=cmd_list)
    show = sub.add_parser("show", help="one dataset: its figures, tables and files")
    show.add_argument(
        "name", metavar="NAME", help="a dataset name, recording:NAME, historical:NAME or a path"
    )
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=cmd_show)
    quality = sub.add_parser(
        "quality",
        help="check a recording's trades and quotes: crossed quotes, duplicates, spikes, silences",
    )
    quality.add_argument("name", metavar="SESSION", help="a recording's name or recording:NAME")
    quality.add_argument("--json", action="store_true", help="machine-readable output")
    quality.set_defaults(func=cmd_quality)
    migrate = sub.add_parser(
        "migrate", help="rewrite datasets of an older schema version in the current one"
    )
    migrate.add_argument("name", nargs="?", metavar="NAME", help="the dataset to migrate")
    migrate.add_argument("--all", action="store_true", help="every dataset under MESH_DATA_DIR")
    migrate.add_argument(
        "--dry-run", action="store_true", help="say what would change, change nothing"
    )
    migrate.add_argument("--json", action="store_true", help="machine-readable output")
    migrate.set_defaults(func=cmd_migrate)


# --- list ----------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from mesh import datasets

    config = load_config()
    items = [_shown(config, i) for i in datasets.list_datasets(_local_datasets(config, None))]
    damaged = [i for i in items if i.error is not None]
    if args.json:
        print(json.dumps([i.to_json() for i in items], indent=2))
        return FAILED if damaged else 0
    if not items:
        print(
            f"no datasets under {config.shown_data_location} (record one with `massive record start NAME`, or fetch history with `massive fetch`)"
        )
        return 0
    print(
        f"{'NAME':<28} {'KIND':<10} {'VER':>3}  {'START':<20} {'END':<20} {'ROWS':>11} {'SIZE':>9}  SYMBOLS"
    )
    for info in items:
        print(_row(info))
    if damaged:
        print(f"\n{len(damaged)} damaged: see `massive data show NAME` and docs/data.md")
    return FAILED if damaged else 0


def _row(info: DatasetInfo) -> str:
    name = info.name if len(info.name) <= 28 else info.name[:27] + "…"
    if info.error is not None:
        return f"{name:<28} {info.kind:<10} {'':>3}  DAMAGED: {info.error}"
    symbols = ",".join(info.symbols[:6]) + (
        f" (+{len(info.symbols) - 6})" if len(info.symbols) > 6 else ""
    )
    gaps = f"  gaps {info.gaps_total}" if info.gaps_total else ""
    healed = f"  healed {info.total_healed:,} of the rows" if info.total_healed else ""
    return (
        f"{name:<28} {info.kind:<10} {info.schema_version or '':>3}  "
        f"{_when(info.start_ns):<20} {_when(info.end_ns):<20} {info.total_rows:>11,} "
        f"{_size(info.bytes):>9}  {symbols or '-'}{gaps}{healed}"
    )


def _local_datasets(config: Config, spec: str | None) -> Path:
    """The folder to read datasets from: MESH_DATA_DIR, or the local copy of an s3:// one."""
    from mesh.datasets import storage

    try:
        return storage.local_datasets(config.data_location, config.data_dir, spec)
    except OSError as exc:
        raise CliError(f"MESH_DATA_DIR: {exc}", FAILED) from None


def _shown(config: Config, info: DatasetInfo) -> DatasetInfo:
    from mesh.datasets import storage

    path = storage.shown_path(info.path, config.data_location, config.data_dir)
    return info if path == info.path else dataclasses.replace(info, path=path)


def _shown_text(config: Config, text: str) -> str:
    from mesh.datasets import storage

    return storage.shown_path(text, config.data_location, config.data_dir)


def _local_only(config: Config, command: str) -> None:
    if config.data_remote:
        raise CliError(
            f"{command} rewrites files in place and works on a local data folder; MESH_DATA_DIR is {config.shown_data_location} (copy the dataset to a folder first)",
            BAD_USAGE,
        )


# --- show ----------------------------------------------------------------------------------------


def cmd_show(args: argparse.Namespace) -> int:
    from mesh import datasets

    if not args.name.strip():
        raise CliError("give a dataset NAME (see `massive data list`)", BAD_USAGE)
    config = load_config()
    try:
        dataset = datasets.resolve(args.name, _local_datasets(config, args.name))
        info = _shown(config, datasets.describe(dataset))
    except datasets.DatasetError as exc:
        raise CliError(_shown_text(config, str(exc)), FAILED) from None
    tables = [_table_json(dataset, name) for name in dataset.tables]
    quality = _quality_shown(dataset, info.state)
    if args.json:
        found = msgspec.to_builtins(info.audit) if info.audit is not None else None
        extra = {} if quality is None else {"quality": msgspec.to_builtins(quality)}
        print(
            json.dumps(
                {**info.to_json(), **extra, "table_details": tables, "audit": found}, indent=2
            )
        )
        return 0
    shown = {
        "name": info.name,
        "kind": str(info.kind),
        "path": info.path,
        "schema version": info.schema_version,
        "symbols": ", ".join(info.symbols) or "-",
        "from": _when(info.start_ns, seconds=True),
        "to": _when(info.end_ns, seconds=True),
        "rows": _rows(info),
        "size": _size(info.bytes),
        "prices": info.prices,
        "state": info.state,
        "gaps": None
        if info.gaps_total is None
        else f"{info.gaps_total:,} ({info.missing_total or 0:,} messages known missing)",
        "created": info.created,
        "quality": None if quality is None else _quality_line(quality),
    }
    for key, value in shown.items():
        if value is not None:
            print(f"{key + ':':<16}{value}")
    if info.audit is not None:
        for line in _audit_lines(info.audit):
            print(line)
    print(
        f"\n{'TABLE':<14} {'KIND':<7} {'INTERVAL':<9} {'ROWS':>11} {'SIZE':>9} {'FILES':>6}  FIRST FILE"
    )
    for t in tables:
        print(
            f"{t['name']:<14} {t['kind']:<7} {t['interval'] or '-':<9} {t['rows']:>11,} "
            f"{_size(t['bytes']):>9} {len(t['files']):>6}  {t['files'][0] if t['files'] else '-'}"
        )
    return 0


def _table_json(dataset: Dataset, name: str) -> dict[str, Any]:
    table = dataset.tables[name]
    return {
        "name": table.name,
        "kind": str(table.kind),
        "interval": table.interval.name if table.interval else None,
        "mid": table.mid,
        "version": table.version,
        "rows": table.rows,
        "bytes": table.bytes,
        "files": [
            str(p.relative_to(dataset.path)) if p.is_relative_to(dataset.path) else str(p)
            for p in table.files
        ],
        **(_healed_json(dataset, table) if table.healed else {}),
    }


# --- quality -------------------------------------------------------------------------------------


def cmd_quality(args: argparse.Namespace) -> int:
    import msgspec

    from mesh import datasets
    from mesh.datasets import audit, quality

    dataset = _recording(args.name)
    try:
        found = quality.check(dataset.path)
        with audit.locked(dataset.path) as current:
            audit.write_audit(dataset.path, msgspec.structs.replace(current, quality=found))
    except datasets.DatasetError as exc:
        raise CliError(str(exc), FAILED) from None
    except OSError as exc:
        raise CliError(
            f"cannot store the quality report in {dataset.path}: {exc}", FAILED
        ) from None
    if args.json:
        print(json.dumps(msgspec.to_builtins(found), indent=2))
        return 0
    print(f"{dataset.name}: {_quality_line(found)}")
    if found.findings:
        print(f"\n{'SYMBOL':<10} {'ISSUE':<14} {'COUNT':>8}  FIRST (ET)")
        for finding in found.findings:
            first = finding.examples[0].from_ns if finding.examples else None
            print(f"{finding.symbol:<10} {finding.issue:<14} {finding.count:>8,}  {_et(first)}")
    return 0


def _recording(name: str) -> Dataset:
    from mesh import datasets

    if not name.strip():
        raise CliError("give a recording's name (see `massive data list`)", BAD_USAGE)
    config = load_config()
    _local_only(config, "massive data quality")
    try:
        dataset = datasets.resolve(name, config.data_dir)
    except datasets.DatasetError as exc:
        raise CliError(str(exc), FAILED) from None
    if dataset.kind is not datasets.DatasetKind.RECORDING:
        raise CliError(
            f"{dataset.name} is a {dataset.kind}: quality is checked on recordings", FAILED
        )
    return dataset


def _quality_shown(dataset: Dataset, state: str | None) -> Quality | None:
    """A recording's stored quality report; computed if absent, and stored unless it is still
    being recorded (its report would be out of date by the next slice)."""
    import msgspec

    from mesh import datasets
    from mesh.datasets import audit, quality

    if dataset.kind is not datasets.DatasetKind.RECORDING or not dataset.path.is_dir():
        return None
    stored = audit.read_audit(dataset.path).quality
    if stored is not None:
        return stored
    try:
        found = quality.check(dataset.path)
    except datasets.DatasetError:
        return None  # the rows cannot be read: `show` has said what is wrong with the files
    if state != "recording":
        try:
            with audit.locked(dataset.path) as current:
                if current.quality is None:
                    audit.write_audit(dataset.path, msgspec.structs.replace(current, quality=found))
        except (OSError, datasets.DatasetError):
            pass  # a read-only recording (or a damaged audit.json) is still shown, the report not kept
    return found


def _quality_line(report: Quality) -> str:
    from mesh.datasets import quality

    return quality.summary(report)


def _et(ns: int | None) -> str:
    import datetime as dt

    from mesh.calendar import ET

    if ns is None:
        return "-"
    return dt.datetime.fromtimestamp(ns / 1e9, ET).strftime("%Y-%m-%d %H:%M:%S")


def _healed_json(dataset: Dataset, table: Table) -> dict[str, Any]:
    """A table's healed layer (present only for tables that have one)."""
    return {
        "captured_rows": table.captured_rows,
        "healed_rows": table.healed_rows,
        "healed_files": [str(p.relative_to(dataset.path)) for p in table.healed],
    }


def _rows(info: DatasetInfo) -> str:
    """`1,234` or, with a healed layer, `1,234 (1,200 captured + 34 healed)`."""
    if not info.total_healed:
        return f"{info.total_rows:,}"
    captured = info.total_rows - info.total_healed
    return f"{info.total_rows:,} ({captured:,} captured + {info.total_healed:,} healed)"


def _audit_lines(audit: Audit) -> list[str]:
    """What audit.json says, under the session's figures: reconciliation, then heals, then quality."""
    lines = _reconciliation_lines(audit)
    lines += _heal_lines(audit)
    return lines  # the quality report is its own line (`quality:`) above


def _reconciliation_lines(audit: Audit) -> list[str]:
    from mesh.datasets.listing import reconciliation_summary

    summary = reconciliation_summary(audit)
    if summary is None:
        return [f"{'reconciled:':<16}never (see `massive reconcile NAME`)"]
    state = "complete" if summary["complete"] else "incomplete"
    lines = [f"{'reconciled:':<16}{_iso_shown(summary['checked'])} by {summary['method']}: {state}"]
    for kind, k in summary["kinds"].items():
        lines.append(
            f"{'  ' + kind + ':':<16}{k['completeness_pct']:.2f}% complete "
            f"({k['matched']:,} of {k['reference']:,} at Massive; {k['missing']:,} missing)"
        )
    return lines


def _heal_lines(audit: Audit) -> list[str]:
    if not audit.heals:
        return []
    rows = sum(s.rows for h in audit.heals for s in h.spans)
    calls = sum(h.cost.rest_calls for h in audit.heals)
    lines = [f"{'heals:':<16}{len(audit.heals)}, {rows:,} rows added, {calls:,} REST calls"]
    for heal in audit.heals:
        added = sum(s.rows for s in heal.spans)
        left = f"; {len(heal.unhealed)} span(s) still missing" if heal.unhealed else ""
        cost = f"{heal.cost.rest_calls:,} REST calls"
        if heal.cost.s3_bytes:
            cost += f", {_size(heal.cost.s3_bytes)} of flat files"
        lines.append(
            f"  {_when(heal.at_ns, seconds=True)}  {heal.method}: {added:,} rows in "
            f"{len(heal.spans)} span(s), {cost}{left}"
        )
    return lines


def _iso_shown(text: str | None) -> str:
    return (text or "-").replace("T", " ").rstrip("Z")


# --- migrate -------------------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace) -> int:
    from functools import partial

    from mesh import datasets
    from mesh.datasets.layout import dataset_folders

    if bool(args.name and args.name.strip()) == bool(args.all):
        raise CliError("give a dataset NAME or --all (see `massive data list`)", BAD_USAGE)
    config = load_config()
    _local_only(config, "massive data migrate")
    data_dir = config.data_dir
    if args.name:
        targets = [(args.name, partial(datasets.resolve, args.name, data_dir))]
    else:
        targets = [
            (folder.name, partial(datasets.open_folder, folder, place=place))
            for place, folder in dataset_folders(data_dir)
        ]
    done: list[dict[str, Any]] = []
    failed = 0
    for name, open_dataset in targets:
        try:
            migration = datasets.migrate(open_dataset(), dry_run=args.dry_run)
        except datasets.DatasetError as exc:
            if args.name:
                raise CliError(str(exc), FAILED) from None
            failed += 1
            done.append({"name": name, "error": str(exc)})
            if not args.json:
                print(f"{name}: not migrated: {exc}")
            continue
        done.append(migration.to_json())
        if not args.json:
            _say(migration)
    if args.json:
        print(json.dumps(done, indent=2))
    elif not targets:
        print(f"no datasets under {data_dir}")
    return FAILED if failed else 0


def _say(migration: Migration) -> None:
    if not migration.needed:
        print(f"{migration.name}: at version {migration.to_version}, nothing to do")
        return
    verb = "would migrate" if migration.dry_run else "migrated"
    if migration.from_version == migration.to_version:  # files or manifest out of the layout
        verb = "would bring" if migration.dry_run else "brought"
        print(f"{migration.name}: {verb} to the current layout (version {migration.to_version})")
    else:
        print(
            f"{migration.name}: {verb} from version {migration.from_version} to {migration.to_version}"
        )
    for action in migration.actions:
        print(f"  {'would ' if migration.dry_run else ''}{action}")


# --- formatting ----------------------------------------------------------------------------------


def _when(ns: int | None, *, seconds: bool = False) -> str:
    from mesh.times import iso

    text = iso(ns, "seconds" if seconds else "minutes")
    return text.replace("T", " ").rstrip("Z") if text else "-"


def _size(n: int) -> str:
    from mesh.fetcher.ledger import human_bytes

    return human_bytes(n)
