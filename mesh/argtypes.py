"""Argument types and the parser for every command line in the mesh: one wording for one kind of
mistake, in one line.

Used by the `massive` commands and by the services' own option parsers (`massive run NAME
--help`), which is why they are not in mesh.commandline with the rest of what commands share.
"""

from __future__ import annotations

import argparse
import math
from typing import NoReturn

USAGE_ERROR = 2  # exit code of a command asked wrongly (argparse's own)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, and which points at `--help`.

    Subcommand parsers made with `add_subparsers().add_parser(...)` are of the same class, so
    every `massive` command and every service's options answer a mistake the same way, e.g.
    `massive tap: argument --count: expected a positive number, got -3 (see massive tap --help)`.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    value = _whole_number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def worker_count(text: str) -> int:
    """--workers: a positive number no machine would fail to start (mesh.parallel.MAX_WORKERS)."""
    from mesh.parallel import MAX_WORKERS

    value = positive_int(text)
    if value > MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_WORKERS}, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
