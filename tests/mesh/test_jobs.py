"""The job runner as a service's user meets it: cancel, progress, failures, history, stopping.

The runner publishes through its hook; here the hook records each update with the real clock's
time, so the tests see what a subscriber of `job.<id>` would, in order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from mesh import control, topics
from mesh.jobs import (
    Finished,
    JobContext,
    JobRefused,
    JobRunner,
    JobState,
    UnknownJob,
)
from mesh.replies import (
    BacktestJob,
    BacktestQueued,
    BacktestRun,
    JobView,
    UnreadableReply,
    read,
)
from mesh.schema import JobUpdate
from tests.meshproc import wait_for


class Expected(Exception):
    """A failure the service expects (its message is shown as it stands)."""


@dataclass
class Published:
    """Every update the runner published: (monotonic time, topic, update)."""

    seen: list[tuple[float, str, JobUpdate]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, topic: str, update: JobUpdate) -> None:
        with self.lock:
            self.seen.append((time.monotonic(), topic, update))

    def of(self, job_id: str) -> list[JobUpdate]:
        with self.lock:
            return [u for _, _, u in self.seen if u.job_id == job_id]

    def timed(self, job_id: str) -> list[tuple[float, JobUpdate]]:
        with self.lock:
            return [(t, u) for t, _, u in self.seen if u.job_id == job_id]


@pytest.fixture
def published() -> Published:
    return Published()


@pytest.fixture
def runner(published: Published) -> Iterator[JobRunner]:
    jobs = JobRunner("tester", id_prefix="t", keep=5, expected=(Expected,))
    jobs.start(published)
    yield jobs
    jobs.stop(timeout=5)


def finished(runner: JobRunner, job_id: str, timeout: float = 30) -> JobView:
    return wait_for(  # type: ignore[no-any-return]
        lambda: (view := runner.view(job_id)).state.finished and view,
        timeout,
        0.01,
        f"job {job_id} to finish",
    )


def done_with(value: str) -> Callable[[JobContext], Finished]:
    return lambda job: Finished({"value": value}, f"made {value}")


class Gate:
    """A job that reports progress and then holds until released (or cancelled), counting steps."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.steps = 0

    def __call__(self, job: JobContext) -> Finished:
        self.started.set()
        while not self.release.is_set():
            self.steps += 1
            job.progress(0.5, f"step {self.steps}")  # where a cancel takes effect
            time.sleep(0.01)
        return Finished({"steps": self.steps})


def test_a_queued_job_that_is_cancelled_never_runs_and_the_next_one_does(
    runner: JobRunner, published: Published
) -> None:
    gate = Gate()
    first = runner.submit("slow", {}, gate)
    ran = threading.Event()

    def never(job: JobContext) -> Finished:
        ran.set()
        return Finished()

    second = runner.submit("never", {}, never)
    third = runner.submit("after", {}, done_with("x"))
    assert gate.started.wait(5)

    cancelled = runner.cancel(second.job_id)

    assert cancelled.state is JobState.CANCELLED and cancelled.message == "cancelled"
    assert [u.state for u in published.of(second.job_id)] == ["queued", "cancelled"]
    gate.release.set()
    assert finished(runner, first.job_id).state is JobState.DONE
    assert finished(runner, third.job_id).result == {"value": "x"}
    assert not ran.is_set()
    assert runner.counters()["jobs_cancelled"] == 1 and runner.counters()["jobs_done"] == 2


def test_a_running_job_that_is_cancelled_stops_and_the_next_one_runs(
    runner: JobRunner, published: Published
) -> None:
    gate = Gate()
    slow = runner.submit("slow", {}, gate)
    after = runner.submit("after", {}, done_with("y"))
    assert gate.started.wait(5)

    answer = runner.cancel(slow.job_id)

    assert answer.state is JobState.RUNNING  # it stops at its next report
    view = finished(runner, slow.job_id, timeout=2)
    assert view.state is JobState.CANCELLED and view.message == "cancelled"
    steps = gate.steps
    time.sleep(0.1)
    assert gate.steps == steps, "the work went on after it was cancelled"
    assert published.of(slow.job_id)[-1].state == "cancelled"
    assert finished(runner, after.job_id).state is JobState.DONE


