"""Reading one flat-file day of minute aggregates: stream-decompress, keep the requested symbols.

A stocks `minute_aggs_v1` day is a gzipped CSV of every ticker's minute bars (2-3 million rows,
tens of MB). Parsing all of it to keep 20 symbols is most of the cost, so the file is read as a
stream of decompressed chunks (ISA-L's inflate when the `isal` package is installed, else zlib;
in a helper thread) and each chunk goes through a byte-level prefilter first: numpy
finds the line starts and compares each line's first four bytes with the requested tickers (plus
the comma that ends them). pyarrow then parses only the candidate lines, with fixed column types,
and applies the exact symbol filter. A chunk the prefilter cannot read safely (quoted tickers) is
parsed whole by pyarrow instead. Memory stays at a few chunks whatever the file size.

The same pass is the integrity check: a gzip that ends early or fails its CRC, a header that is
not the documented one, or a value that does not parse raises `DamagedFile`, and nothing is kept.
Provider column names (`ticker`, `window_start`, ...) stay in this module.
"""

from __future__ import annotations

import queue
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from mesh.fetcher.bars import MINUTE_SCHEMA
from mesh.fetcher.errors import FlatFileError

_inflate: ModuleType
try:  # ISA-L inflates gzip about four times faster than zlib; zlib is the fallback
    from isal import isal_zlib as _inflate
except ImportError:  # pragma: no cover - depends on the environment
    _inflate = zlib
_INFLATE_ERRORS = (zlib.error, _inflate.error)

# us_stocks_sip/minute_aggs_v1 (and day_aggs_v1): exact header, in order
HEADER = ("ticker", "volume", "open", "close", "high", "low", "window_start", "transactions")
_TYPES = {
    "ticker": pa.string(),
    "volume": pa.float64(),  # fractional volumes appear from 2026
    "open": pa.float64(),
    "close": pa.float64(),
    "high": pa.float64(),
    "low": pa.float64(),
    "window_start": pa.int64(),  # Unix ns, start of the minute
    "transactions": pa.int64(),
}
# provider column -> our column (mesh.fetcher.bars.MINUTE_SCHEMA)
_RENAME = {
    "ticker": "symbol",
    "window_start": "ts",
    "volume": "volume",
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "transactions": "transactions",
}
READ_SIZE = 1 << 20  # compressed bytes per read


class DamagedFile(FlatFileError):
    """A day file that is truncated, corrupt or not in the documented format."""


def _decompressed_chunks(path: Path, read_size: int = READ_SIZE) -> Iterator[bytes]:
    """Whole lines of the decompressed file, a few MB at a time; raises DamagedFile if it ends early."""
    decomp = _inflate.decompressobj(zlib.MAX_WBITS | 16)
    carry = b""
    with open(path, "rb") as f:
        while True:
            comp = f.read(read_size)
            if not comp:
                break
            try:
                data = decomp.decompress(comp)
                while (
                    decomp.eof and decomp.unused_data
                ):  # a multi-member gzip: start the next member
                    rest = decomp.unused_data
                    decomp = _inflate.decompressobj(zlib.MAX_WBITS | 16)
                    data += decomp.decompress(rest)
            except _INFLATE_ERRORS as exc:
                raise DamagedFile(f"{path.name}: not a valid gzip stream ({exc})") from None
            buf = carry + data if carry else data
            cut = buf.rfind(b"\n") + 1
            if cut:
                yield buf[:cut]
                carry = buf[cut:]
            else:
                carry = buf
    if not decomp.eof:
        raise DamagedFile(f"{path.name}: the gzip stream ends early (truncated download?)")
    if carry.strip():
        yield carry + b"\n"


