"""Ctrl-C around a pool's start: it stops the command, and a worker forked after the command has
gone ends without multiprocessing's traceback."""

from __future__ import annotations

import subprocess
import sys

# A worker's start: multiprocessing reads its start-up message from a pipe; here the command has
# gone and the pipe is closed, so the read fails as it does after a Ctrl-C. The forkserver's
# child then hands the error to sys.excepthook, as this script does.
STARTING = """
import os, sys
{setup}
from multiprocessing import spawn
r, w = os.pipe()
os.close(w)
try:
    spawn._main(r, os.dup(r))
except Exception:
    sys.excepthook(*sys.exc_info())
"""

OWN_FAILURE = """
import sys
{setup}
try:
    raise FileNotFoundError("a strategy's own missing file")
except Exception:
    sys.excepthook(*sys.exc_info())
"""


def stderr_of(script: str, setup: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script.format(setup=setup)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stderr


def test_a_worker_starting_after_its_command_has_gone_prints_nothing() -> None:
    assert "EOFError" in stderr_of(STARTING, "")  # multiprocessing alone: a traceback
    assert stderr_of(STARTING, "import mesh.parallel_server") == ""


def test_a_workers_own_failure_is_still_printed() -> None:
    err = stderr_of(OWN_FAILURE, "import mesh.parallel_server")
    assert "Traceback" in err and "a strategy's own missing file" in err


def test_every_fork_server_imports_it_first() -> None:
    from mesh import parallel

    assert parallel._preload(["mesh.backtest.sweep", parallel.SERVER]) == [
        parallel.SERVER,
        "mesh.backtest.sweep",
    ]


CTRL_C_AS_THE_SERVER_STARTS = """
import os, signal, sys
from multiprocessing import util
from mesh import parallel

spawn = util.spawnv_passfds

def interrupted_spawn(*args):
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C at the terminal, as the fork server starts
    return spawn(*args)

util.spawnv_passfds = interrupted_spawn
try:
    parallel.start_pool_early(["json"])
except KeyboardInterrupt:
    print("interrupted")
    sys.exit(0)
print("ran on")
"""


def test_a_ctrl_c_as_the_fork_server_starts_still_stops_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CTRL_C_AS_THE_SERVER_STARTS],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "interrupted", (done.stdout, done.stderr)
