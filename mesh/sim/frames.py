"""Massive JSON events rendered in bulk: fixed-width records built with numpy, cut into frames.

Encoding one Python object per event tops out well below the rate a benchmark needs, so the live
generator writes events as rows of a byte matrix instead: every numeric field is written digit by
digit with vectorised arithmetic into a fixed-width slot, left-padded with spaces (insignificant
whitespace in JSON, so any parser reads the same numbers). A frame is then one slice of rows:
`[` + rows + `]`. Events that come one at a time (bars, replayed dicts) use msgspec instead.

This module is also the one place that lays out the stock events the feed's sources render: the
T and Q records (`TickLayouts`: field order, names, widths, how conditions and trade ids are
written) and the A/AM bar events (`bar_event`), so the history playback and the synthetic
generator send the same shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import msgspec
import numpy as np

from mesh.sim.history import CONDITION_CODES

FRAME_EVENTS = 100  # events per frame at high rates, as Massive batches them

_SPACE = 32
_json = msgspec.json.Encoder()


def _pack(texts: Sequence[str]) -> np.ndarray:
    """4-character ASCII strings as little-endian uint32 words (one record word each)."""
    return np.frombuffer("".join(texts).encode(), np.uint32).copy()


_ZERO_PADDED = _pack([f"{i:04d}" for i in range(10_000)])
_SPACE_PADDED = _pack(["    "] + [f"{i:>4}" for i in range(1, 10_000)])
_LONE_ZERO = _pack(["   0"])[0]
_SMALL = _SPACE_PADDED.copy()
_SMALL[0] = _LONE_ZERO  # 0..9999 right-aligned in one word
_CENTS = _pack([f".{i:02d} " for i in range(100)])  # decimals plus a trailing space


def digits(values: np.ndarray, nwords: int, pad: bool = True) -> np.ndarray:
    """Non-negative integers right-aligned in `nwords` 4-character words, shape (n, nwords).

    With `pad` leading zeros become spaces (JSON ignores them); without, the number is zero-filled
    (used for fixed-length digit strings such as trade IDs).
    """
    v = values.astype(np.int64, copy=False)
    if nwords == 1 and pad:
        return np.take(_SMALL, v)[:, None]
    groups = []
    for _ in range(nwords):
        groups.append(v % 10_000)
        v = v // 10_000
    groups.reverse()
    out = np.empty((len(values), nwords), np.uint32)
    if not pad:
        for j, g in enumerate(groups):
            out[:, j] = np.take(_ZERO_PADDED, g)
        return out
    higher_zero = np.ones(len(values), bool)
    for j, g in enumerate(groups):
        word = np.where(higher_zero, np.take(_SPACE_PADDED, g), np.take(_ZERO_PADDED, g))
        if j == nwords - 1:
            word[higher_zero & (g == 0)] = _LONE_ZERO
        out[:, j] = word
        higher_zero &= g == 0
    return out


def sorted_digits(values: np.ndarray, nwords: int) -> np.ndarray:
    """`digits` for non-decreasing values (timestamps, sequence numbers): the high words change
    rarely, so they are rendered once per distinct value and repeated."""
    v = values.astype(np.int64, copy=False)
    if nwords == 1 or len(v) == 0:
        return digits(v, nwords)
    high = v // 10_000
    starts = np.flatnonzero(np.diff(high, prepend=high[0] - 1))
    counts = np.diff(np.append(starts, len(v)))
    out = np.empty((len(v), nwords), np.uint32)
    top = digits(high[starts], nwords - 1)
    top[high[starts] == 0] = _SPACE_PADDED[0]  # a number under 10,000 has no high digits, not a 0
    out[:, :-1] = np.repeat(top, counts, axis=0)
    low = v % 10_000
    lone = np.repeat(high[starts] == 0, counts)
    out[:, -1] = np.where(lone, np.take(_SMALL, low), np.take(_ZERO_PADDED, low))
    return out


def price_words(price: np.ndarray, int_words: int = 2) -> np.ndarray:
    """Dollar prices as `int_words` words of integer part and one `.dd ` word."""
    cents = np.round(price * 100).astype(np.int64)
    out = np.empty((len(price), int_words + 1), np.uint32)
    out[:, :int_words] = digits(cents // 100, int_words)
    out[:, int_words] = np.take(_CENTS, cents % 100)
    return out


def text_table(strings: Sequence[str]) -> np.ndarray:
    """Space-padded ASCII strings as a (k, words) uint32 lookup table, rows indexed by code."""
    raw = [s.encode() for s in strings]
    width = -(-max(len(r) for r in raw) // 4) * 4
    return (
        np.frombuffer(b"".join(r.ljust(width) for r in raw), np.uint32)
        .reshape(len(raw), width // 4)
        .copy()
    )


class Layout:
    """A fixed-width record of 4-byte words: literals and named slots, ending in `},`.

    Literals are padded with spaces so that every slot starts on a word boundary; the padding
    always falls between JSON tokens, where whitespace is insignificant.
    """

    def __init__(self, parts: Sequence[bytes | tuple[str, int]], words: int | None = None) -> None:
        self.slots: dict[str, tuple[int, int]] = {}
        template = bytearray()
        for part in parts:
            if isinstance(part, bytes):
                pad = b" " * (-(len(template) + len(part)) % 4)
                # pad outside strings: after a literal that closes one, before any other
                template += part + pad if part.startswith(b'"') else pad + part
            else:
                name, n = part
                self.slots[name] = (len(template) // 4, n)
                template += b" " * (4 * n)
        tail = b"},"
        template += b" " * (-(len(template) + len(tail)) % 4) + tail
        natural = len(template) // 4
        self.words = max(words or 0, natural)
        template = template[:-2] + b" " * (4 * (self.words - natural)) + tail
        self.template = np.frombuffer(bytes(template), np.uint32)

    def render(self, n: int, values: dict[str, np.ndarray]) -> np.ndarray:
        """(n, words) uint32 rows; `.view(np.uint8)` gives the bytes."""
        rows = np.empty((n, self.words), np.uint32)
        rows[:] = self.template
        for name, (start, w) in self.slots.items():
            rows[:, start : start + w] = values[name]
        return rows


LayoutPart: TypeAlias = bytes | tuple[str, int]  # a literal, or a (field, width in words) slot

# `,"c":[...]` per trade flags (every combination of CONDITION_CODES' bits); none: no field at all
CONDITIONS = text_table(
    [
        "".join([',"c":[', ",".join(str(c) for bit, c in CONDITION_CODES if flags & bit), "]"])
        if flags
        else ""
        for flags in range(2 ** len(CONDITION_CODES))
    ]
)
_POWERS = 10 ** np.arange(1, 16, dtype=np.int64)  # digit counts of trade ids up to 15 digits


@dataclass(frozen=True)
class TickFormat:
    """How a source's numbers fit the T and Q records; widths in 4-character words.

    `fixed_width_ids`: every trade id has exactly 4 x `trade_id_words` digits (written zero-filled
    inside a quoted slot); otherwise ids are right-aligned and the opening quote is placed before
    each one's first digit. `sorted_sequences`: sequence numbers never decrease within a step,
    so their high digits can be rendered once per run.
    """

    trade_id_words: int
    fixed_width_ids: bool
    quote_size_words: int
    sorted_sequences: bool


class TickLayouts:
    """The T and Q records of a universe, padded to one width, and their rendering from columns.

    Columns are numpy arrays keyed as the events' fields: trades `sym` (index into `symbols`),
    `i`, `x`, `p`, `s`, `flags`, `q`; quotes `sym`, `bx`, `bp`, `bs`, `ax`, `ap`, `as`, `q`.
    Timestamps (`t`, ms) are given apart, so that a delayed feed can shift them.
    """

    def __init__(self, symbols: Sequence[str], tapes: np.ndarray, fmt: TickFormat) -> None:
        self.sym = text_table([f'"sym":"{s}"' for s in symbols])
        self.tapes = tapes  # symbol index -> tape (`z`)
        self.format = fmt
        sw, iw = self.sym.shape[1], fmt.trade_id_words
        trade: list[LayoutPart] = [
            b'{"ev":"T",',
            ("sym", sw),
            b',"i":"' if fmt.fixed_width_ids else b',"i":',
            ("i", iw),
            b'","x":',
            ("x", 1),
            b',"p":',
            ("p", 3),
            b',"s":',
            ("s", 2),
            ("c", CONDITIONS.shape[1]),
            b',"t":',
            ("t", 4),
            b',"q":',
            ("q", 3),
            b',"z":',
            ("z", 1),
        ]
        qw = fmt.quote_size_words
        quote: list[LayoutPart] = [
            b'{"ev":"Q",',
            ("sym", sw),
            b',"bx":',
            ("bx", 1),
            b',"bp":',
            ("bp", 3),
            b',"bs":',
            ("bs", qw),
            b',"ax":',
            ("ax", 1),
            b',"ap":',
            ("ap", 3),
            b',"as":',
            ("as", qw),
            b',"t":',
            ("t", 4),
            b',"q":',
            ("q", 3),
            b',"z":',
            ("z", 1),
        ]
        self.words = max(Layout(trade).words, Layout(quote).words)
        self.trade, self.quote = Layout(trade, self.words), Layout(quote, self.words)
        self._id_end = (self.trade.slots["i"][0] + iw) * 4  # the byte after an id's digits

    def rows(self, n: int) -> np.ndarray:
        """Room for `n` T or Q records."""
        return np.empty((n, self.words), np.uint32)

    def _sequence(self, q: np.ndarray) -> np.ndarray:
        return sorted_digits(q, 3) if self.format.sorted_sequences else digits(q, 3)

    def trades(self, tr: dict[str, np.ndarray], t_ms: np.ndarray) -> np.ndarray:
        fixed, n = self.format.fixed_width_ids, len(t_ms)
        rows = self.trade.render(n, {
            "sym": np.take(self.sym, tr["sym"], axis=0), "i": digits(tr["i"], self.format.trade_id_words, pad=not fixed),
            "x": digits(tr["x"], 1), "p": price_words(tr["p"]), "s": digits(tr["s"], 2),
            "c": np.take(CONDITIONS, tr["flags"], axis=0), "t": sorted_digits(t_ms, 4),
            "q": self._sequence(tr["q"]), "z": digits(self.tapes[tr["sym"]], 1),
        })  # fmt: skip
        if not fixed:  # the id is a JSON string: its opening quote goes just before its first digit
            width = 1 + np.searchsorted(_POWERS, tr["i"], side="right")
            rows.view(np.uint8)[np.arange(n), self._id_end - width - 1] = ord('"')
        return rows

    def quotes(self, q: dict[str, np.ndarray], t_ms: np.ndarray) -> np.ndarray:
        qw = self.format.quote_size_words
        return self.quote.render(len(t_ms), {
            "sym": np.take(self.sym, q["sym"], axis=0), "bx": digits(q["bx"], 1), "bp": price_words(q["bp"]),
            "bs": digits(q["bs"], qw), "ax": digits(q["ax"], 1), "ap": price_words(q["ap"]),
            "as": digits(q["as"], qw), "t": sorted_digits(t_ms, 4), "q": self._sequence(q["q"]),
            "z": digits(self.tapes[q["sym"]], 1),
        })  # fmt: skip


def bar_event(
    ev: str,
    symbol: str,
    start_ms: int,
    width_ms: int,
    bar: tuple[float, float, float, float, int, float, int],
    day: tuple[int, float, float],
) -> dict[str, Any]:
    """An A or AM event: `bar` is (open, high, low, close, volume, vwap, trades) of the window
    starting at `start_ms`, `day` the symbol's (volume, VWAP, official open) up to its end."""
    o, h, low, c, v, vw, n = bar
    av, a, op = day
    return {
        "ev": ev, "sym": symbol, "v": v, "av": av, "op": op, "vw": vw, "o": o, "c": c, "h": h,
        "l": low, "a": a, "z": v // max(n, 1), "s": start_ms, "e": start_ms + width_ms,
    }  # fmt: skip


def row_frames(rows: np.ndarray, per_frame: int = FRAME_EVENTS) -> list[bytes]:
    """Frames of up to `per_frame` rows; each row ends in `,`, the last one's is dropped."""
    out = []
    for i in range(0, len(rows), per_frame):
        body = rows[i : i + per_frame].tobytes()
        out.append(b"[" + body[:-1] + b"]")
    return out


def encode_event(event: object) -> bytes:
    return _json.encode(event)


def join_frames(encoded: Sequence[bytes], per_frame: int = FRAME_EVENTS) -> list[bytes]:
    """Frames from individually encoded events."""
    return [
        b"[" + b",".join(encoded[i : i + per_frame]) + b"]"
        for i in range(0, len(encoded), per_frame)
    ]


def status(status_: str, message: str) -> dict[str, str]:
    return {"ev": "status", "status": status_, "message": message}


def status_frame(*statuses: dict[str, str]) -> bytes:
    return _json.encode(list(statuses))
