"""What every `massive` command shares: the one-line error, loading the configuration, the parser
that reports bad usage in one line, and the shape of a command module.

`mesh/cli.py` builds `massive` from an explicit list of command modules (`mesh.cli.COMMANDS`),
each with `register(subparsers)`. Those modules take what they share from here, never from
`mesh.cli`, so the command line has no import cycles, and no library module ever needs a command
module (the import contracts in pyproject.toml check both). Argument types (`positive_int`, ...)
and the one-line usage parser itself (`OneLineParser`, which commands take from here) live in
`mesh.argtypes`, because the services' own option parsers (`massive run kdb --batch-rows N`) use
them too.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Protocol

from mesh.argtypes import USAGE_ERROR, OneLineParser
from mesh.config import Config, ConfigError

if TYPE_CHECKING:
    from typing import TypeAlias

    # what `register` is given: `massive`'s subparsers, which make OneLineParser parsers
    Subparsers: TypeAlias = "argparse._SubParsersAction[OneLineParser]"

FAILED = 1  # exit code: the command could not do what was asked
BAD_USAGE = USAGE_ERROR  # exit code: the command was asked wrongly (argparse's own, 2)


class CliError(Exception):
    """A user-facing error: `massive` prints it as one line and exits with `code`."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


def load_config() -> Config:
    """The configuration for a command; a value that does not parse is bad usage (exit 2)."""
    try:
        return Config.load()
    except ConfigError as exc:
        raise CliError(f"configuration: {exc}", BAD_USAGE) from None


class CommandModule(Protocol):
    """A module that adds its subcommands to `massive`: one entry of `mesh.cli.COMMANDS`.

    `register` adds one or more parsers to `subparsers`, each with a one-line `help` (what
    `massive --help` lists) and `set_defaults(func=...)`, the function that runs the command and
    returns its exit code.
    """

    __name__: str  # the module's name, for messages about it

    def register(self, subparsers: Subparsers) -> None: ...
