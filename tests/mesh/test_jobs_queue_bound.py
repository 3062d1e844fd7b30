"""A runner takes at most `max_queued` waiting jobs: one more is refused in one line, and a
cancelled one makes room again (so no client can grow a service's queue, and its `jobs` answer,
without bound)."""

from __future__ import annotations

import threading

import pytest

from mesh.jobs import Finished, JobContext, JobRefused, JobRunner, JobState
from mesh.schema import JobUpdate


def test_one_job_more_than_the_queue_takes_is_refused_and_a_cancel_makes_room() -> None:
    release = threading.Event()

    def blocked(job: JobContext) -> Finished:
        release.wait(10)
        return Finished()

    runner = JobRunner("tester", id_prefix="t", max_queued=3)
    seen: list[JobUpdate] = []
    runner.start(lambda topic, update: seen.append(update))
    try:
        running = runner.submit("test", {}, blocked)
        while runner.view(running.job_id).state is JobState.QUEUED:
            threading.Event().wait(0.01)
        waiting = [runner.submit("test", {}, blocked) for _ in range(3)]
        with pytest.raises(JobRefused) as refused:
            runner.submit("test", {}, blocked)
        assert str(refused.value) == (
            "the tester has 3 jobs waiting, as many as it takes: "
            "wait for some to finish, or cancel some"
        )
        assert runner.cancel(waiting[0].job_id).state is JobState.CANCELLED
        assert runner.submit("test", {}, blocked).state is JobState.QUEUED
    finally:
        release.set()
        runner.stop()
