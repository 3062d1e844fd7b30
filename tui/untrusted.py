"""Values that came from outside (the bus, a service's reply, a file), shown without trusting them.

Anyone who can reach the bus can publish, so a service name, an event's text or a heartbeat's
counters may be markup-looking text (`[/b]`), terminal escape sequences, ten megabytes, NaN, a
string where a number belongs, or a dict nested a thousand levels deep. Everything the dashboard
draws from such a value goes through here: text comes back as a rich `Text` (never parsed as
markup) with control characters made visible and its length capped; numbers are formatted only
when they are numbers and finite; nested values are summarised to a bounded depth and size,
without recursion. None of these functions raises.
"""

from __future__ import annotations

import math
import re
from typing import Any

from rich.text import Text

TEXT_LIMIT = 500  # characters of one shown text
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROLS_AND_NEWLINES = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SHORT = {"\t": " ", "\n": " ", "\r": " "}


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    return _SHORT.get(char) or f"\\x{ord(char):02x}"


def clean(value: Any, limit: int = TEXT_LIMIT, *, one_line: bool = True) -> str:
    """`value` as plain text: control characters (escape sequences too) shown as `\\x1b`, newlines
    folded into spaces when `one_line`, at most `limit` characters (an ellipsis says it was cut)."""
    text = value if isinstance(value, str) else brief(value, limit)
    if len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    return (_CONTROLS_AND_NEWLINES if one_line else _CONTROLS).sub(_visible, text)


def literal(value: Any, style: str = "", limit: int = TEXT_LIMIT, *, one_line: bool = True) -> Text:
    """`clean(value)` as a `Text`, drawn exactly as written: `[red]` stays `[red]`."""
    return Text(clean(value, limit, one_line=one_line), style=style, end="")


def finite(value: Any) -> float | None:
    """`value` as a float when it is a finite int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def number(value: Any, spec: str = ",", fallback: str | None = None) -> str:
    """`format(value, spec)` for a finite number; otherwise `fallback`, or the value as clean text."""
    if finite(value) is not None:
        try:
            return format(value, spec)
        except (ValueError, TypeError, OverflowError):
            pass
    return clean(value, 40) if fallback is None else fallback


def amount(value: Any, default: float = 0.0) -> float:
    """A count or quantity to compute with: finite and not negative, else `default`."""
    number = finite(value)
    return number if number is not None and number >= 0 else default


def total(value: Any, depth: int = 4) -> float:
    """The sum of the numbers in `value` (a number, or a dict of them, nested at most `depth` deep)."""
    if isinstance(value, dict):
        if depth <= 0:
            return 0.0
        return math.fsum(total(v, depth - 1) for v in list(value.values())[:1000])
    return finite(value) or 0.0


def brief(value: Any, limit: int = 120, depth: int = 3) -> str:
    """A short, bounded rendering of any decoded value (str, number, list, dict, nested): never
    more than about `limit` characters, never deeper than `depth`, never recursing further."""
    parts: list[str] = []
    size = 0

    def put(piece: str) -> bool:
        nonlocal size
        parts.append(piece)
        size += len(piece)
        return size < limit

    def walk(item: Any, level: int) -> bool:
        if isinstance(item, str):
            return put(item if len(item) <= limit else item[:limit] + "…")
        if isinstance(item, bool) or item is None:
            return put(str(item))
        if isinstance(item, int):
            return put(str(item) if -(10**30) < item < 10**30 else f"{float(item):.3g}")
        if isinstance(item, float):
            return put(repr(item))
        if isinstance(item, dict | list | tuple):
            is_dict = isinstance(item, dict)
            if level >= depth:
                return put("{…}" if is_dict else "[…]")
            if not put("{" if is_dict else "["):
                return False
            entries = list(item.items()) if isinstance(item, dict) else list(item)
            for i, entry in enumerate(entries):
                if i and not put(", "):
                    return False
                if is_dict:
                    if not walk(entry[0], depth) or not put(": "):
                        return False
                    entry = entry[1]
                if not walk(entry, level + 1):
                    return False
            return put("}" if is_dict else "]")
        return put(f"<{type(item).__name__}>")

    if not walk(value, 0):
        parts.append("…")
    text = "".join(parts)
    return text if len(text) <= limit + 1 else text[:limit] + "…"
