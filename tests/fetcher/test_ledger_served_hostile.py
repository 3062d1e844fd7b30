"""`ledger-reserve` / `ledger-settle` through the fetcher service's control channel with hostile
arguments: each is refused in one line, the ledger's counts are untouched, the service answers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mesh.config import Config
from tests.fetcher.test_service_hostile import ask, refusal
from tests.fetcher.test_service_jobs import fetcher  # noqa: F401 - the fixture

BAD_NUMBERS: list[Any] = [
    -1,
    2**53,
    True,
    False,
    1.5,
    1.0,
    float("inf"),
    "10",
    None,
    [1],
    {"a": 1},
]


async def test_hostile_reserve_and_settle_arguments_leave_the_ledger_untouched(
    fetcher: Config,  # noqa: F811
) -> None:
    def attack() -> None:
        before = ask(fetcher, "quota")
        for nbytes in BAD_NUMBERS:
            line = refusal(fetcher, "ledger-reserve", key="k", nbytes=nbytes)
            assert "nbytes" in line, line
        for key in ("", 5, None, ["k"], True, "k" * 100_000):
            refusal(fetcher, "ledger-reserve", key=key, nbytes=1)
        refusal(fetcher, "ledger-reserve", key="k")
        refusal(fetcher, "ledger-reserve", key="k", nbytes=1, extra=1)
        for value in BAD_NUMBERS:
            refusal(fetcher, "ledger-settle", row=value, nbytes=0)
            refusal(fetcher, "ledger-settle", row=1, nbytes=value)
        refusal(fetcher, "ledger-settle", row=12345, nbytes=0)
        assert ask(fetcher, "quota") == before
        row = ask(fetcher, "ledger-reserve", key="k", nbytes=100)["row"]
        refusal(fetcher, "ledger-settle", row=row, nbytes=101)
        assert ask(fetcher, "ledger-settle", row=row, nbytes=40) == {"row": row}
        refusal(fetcher, "ledger-settle", row=row, nbytes=41)  # no growing back past 40
        spent = ask(fetcher, "quota")["s3_bytes_month"] - before["s3_bytes_month"]
        assert spent == 40
        huge = ask(fetcher, "ledger-reserve", key="big", nbytes=2**53 - 1)
        assert "refused" in huge, huge  # past the month's byte quota: refused, not recorded
        assert ask(fetcher, "quota")["s3_bytes_month"] - before["s3_bytes_month"] == 40
        assert ask(fetcher, "ping") == "pong"

    await asyncio.to_thread(attack)


@pytest.mark.parametrize("nbytes", [float("nan")], ids=["nan"])
async def test_a_nan_byte_count_is_refused(fetcher: Config, nbytes: float) -> None:  # noqa: F811
    line = await asyncio.to_thread(refusal, fetcher, "ledger-reserve", key="k", nbytes=nbytes)
    assert "nbytes" in line or "unreadable" in line, line
    assert await asyncio.to_thread(ask, fetcher, "ping") == "pong"
