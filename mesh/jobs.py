"""One job runner for the services that take long jobs over the control channel.

The fetcher and the backtester both answer a command at once with a queued job, run the jobs one
at a time off the event loop, report progress on `job.<id>`, let a job be cancelled, and remember
the recent ones. That is this module, written once:

- `JobRunner.submit(kind, args, work)` queues a job and returns its `JobView` (mesh.replies);
  one worker thread runs the work functions in order.
- A work function gets a `JobContext`: `progress(fraction, message)` reports (and is where a
  cancel takes effect), `cancel` is the Event to hand to code that waits, `check()` raises if the
  job was cancelled. It returns `Finished(result, message)`.
- Progress is conflated per job: the first report goes out at once, then at most
  `per_second` a second, the latest report winning; a report still waiting when the job ends goes
  out before the final state, so the first and the last report always arrive.
- `cancel(job_id)`: a queued job is cancelled at once; a running one when its work next reports
  progress or checks (or when the code it waits in sees the Event).
- Any exception from a work function fails that job with a one-line message; the worker and the
  service go on. An exception of the service's own `expected` kinds is the message as it stands;
  any other is prefixed with its type and logged with its traceback, as a bug.
- Finished jobs are kept for `views()` and `view()`, at most `keep` of them (oldest go first);
  queued and running jobs are never dropped. At most `max_queued` jobs wait at once; one more is
  refused (`JobRefused`), so the `jobs` answer stays small enough for any client to read.

Every change is published as a `JobUpdate` through the `publish(topic, update)` hook given to
`start()`, in order, under the runner's lock; the hook must be quick and thread-safe. In a service,
`on_loop(loop, runtime.publish)` makes one that hands each update to the event loop's thread.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mesh import topics
from mesh.replies import JobView
from mesh.schema import JobState, JobUpdate

__all__ = [
    "Finished",
    "JobCancelled",
    "JobContext",
    "JobRefused",
    "JobRunner",
    "JobState",
    "JobView",
    "UnknownJob",
    "on_loop",
]

log = logging.getLogger(__name__)

PROGRESS_PER_SECOND = 10.0  # progress updates a second per job, at most
KEEP_FINISHED = 100  # finished jobs remembered
RUNNING_CAP = 0.99  # a running job's progress stays below this; done is 1.0
MESSAGE_CHARS = 500  # a job's message is one line of at most this many characters
MAX_ID_CHARS = 64  # a job id a client chooses (those made up are `<prefix>-` and 8 hex digits)
MAX_QUEUED = 1_000  # jobs waiting at once: more would make the `jobs` answer too large to read

Publish = Callable[[str, JobUpdate], None]


class JobCancelled(Exception):
    """Raised inside a job's work (by `JobContext.progress` or `check`) once it was cancelled."""


class JobRefused(ValueError):
    """A job that cannot be queued (the runner is not started, or its id is taken)."""


class UnknownJob(ValueError):
    """No job with that id (never queued, or forgotten with the oldest history)."""


@dataclass(frozen=True)
class Finished:
    """What a job's work returns.

    `result` goes into the job's view and its final update; `message` is the one line shown
    with it; `detail` is kept for the service alone (`JobRunner.detail`), e.g. a result too
    large to publish on `job.<id>`.
    """

    result: dict[str, Any] = field(default_factory=dict)
    message: str = "done"
    detail: Any = None


def on_loop(loop: asyncio.AbstractEventLoop, publish: Callable[[str, Any], None]) -> Publish:
    """A publish hook for a service's runner: `publish` runs on `loop`'s thread, in call order."""

    def hook(topic: str, update: JobUpdate) -> None:
        if not loop.is_closed():  # stopping: what is left to say goes nowhere
            loop.call_soon_threadsafe(publish, topic, update)

    return hook


def one_line(text: str, limit: int = MESSAGE_CHARS) -> str:
    """`text` on one line (runs of whitespace become one space), cut to `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(eq=False)
class _Job:
    """A job's mutable record; only the runner touches it, under its lock."""

    job_id: str
    kind: str
    args: dict[str, Any]
    work: Callable[[JobContext], Finished]
    message: str
    state: JobState = JobState.QUEUED
    progress: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)
    detail: Any = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = "cancelled"
    sent_at: float = -math.inf  # monotonic time of the last progress update published
    pending: bool = False  # a progress report is waiting for its turn

    def view(self) -> JobView:
        return JobView(
            job_id=self.job_id,
            state=self.state,
            kind=self.kind,
            progress=round(self.progress, 4),
            message=self.message,
            topic=topics.job(self.job_id),
            created=self.created,
            finished=self.finished,
            args=self.args,
            result=self.result,
        )

    def update(self) -> JobUpdate:
        return JobUpdate(
            job_id=self.job_id,
            kind=self.kind,
            state=self.state,
            progress=self.progress,
            message=self.message,
            result=self.result,
        )


