"""The fetcher service against a REST server whose replies are broken: every job fails with one
clear line, nothing from a broken reply is written, and the service goes on answering and fetching.

`massive run fetcher` is a real process on a real bus; the REST server is a small HTTP server on
127.0.0.1 that answers every request with the body the test sets.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.meshproc import Mesh, wait_for

DAY = "2024-03-14"
BAR = {"o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5, "v": 100, "vw": 1.2, "t": 1710423000000, "n": 3}


def page(*results: Any, **extra: Any) -> bytes:
    return json.dumps({"status": "OK", "results": list(results), **extra}).encode()


BROKEN: dict[str, bytes] = {
    "results nested 5,000 deep": b'{"status":"OK","results":' + b"[" * 5000 + b"]" * 5000 + b"}",
    "an object nested 5,000 deep": b'{"status":"OK","x":'
    + b'{"a":' * 5000
    + b"1"
    + b"}" * 5000
    + b"}",
    "next_url nested 3,000 deep": b'{"status":"OK","results":[],"next_url":'
    + b"[" * 3000
    + b"]" * 3000
    + b"}",
    "300,000 empty results": b'{"status":"OK","results":[' + b"{}," * 300_000 + b"{}]}",
    "results not a list": b'{"status":"OK","results":"many"}',
    "a price of the wrong type": page(dict(BAR, o="cheap")),
    "a top-level array": b"[1, 2, 3]",
    "truncated": page(BAR, BAR)[:-30],
    "HTML": b"<html><body>502 Bad Gateway</body></html>",
    "empty": b"",
    "a time past int64 nanoseconds": page(dict(BAR, t=2**62)),
    "a time of 2**64-1": page(dict(BAR, t=2**64 - 1)),
    "a negative price": page(dict(BAR, l=-1.0)),
    "a price of 1e308": page(dict(BAR, h=1e308)),
    "a volume of 1e300": page(dict(BAR, v=1e300)),
    "a trade count of 2**64-1": page(dict(BAR, n=2**64 - 1)),
    "a number of 1e400": b'{"status":"OK","results":[{"o":1e400,"h":1,"l":1,"c":1,"v":1,"t":1710423000000}]}',
    "status ERROR": page(status="ERROR"),
}


class Replies:
    body = b"{}"


@pytest.fixture
def rest() -> Iterator[tuple[Replies, str]]:
    replies = Replies()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = replies.body
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield replies, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def finished(mesh: Mesh, job_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = mesh.call("fetcher", "job", job_id=job_id)
        return job if job["state"] in ("done", "failed") else None

    return wait_for(done, 30, 0.05, f"job {job_id} to finish")  # type: ignore[no-any-return]


def test_broken_rest_replies_fail_their_job_in_one_line_and_the_fetcher_carries_on(
    rest: tuple[Replies, str], tmp_path: Path
) -> None:
    replies, url = rest
    env = {
        "MASSIVE_REST_URL": url,
        "MASSIVE_REST_CALLS_PER_MINUTE": "10000",
        "MASSIVE_REST_CALLS_PER_DAY": "10000",
    }
    with Mesh(tmp_path / "data", env) as mesh:
        mesh.start("bus")
        mesh.start("fetcher")
        mesh.wait_up(["bus", "fetcher"], 30)
        failures = {}
        for what, body in BROKEN.items():
            replies.body = body
            job = mesh.call(
                "fetcher",
                "fetch",
                symbols="XYZ",
                start=DAY,
                end=DAY,
                interval="1m",
                method="rest",
                fallback=False,
            )
            result = finished(mesh, job["job_id"])
            failures[what] = result["message"]
            assert result["state"] == "failed", (what, result)
            assert mesh.answers("fetcher"), f"the fetcher stopped answering after {what}"
        for what, message in failures.items():
            assert "\n" not in message and "Error:" not in message and len(message) < 400, (
                what,
                message,
            )
        assert "deeply" in failures["an object nested 5,000 deep"]
        assert "impossible value" in failures["a time past int64 nanoseconds"]
        assert mesh.call("fetcher", "datasets") == [], "a broken reply was written as a dataset"
        replies.body = page(BAR, dict(BAR, t=BAR["t"] + 60_000))
        job = mesh.call(
            "fetcher",
            "fetch",
            symbols="XYZ",
            start=DAY,
            end=DAY,
            interval="1m",
            method="rest",
            fallback=False,
            name="after-junk",
        )
        result = finished(mesh, job["job_id"])
        assert result["state"] == "done", result
        assert result["result"]["rows"] == 2
        assert mesh.procs["fetcher"].alive
        assert "Traceback" not in mesh.procs["fetcher"].output(), mesh.procs["fetcher"].output()[
            -3000:
        ]
