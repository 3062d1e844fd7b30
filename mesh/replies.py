"""The typed answers of the job commands on the control channel, one definition for both ends.

The fetcher and the backtester return these structs from their `cmd_*` handlers; mesh.control
encodes a struct as a msgpack map of its fields, the shape clients have always read. A client (the
CLI, the dashboard, a script) turns a reply's `result` back into the same struct with `read()`,
which checks every field on the way in: an answer of another shape becomes one `UnreadableReply`
line at the door, not a KeyError somewhere later.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from mesh.schema import JobState

T = TypeVar("T")


class JobView(msgspec.Struct, frozen=True, kw_only=True):
    """A job as the `jobs`, `job` and `cancel` commands, and those that queue one, describe it."""

    job_id: str
    state: JobState
    kind: str = ""  # "fetch", "backfill", "backtest"
    progress: float = 0.0  # 0..1; 1.0 only when done
    message: str = ""  # what it is doing, or why it failed (one line)
    topic: str = ""  # job.<id>: where its updates are published
    created: float = 0.0  # when it was queued, seconds since the epoch
    finished: float | None = None  # when it finished, or None
    args: dict[str, Any] = {}  # what was asked, as the service understood it
    result: dict[str, Any] = {}  # a finished job's outcome, as in its last update


class BacktestRun(msgspec.Struct, frozen=True):
    """One strategy with its parameters, as a backtest job will run it."""

    strategy: str
    params: dict[str, Any] = {}


class BacktestJob(JobView, frozen=True, kw_only=True):
    """A backtester job: the common view plus what `jobs` has always said of a backtest.

    `result` stays empty here (a sweep's metrics would make `jobs` huge): the `result` command,
    and `bt.result.<id>` on the bus, carry the whole outcome.
    """

    dataset: str = ""
    runs: list[BacktestRun] = []
    error: str = ""  # the message of a failed or cancelled job, else ""
    run_dirs: list[str | None] = []


class BacktestQueued(msgspec.Struct, frozen=True, kw_only=True):
    """The backtester's answer to `run`: the job's id, how many runs, and where to listen."""

    job_id: str
    state: JobState
    runs: int
    progress_topic: str
    result_topic: str


class UnreadableReply(ValueError):
    """A reply whose result is not the struct its command answers with; the message says how."""


def read(result: object, kind: type[T]) -> T:
    """`result` (a reply's result, as decoded from the wire) as `kind`, or `UnreadableReply`."""
    try:
        return msgspec.convert(result, kind)
    except msgspec.ValidationError as exc:
        name = kind.__name__ if isinstance(kind, type) else str(kind).replace("mesh.replies.", "")
        raise UnreadableReply(f"an answer that is not a {name}: {exc}") from None