def _threaded(chunks: Iterator[bytes], depth: int = 3) -> Iterator[bytes]:
    """Decompress in a helper thread (zlib releases the GIL) while the caller filters."""
    q: queue.Queue[object] = queue.Queue(depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for chunk in chunks:
                if stop.is_set():
                    return
                q.put(chunk)
            q.put(done)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=produce, name="flatfile-inflate", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def _prefix_constants(symbols: Sequence[str]) -> list[tuple[np.uint32, np.uint32]]:
    """(value, mask) of the first four bytes of `SYMBOL,` for each symbol, little-endian."""
    out = []
    for sym in symbols:
        head = (sym + ",").encode("ascii")[:4]
        value = int.from_bytes(head.ljust(4, b"\0"), "little")
        mask = int.from_bytes((b"\xff" * len(head)).ljust(4, b"\0"), "little")
        out.append((np.uint32(value), np.uint32(mask)))
    return out


def _candidate_lines(
    chunk: bytes, constants: list[tuple[np.uint32, np.uint32]]
) -> list[bytes] | None:
    """Lines of `chunk` that may belong to a requested symbol; None if the chunk has quoted tickers."""
    a = np.frombuffer(chunk, np.uint8)
    ends = np.flatnonzero(a == 10)
    if len(ends) == 0:
        return []
    starts = np.empty(len(ends), np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    padded = np.concatenate((a, np.zeros(4, np.uint8)))
    first = padded[starts]
    if (first == 34).any():  # '"': a quoted field at a line start; let pyarrow read this chunk
        return None
    key = first.astype(np.uint32)
    key |= padded[starts + 1].astype(np.uint32) << 8
    key |= padded[starts + 2].astype(np.uint32) << 16
    key |= padded[starts + 3].astype(np.uint32) << 24
    keep = np.zeros(len(key), dtype=bool)
    for value, mask in constants:
        keep |= (key == value) if mask == 0xFFFFFFFF else ((key & mask) == value)
    idx = np.flatnonzero(keep)
    return [chunk[s:e] for s, e in zip(starts[idx].tolist(), (ends[idx] + 1).tolist(), strict=True)]


def _parse(name: str, header: bytes, body: bytes | list[bytes]) -> pa.Table:
    data = header + (b"".join(body) if isinstance(body, list) else body)
    try:
        return pcsv.read_csv(
            pa.py_buffer(data),
            read_options=pcsv.ReadOptions(use_threads=False, block_size=1 << 24),
            convert_options=pcsv.ConvertOptions(
                column_types=_TYPES, strings_can_be_null=False, quoted_strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DamagedFile(f"{name}: a row does not parse ({str(exc).splitlines()[0]})") from None


def read_minute_file(
    path: Path, symbols: Sequence[str], *, on_progress: Callable[[int], None] | None = None
) -> pa.Table:
    """The minute bars of `symbols` in one day file, as a table in `MINUTE_SCHEMA` (any order).

    Raises `DamagedFile` for a truncated or corrupt gzip, a changed header or a bad value.
    `on_progress(decompressed_bytes)` is called after each chunk.
    """
    path = Path(path)
    constants = _prefix_constants(symbols)
    header: bytes | None = None
    pieces: list[bytes] = []
    tables: list[pa.Table] = []
    for chunk in _threaded(_decompressed_chunks(path)):
        if header is None:
            line_end = chunk.find(b"\n") + 1
            header = chunk[:line_end]
            got = tuple(header.decode("utf-8", "replace").strip().split(","))
            if got != HEADER:
                raise DamagedFile(
                    f"{path.name}: unexpected CSV header {','.join(got)!r}; expected {','.join(HEADER)!r} (the file format changed?)"
                )
            chunk = chunk[line_end:]
        if on_progress is not None:
            on_progress(len(chunk))
        lines = _candidate_lines(chunk, constants)
        if lines is None:
            tables.append(_parse(path.name, header, chunk))
        else:
            pieces.extend(lines)
    if header is None:
        raise DamagedFile(f"{path.name}: the file is empty (no CSV header)")
    if pieces:
        tables.append(_parse(path.name, header, pieces))
    if not tables:
        return MINUTE_SCHEMA.empty_table()
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    table = table.filter(pc.is_in(table["ticker"], value_set=pa.array(list(symbols), pa.string())))
    for column in HEADER:
        if table[column].null_count:
            raise DamagedFile(f"{path.name}: column {column!r} has empty values")
    return (
        pa.table({_RENAME[c]: table[c] for c in _RENAME})
        .select(MINUTE_SCHEMA.names)
        .cast(MINUTE_SCHEMA)
    )


def read_tickers(path: Path) -> set[str]:
    """Every ticker in a (small) day file, e.g. `day_aggs_v1`: the symbols that traded that day."""
    path = Path(path)
    data = b"".join(_decompressed_chunks(path))
    line_end = data.find(b"\n") + 1
    got = tuple(data[:line_end].decode("utf-8", "replace").strip().split(","))
    if got != HEADER:
        raise DamagedFile(
            f"{path.name}: unexpected CSV header {','.join(got)!r}; expected {','.join(HEADER)!r}"
        )
    try:
        table = pcsv.read_csv(
            pa.py_buffer(data),
            convert_options=pcsv.ConvertOptions(
                include_columns=["ticker"], column_types={"ticker": pa.string()}
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DamagedFile(
            f"{path.name}: a row does not parse ({str(exc).splitlines()[0]})"
        ) from None
    return set(table["ticker"].to_pylist())