def test_a_job_waiting_on_its_cancel_event_wakes_when_cancelled(runner: JobRunner) -> None:
    waiting = threading.Event()

    def wait_long(job: JobContext) -> Finished:
        waiting.set()
        job.cancel.wait(60)  # as a download or a rate limit waits
        job.check()
        return Finished()

    job = runner.submit("wait", {}, wait_long)
    assert waiting.wait(5)
    started = time.monotonic()
    runner.cancel(job.job_id)
    assert finished(runner, job.job_id, timeout=2).state is JobState.CANCELLED
    assert time.monotonic() - started < 1


def test_progress_comes_at_most_ten_times_a_second_but_the_first_and_last_report_arrive(
    runner: JobRunner, published: Published
) -> None:
    reports = 3000

    def busy(job: JobContext) -> Finished:
        for step in range(reports):
            job.progress(step / reports, f"step {step}")
            time.sleep(0.0003)
        return Finished({"steps": reports}, "all steps")

    job = runner.submit("busy", {}, busy)
    view = finished(runner, job.job_id, timeout=30)
    timed = published.timed(job.job_id)
    updates = [u for _, u in timed]
    assert [u.state for u in updates][:2] == ["queued", "running"]
    assert updates[-1].state == "done" and updates[-1].progress == 1.0
    assert updates[-1].message == "all steps" == view.message
    progress = [(t, u) for t, u in timed[2:-1]]
    assert all(u.state == "running" for _, u in progress)
    assert progress[0][1].message == "step 0", "the first report goes out at once"
    assert progress[-1][1].message == f"step {reports - 1}", "the last report is not lost"
    duration = timed[-1][0] - timed[1][0]
    assert len(progress) <= duration * 10 + 3, (len(progress), duration)
    assert len(progress) >= 3, "held reports go out while the job runs"
    gaps = [b[0] - a[0] for a, b in zip(progress[:-1], progress[1:-1], strict=False)]
    assert min(gaps) >= 0.099, gaps  # the last may follow sooner: it goes out before `done`
    values = [u.progress for _, u in progress]
    assert values == sorted(values) and values[-1] < 1.0


def test_a_job_that_raises_fails_with_one_line_and_the_next_job_runs(
    runner: JobRunner, published: Published
) -> None:
    def bug(job: JobContext) -> Finished:
        raise KeyError("no such\ncolumn")

    def refused(job: JobContext) -> Finished:
        raise Expected("the quota is spent:\n  try tomorrow")

    def exits(job: JobContext) -> Finished:
        raise SystemExit(3)

    def wrong(job: JobContext) -> Finished:
        return {"not": "Finished"}  # type: ignore[return-value]

    works = {"bug": bug, "refused": refused, "exits": exits, "wrong": wrong}
    jobs = [runner.submit(kind, {}, work) for kind, work in works.items()]
    last = runner.submit("after", {}, done_with("z"))
    views = [finished(runner, job.job_id) for job in jobs]

    assert [v.state for v in views] == [JobState.FAILED] * 4
    assert views[0].message == "KeyError: 'no such\\ncolumn'"
    assert views[1].message == "the quota is spent: try tomorrow"
    assert views[2].message == "SystemExit: 3"
    assert views[3].message == "TypeError: a job's work returned dict, not Finished"
    assert all("\n" not in v.message for v in views)
    assert finished(runner, last.job_id).state is JobState.DONE
    assert published.of(jobs[1].job_id)[-1].message == views[1].message
    assert runner.counters()["jobs_failed"] == 4


def test_history_keeps_only_the_newest_finished_jobs(runner: JobRunner) -> None:
    ids = [runner.submit("n", {"n": n}, done_with(str(n))).job_id for n in range(8)]
    finished(runner, ids[-1])

    kept = runner.views()

    assert [v.job_id for v in kept] == ids[::-1][:5]  # newest first, `keep` of them
    assert [v.args["n"] for v in kept] == [7, 6, 5, 4, 3]
    with pytest.raises(UnknownJob, match=f"no job '{ids[0]}'"):
        runner.view(ids[0])
    with pytest.raises(UnknownJob):
        runner.cancel({"not": "an id"})


