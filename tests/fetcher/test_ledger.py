"""The quota ledger: limits hold across processes, the minute window slides, bytes are capped."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mesh.fetcher.errors import QuotaExceeded
from mesh.fetcher.fetch import Fetcher
from mesh.fetcher.ledger import Limits, QuotaLedger
from mesh.fetcher.request import make_request
from mesh.sim.server import SimServer
from tests.fetcher.conftest import config_of, sim_env

ROOT = Path(__file__).resolve().parents[2]

WORKER = """
import sys
from pathlib import Path
from mesh.fetcher.errors import QuotaExceeded
from mesh.fetcher.ledger import Limits, QuotaLedger
from mesh.fetcher.rest import RestClient

url, ledger_path = sys.argv[1], Path(sys.argv[2])
rest = RestClient(url, "k", QuotaLedger(ledger_path, Limits(1000, 10, 0)), retries=0)
sent = refused = 0
for i in range(10):
    try:
        rest.get(f"/v1/ping/{i}")
        sent += 1
    except QuotaExceeded:
        refused += 1
print(sent, refused)
"""


@pytest.fixture
def counting_server() -> Iterator[tuple[list[str], str]]:
    seen: list[str] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            with lock:
                seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield seen, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_three_processes_never_exceed_ten_calls_a_day(
    counting_server: tuple[list[str], str], tmp_path: Path
) -> None:
    seen, url = counting_server
    ledger_path = tmp_path / "state" / "quota.sqlite"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, str(ledger_path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [tuple(map(int, p.communicate(timeout=60)[0].split())) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(sent for sent, _ in results) == 10 and sum(refused for _, refused in results) == 20
    assert len(seen) == 10  # what the server actually received
    assert QuotaLedger(ledger_path, Limits(1000, 10, 0)).snapshot()["rest_calls_today"] == 10


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000 * 10**9

    def __call__(self) -> int:
        return self.now


def test_minute_window_slides(tmp_path: Path) -> None:
    clock = Clock()
    ledger = QuotaLedger(tmp_path / "q.sqlite", Limits(2, 0, 0), clock=clock)
    ledger.acquire_rest("/a")
    clock.now += 30 * 10**9
    ledger.acquire_rest("/a")
    with pytest.raises(QuotaExceeded, match="per-minute") as err:
        ledger.acquire_rest("/a", wait=False)
    assert err.value.retry_after == pytest.approx(30, abs=0.2)
    clock.now += 31 * 10**9  # the first call has left the window
    ledger.acquire_rest("/a")
    snap = ledger.snapshot()
    assert (
        snap["rest_calls_minute"] == 2
        and snap["rest_calls_today"] == 3
        and snap["rest_calls_per_day"] == 0
    )


def test_waiting_for_the_minute_can_be_cut_short(tmp_path: Path) -> None:
    ledger = QuotaLedger(tmp_path / "q.sqlite", Limits(1, 0, 0))
    ledger.acquire_rest("/a")
    with pytest.raises(QuotaExceeded, match="next call possible in"):
        ledger.acquire_rest("/a", max_wait=1.0)


def test_flat_file_bytes_over_the_monthly_limit_go_to_rest(
    sim: SimServer, tmp_path: Path, days: list[dt.date]
) -> None:
    config = config_of(sim_env(sim, tmp_path / "data", MASSIVE_S3_BYTES_PER_MONTH="1000"), tmp_path)
    _, report = Fetcher(config).run(
        make_request(["AAPL", "MSFT", "SPY", "QQQ", "NVDA", "TSLA"], days[-2], days[-1], "1d")
    )
    assert "monthly flat-file allowance" in report.fallback and report.rest_calls == 6
    assert QuotaLedger.for_config(config).snapshot()["s3_bytes_month"] == 0