class JobContext:
    """What a running job's work function is given: its id and arguments, progress, cancel."""

    def __init__(self, runner: JobRunner, job: _Job) -> None:
        self._runner = runner
        self._job = job
        self.job_id = job.job_id
        self.kind = job.kind
        self.args = job.args
        self.cancel = job.cancel  # hand this to code that waits (downloads, rate limits)

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far the job is (0..1) and what it is doing; raises `JobCancelled` if cancelled."""
        self.check()
        self._runner._report(self._job, fraction, message)

    def check(self) -> None:
        """Raise `JobCancelled` if the job was cancelled."""
        if self.cancel.is_set():
            raise JobCancelled(self._job.cancel_reason)


class JobRunner:
    """Queue, worker thread, progress conflation, cancel and history of one service's jobs."""

    def __init__(
        self,
        name: str,
        *,
        id_prefix: str = "job",
        keep: int = KEEP_FINISHED,
        per_second: float = PROGRESS_PER_SECOND,
        expected: tuple[type[BaseException], ...] = (),
        on_finished: Callable[[JobView, Any], None] | None = None,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        """`name` is the service's (for messages and thread names); `on_finished(view, detail)`
        runs right after a job's final update is published, under the same lock and order."""
        self.name = name
        self._publish_hook: Publish = lambda topic, update: None
        self._id_prefix = id_prefix
        self.keep = keep
        self.interval = 1.0 / per_second
        self.expected = expected
        self.max_queued = max_queued
        self._on_finished = on_finished
        self._lock = threading.Condition()
        self._jobs: OrderedDict[str, _Job] = OrderedDict()  # oldest first
        self._queue: deque[_Job] = deque()
        self._running: _Job | None = None
        self._totals = {JobState.DONE: 0, JobState.FAILED: 0, JobState.CANCELLED: 0}
        self._started = False
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._publish_failed = False

    # --- life ----------------------------------------------------------------------------------

    def start(self, publish: Publish) -> None:
        """Start the worker (and the thread that sends held progress reports), publishing with
        `publish(topic, update)`."""
        with self._lock:
            if self._started:
                return
            self._started = True
            self._publish_hook = publish
        self._threads = [
            threading.Thread(target=self._work_loop, name=f"{self.name}-jobs", daemon=True),
            threading.Thread(target=self._flush_loop, name=f"{self.name}-progress", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 1.5) -> None:
        """Cancel every queued and running job, then wait up to `timeout` s for the worker."""
        reason = f"the {self.name} stopped"
        with self._lock:
            self._stopping = True
            while self._queue:
                job = self._queue.popleft()
                job.cancel.set()
                self._finish(job, JobState.CANCELLED, reason)
            if self._running is not None:
                self._running.cancel_reason = reason
                self._running.cancel.set()
            self._lock.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # --- commands ------------------------------------------------------------------------------

    def submit(
        self,
        kind: str,
        args: dict[str, Any],
        work: Callable[[JobContext], Finished],
        *,
        job_id: str | None = None,
        message: str = "queued",
    ) -> JobView:
        """Queue `work` (run later on the worker thread) and return the queued job's view.

        `job_id` may be chosen by the caller (it must be a valid topic part and not belong to a
        queued or running job; a finished job of that id is replaced); otherwise one is made up.
        """
        if job_id is not None:
            topics.job(job_id)  # a bad id fails here, with the topic rules in the message
            if len(job_id) > MAX_ID_CHARS:
                raise JobRefused(f"a job id is at most {MAX_ID_CHARS} characters")
        with self._lock:
            if not self._started or self._stopping:
                raise JobRefused(f"the {self.name} is not taking jobs (starting or stopping)")
            if len(self._queue) >= self.max_queued:
                raise JobRefused(
                    f"the {self.name} has {len(self._queue):,} jobs waiting, as many as it takes: "
                    "wait for some to finish, or cancel some"
                )
            if job_id is None:
                job_id = self._new_id()
            elif job_id in self._jobs and not self._jobs[job_id].state.finished:
                raise JobRefused(f"job {job_id!r} is already {self._jobs[job_id].state}")
            job = _Job(job_id, kind, dict(args), work, one_line(message))
            self._jobs.pop(job_id, None)
            self._jobs[job_id] = job
            self._trim()
            self._queue.append(job)
            self._send(job)
            self._lock.notify_all()
            return job.view()

    def cancel(self, job_id: object) -> JobView:
        """Cancel a job: a queued one now, a running one at its next progress report or check."""
        with self._lock:
            job = self._get(job_id)
            if job.state is JobState.QUEUED:
                job.cancel.set()
                self._queue.remove(job)
                self._finish(job, JobState.CANCELLED, job.cancel_reason)
            elif job.state is JobState.RUNNING:
                job.cancel.set()
            return job.view()

    def view(self, job_id: object) -> JobView:
        with self._lock:
            return self._get(job_id).view()

    def views(self) -> list[JobView]:
        """Every remembered job, newest first."""
        with self._lock:
            return [job.view() for job in reversed(self._jobs.values())]

    def detail(self, job_id: object) -> Any:
        """What the job's work kept for the service (`Finished.detail`), or None."""
        with self._lock:
            return self._get(job_id).detail

    def counters(self) -> dict[str, int]:
        """Jobs queued and running now; done, failed and cancelled since the start."""
        with self._lock:
            return {
                "jobs_queued": len(self._queue),
                "jobs_running": int(self._running is not None),
                "jobs_done": self._totals[JobState.DONE],
                "jobs_failed": self._totals[JobState.FAILED],
                "jobs_cancelled": self._totals[JobState.CANCELLED],
            }

    # --- the worker ----------------------------------------------------------------------------

    def _work_loop(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                job = self._queue.popleft()
                job.state, job.message = JobState.RUNNING, "starting"
                self._running = job
                self._send(job)
            self._run(job)

    def _run(self, job: _Job) -> None:
        try:
            outcome = job.work(JobContext(self, job))
            if not isinstance(outcome, Finished):
                raise TypeError(f"a job's work returned {type(outcome).__name__}, not Finished")
        except BaseException as exc:  # noqa: BLE001 - whatever a job raises, the worker goes on
            state, message = self._failure(job, exc)
            with self._lock:
                self._running = None
                self._finish(job, state, message)
            return
        with self._lock:
            self._running = None
            self._finish(job, JobState.DONE, outcome.message, outcome)

    def _failure(self, job: _Job, exc: BaseException) -> tuple[JobState, str]:
        if job.cancel.is_set() or isinstance(exc, JobCancelled):
            return JobState.CANCELLED, job.cancel_reason
        if isinstance(exc, self.expected):
            return JobState.FAILED, str(exc) or type(exc).__name__
        log.error("%s job %s failed", self.name, job.job_id, exc_info=exc)
        return JobState.FAILED, f"{type(exc).__name__}: {exc}"

    def _finish(
        self, job: _Job, state: JobState, message: str, outcome: Finished | None = None
    ) -> None:
        """Under the lock: the last progress report, the final state, the hook, the history."""
        if job.pending:
            self._send(job)
        job.pending = False
        if outcome is not None:
            job.progress, job.result, job.detail = 1.0, outcome.result, outcome.detail
        job.state, job.message, job.finished = state, one_line(message), time.time()
        self._totals[state] += 1
        self._send(job)
        if self._on_finished is not None:
            try:
                self._on_finished(job.view(), job.detail)
            except Exception:
                log.exception("%s: after job %s finished", self.name, job.job_id)
        self._trim()

    # --- progress ------------------------------------------------------------------------------

    def _report(self, job: _Job, fraction: float, message: str) -> None:
        with self._lock:
            if job.state is not JobState.RUNNING:
                return
            if isinstance(fraction, (int, float)) and math.isfinite(fraction):
                job.progress = max(job.progress, min(max(float(fraction), 0.0), RUNNING_CAP))
            job.message = one_line(message) or job.message
            if time.monotonic() - job.sent_at >= self.interval:
                self._send_progress(job)
            else:
                job.pending = True
                self._lock.notify_all()

    def _flush_loop(self) -> None:
        """Send each held progress report when its job's interval is up."""
        with self._lock:
            while not self._stopping:
                job = self._running
                if job is None or not job.pending:
                    self._lock.wait()
                    continue
                wait = job.sent_at + self.interval - time.monotonic()
                if wait > 0:
                    self._lock.wait(wait)
                    continue
                self._send_progress(job)

    def _send_progress(self, job: _Job) -> None:
        job.pending = False
        self._send(job)
        job.sent_at = time.monotonic()  # after: the next one is a full interval after this one

    # --- helpers -------------------------------------------------------------------------------

    def _send(self, job: _Job) -> None:
        try:
            self._publish_hook(topics.job(job.job_id), job.update())
        except Exception as exc:  # the bus going away must not stop the jobs
            if not self._publish_failed:
                self._publish_failed = True
                log.warning("%s: a job update could not be published: %s", self.name, exc)

    def _get(self, job_id: object) -> _Job:
        if not isinstance(job_id, str):
            raise UnknownJob(
                f"a job id is text, such as {self._id_prefix}-0a1b2c3d; got {type(job_id).__name__}"
            )
        job = self._jobs.get(job_id)
        if job is None:
            raise UnknownJob(f"no job {str(job_id)[:80]!r}")
        return job

    def _new_id(self) -> str:
        while True:
            job_id = f"{self._id_prefix}-{secrets.token_hex(4)}"
            if job_id not in self._jobs:
                return job_id

    def _trim(self) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.state.finished]
        for job_id in finished[: max(0, len(finished) - self.keep)]:
            del self._jobs[job_id]