def test_queued_and_running_jobs_are_never_dropped_from_history(runner: JobRunner) -> None:
    gate = Gate()
    held = runner.submit("held", {}, gate)
    waiting = [runner.submit("w", {}, done_with("w")) for _ in range(7)]
    assert gate.started.wait(5)
    assert {v.job_id for v in runner.views()} == {held.job_id} | {w.job_id for w in waiting}
    gate.release.set()
    finished(runner, waiting[-1].job_id)
    assert len(runner.views()) == 5


def test_a_view_says_where_the_job_reports_and_a_chosen_id_in_use_is_refused(
    runner: JobRunner,
) -> None:
    gate = Gate()
    view = runner.submit("mine", {"a": 1}, gate, job_id="my-job", message="queued: mine")
    assert view == JobView(
        job_id="my-job",
        state=JobState.QUEUED,
        kind="mine",
        message="queued: mine",
        topic=topics.job("my-job"),
        created=view.created,
        args={"a": 1},
    )
    assert gate.started.wait(5)
    with pytest.raises(JobRefused, match="job 'my-job' is already running"):
        runner.submit("mine", {}, gate, job_id="my-job")
    with pytest.raises(topics.TopicError):
        runner.submit("mine", {}, gate, job_id="a.b")
    gate.release.set()
    finished(runner, "my-job")
    again = runner.submit(
        "mine", {}, done_with("again"), job_id="my-job"
    )  # a finished id is reused
    assert finished(runner, again.job_id).result == {"value": "again"}


def test_stopping_cancels_what_is_queued_and_running(published: Published) -> None:
    jobs = JobRunner("tester")
    with pytest.raises(JobRefused, match="not taking jobs"):
        jobs.submit("early", {}, done_with("x"))
    jobs.start(published)
    gate = Gate()
    running = jobs.submit("slow", {}, gate)
    queued = jobs.submit("later", {}, done_with("x"))
    assert gate.started.wait(5)

    jobs.stop(timeout=5)

    assert jobs.view(queued.job_id).state is JobState.CANCELLED
    assert jobs.view(running.job_id).state is JobState.CANCELLED
    assert jobs.view(running.job_id).message == "the tester stopped"
    with pytest.raises(JobRefused):
        jobs.submit("late", {}, done_with("x"))


FETCH_JOB_KEYS = "job_id kind args state progress message result topic created".split()
BACKTEST_JOB_KEYS = (
    "job_id state progress message dataset runs created finished error run_dirs".split()
)


def test_replies_keep_the_keys_clients_have_always_read(runner: JobRunner) -> None:
    """A client that reads replies as plain maps (scripts, older dashboards) finds every key."""
    view = runner.submit("fetch", {"symbols": ["AAPL"]}, done_with("x"))
    topics_of = {"progress_topic": "job.bt-1", "result_topic": "bt.result.bt-1"}
    queued = BacktestQueued(job_id="bt-1", state=JobState.QUEUED, runs=2, **topics_of)
    backtest = BacktestJob(
        **msgspec.structs.asdict(finished(runner, view.job_id)),
        dataset="daily",
        runs=[BacktestRun("buy-and-hold")],
        run_dirs=["data/backtests/x"],
    )

    def as_client_reads(result: object) -> Any:
        body = control.encode_reply(control.Reply(id="1", ok=True, result=result))
        return control.decode_reply(body).result

    fetch_job = as_client_reads(view)
    assert set(fetch_job) >= set(FETCH_JOB_KEYS)
    assert fetch_job["state"] == "queued" and fetch_job["topic"] == f"job.{view.job_id}"
    assert as_client_reads(queued) == {"job_id": "bt-1", "state": "queued", "runs": 2, **topics_of}
    listed = as_client_reads([backtest])[0]
    assert set(listed) >= set(BACKTEST_JOB_KEYS)
    assert listed["runs"] == [{"strategy": "buy-and-hold", "params": {}}]
    assert read(as_client_reads([backtest]), list[BacktestJob]) == [backtest]
    assert read(fetch_job, JobView) == view
    with pytest.raises(UnreadableReply, match="not a JobView"):
        read({"job_id": "x", "state": "exploded"}, JobView)
