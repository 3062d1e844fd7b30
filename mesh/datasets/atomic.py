"""All-or-nothing writes of dataset files: a hidden temporary, fsync'd, then renamed into place.

A reader (or a glob) never sees half a file: until the rename the data sits under a hidden name
(`.bars_5m.parquet.<pid>.tmp`) that every reader skips, and the rename replaces the old file in
one step. The folder is fsync'd after the rename so a power cut keeps the new name.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mesh.files import replace_file

COMPRESSION = "zstd"


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Call `write(temporary)`, then make the result `path` in one rename (`mesh.files`)."""
    return replace_file(path, write)


def write_parquet(path: Path, table: pa.Table) -> Path:
    return write_atomic(path, lambda tmp: pq.write_table(table, tmp, compression=COMPRESSION))


def write_json(path: Path, data: dict[str, Any]) -> Path:
    text = json.dumps(data, indent=2) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text))
