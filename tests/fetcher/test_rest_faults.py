"""REST faults the simulator cannot produce, from a small scripted HTTP server on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mesh.fetcher.errors import RestProtocolError
from mesh.fetcher.ledger import Limits, QuotaLedger
from mesh.fetcher.rest import RestClient

DAY = dt.date(2024, 3, 14)
KEY = "secret-key-0123456789"
BAR = {"o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5, "v": 100, "vw": 1.2, "t": 1710423000000, "n": 3}


class Scripted:
    """Answers each request with the next (status, headers, body) of `script`; records requests."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], bytes]] = []
        self.requests: list[dict[str, Any]] = []


@pytest.fixture
def server() -> Iterator[tuple[Scripted, str]]:
    state = Scripted()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            state.requests.append(
                {
                    "path": self.path,
                    "auth": self.headers.get("Authorization"),
                    "at": time.monotonic(),
                }
            )
            status, headers, body = state.script.pop(0) if state.script else (500, {}, b"{}")
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def client(url: str, tmp_path: Path, **kw: Any) -> RestClient:
    return RestClient(
        url, KEY, QuotaLedger(tmp_path / "q.sqlite", Limits(100, 100, 0)), backoff=0.01, **kw
    )


def ok(body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


def test_next_url_is_followed_with_bearer_auth_and_no_key_in_the_url(
    server: tuple[Scripted, str], tmp_path: Path
) -> None:
    state, url = server
    state.script = [
        ok(
            {
                "status": "OK",
                "results": [BAR],
                "next_url": f"{url}/v2/aggs/ticker/AAPL/range/1/minute/1710423060000/2024-03-14?cursor=abc&apiKey=leaked",
            }
        ),
        ok({"status": "OK", "results": [{**BAR, "t": BAR["t"] + 60_000}]}),
    ]
    with client(url, tmp_path) as rest:
        table = rest.minute_bars("AAPL", DAY, DAY)
    assert table.num_rows == 2 and table["ts"].to_pylist() == [
        BAR["t"] * 10**6,
        (BAR["t"] + 60_000) * 10**6,
    ]
    assert (
        "limit=50000" in state.requests[0]["path"] and "adjusted=true" in state.requests[0]["path"]
    )
    assert (
        state.requests[1]["path"]
        == "/v2/aggs/ticker/AAPL/range/1/minute/1710423060000/2024-03-14?cursor=abc"
    )
    assert all(r["auth"] == f"Bearer {KEY}" for r in state.requests)
    assert all(KEY not in r["path"] for r in state.requests)


def test_body_that_is_not_json_is_a_clear_error(
    server: tuple[Scripted, str], tmp_path: Path
) -> None:
    state, url = server
    state.script = [(200, {"Content-Type": "text/html"}, b"<html>maintenance</html>")]
    with client(url, tmp_path) as rest, pytest.raises(RestProtocolError, match="not JSON"):
        rest.minute_bars("AAPL", DAY, DAY)


def test_body_without_the_promised_fields_is_a_clear_error(
    server: tuple[Scripted, str], tmp_path: Path
) -> None:
    state, url = server
    state.script = [
        ok({"status": "OK", "results": [{"o": 1, "h": 2, "c": 1, "v": 1, "t": 1}]})
    ]  # no "l"
    with (
        client(url, tmp_path) as rest,
        pytest.raises(RestProtocolError, match="lacks expected fields"),
    ):
        rest.minute_bars("AAPL", DAY, DAY)


def test_429_waits_as_long_as_retry_after_says(
    server: tuple[Scripted, str], tmp_path: Path
) -> None:
    state, url = server
    state.script = [
        (429, {"Retry-After": "1"}, b'{"status":"ERROR","error":"slow down"}'),
        (503, {}, b""),
        ok({"status": "OK", "results": [BAR]}),
    ]
    with client(url, tmp_path) as rest:
        table = rest.minute_bars("AAPL", DAY, DAY)
        assert rest.calls == 3 and rest.throttled == 1
        snap = rest.ledger.snapshot()
    assert table.num_rows == 1
    assert state.requests[1]["at"] - state.requests[0]["at"] >= 0.95
    assert snap["rest_calls_today"] == 3 and snap["throttled_24h"] == 1


def test_403_is_not_retried_and_hides_the_key(server: tuple[Scripted, str], tmp_path: Path) -> None:
    state, url = server
    state.script = [
        (
            403,
            {},
            json.dumps({"status": "NOT_AUTHORIZED", "message": f"key {KEY} not entitled"}).encode(),
        )
    ]
    with client(url, tmp_path) as rest, pytest.raises(Exception, match="403") as err:
        rest.minute_bars("AAPL", DAY, DAY)
    assert len(state.requests) == 1 and KEY not in str(err.value)


def test_a_refused_call_is_never_sent(server: tuple[Scripted, str], tmp_path: Path) -> None:
    from mesh.fetcher.errors import QuotaExceeded

    state, url = server
    rest = RestClient(url, KEY, QuotaLedger(tmp_path / "q.sqlite", Limits(100, 1, 0)))
    state.script = [ok({"status": "OK", "results": [BAR]}), ok({"status": "OK", "results": [BAR]})]
    rest.minute_bars("AAPL", DAY, DAY)
    with pytest.raises(QuotaExceeded, match="daily limit"):
        rest.minute_bars("MSFT", DAY, DAY)
    assert len(state.requests) == 1


SPLIT = {"ticker": "NVDA", "execution_date": "2024-06-10", "split_from": 1, "split_to": 10}


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"split_from": 0}, "split_from=0"),
        ({"split_to": -10}, "split_to=-10"),
        ({"execution_date": "June 10th"}, "execution_date=June 10th"),
    ],
    ids=["a zero split_from", "a negative split_to", "a date that is no date"],
)
def test_an_impossible_split_is_refused_in_one_line_naming_it(
    bad: dict[str, Any], named: str, server: tuple[Scripted, str], tmp_path: Path
) -> None:
    state, url = server
    state.script = [ok({"status": "OK", "results": [SPLIT, {**SPLIT, **bad}]})]
    with client(url, tmp_path) as rest, pytest.raises(RestProtocolError) as caught:
        rest.splits("NVDA")
    assert named in str(caught.value) and "\n" not in str(caught.value)
    assert "ticker=NVDA" in state.requests[0]["path"]


def test_splits_follow_next_url_and_keep_only_the_asked_ticker(
    server: tuple[Scripted, str], tmp_path: Path
) -> None:
    state, url = server
    later = {**SPLIT, "execution_date": "2021-07-20", "split_to": 4}
    state.script = [
        ok({"status": "OK", "results": [SPLIT], "next_url": f"{url}/v3/reference/splits?cursor=x"}),
        ok({"status": "OK", "results": [later, {**SPLIT, "ticker": "NVDX"}]}),
    ]
    with client(url, tmp_path) as rest:
        splits = rest.splits("NVDA")
    assert [(s.execution_date.isoformat(), s.ratio) for s in splits] == [
        ("2021-07-20", 4.0),
        ("2024-06-10", 10.0),
    ]
    assert rest.calls == 2
