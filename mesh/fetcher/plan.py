"""Which method a request uses, why, and what it will cost, worked out before anything is spent.

The auto rule is the seeds': REST for small queries (at most 5 symbols and at most 7 calendar
days), flat files otherwise. The cost is what `--dry-run` prints and the TUI's fetch form shows:
REST calls (an upper bound: `limit` counts base minute bars, at most 960 a day from 04:00 to
20:00 New York time, so each symbol needs ceil(days x 960 / 50,000) calls), and for flat files
the day files, their bytes and how many the cache already has (a bucket listing, which is free).
Flat files are as traded: an adjusted flat-file fetch also reads each symbol's splits over REST,
one call per symbol (`split_calls`, included in `rest_calls`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from mesh.fetcher.errors import FlatFileError
from mesh.fetcher.flatfiles import FlatFiles
from mesh.fetcher.ledger import QuotaLedger, human_bytes
from mesh.fetcher.request import FetchRequest
from mesh.fetcher.rest import AGGS_LIMIT

AUTO_MAX_SYMBOLS = 5
AUTO_MAX_DAYS = 7
MINUTES_PER_DAY = 960  # 04:00-20:00 New York: the most minute bars one symbol can have in a day


def choose(request: FetchRequest) -> tuple[str, str]:
    """(method, reason) for a request; a forced method is kept."""
    n, days = len(request.symbols), request.days
    size = f"{n} symbol{'s' * (n != 1)}, {days} day{'s' * (days != 1)}"
    if request.method == "rest":
        return "rest", f"REST requested ({size})"
    if request.method == "flat_file":
        return "flat_file", f"flat files requested ({size})"
    if n <= AUTO_MAX_SYMBOLS and days <= AUTO_MAX_DAYS:
        return (
            "rest",
            f"auto: small query ({size}; REST when <= {AUTO_MAX_SYMBOLS} symbols and <= {AUTO_MAX_DAYS} days)",
        )
    why = []
    if n > AUTO_MAX_SYMBOLS:
        why.append(f"more than {AUTO_MAX_SYMBOLS} symbols")
    if days > AUTO_MAX_DAYS:
        why.append(f"more than {AUTO_MAX_DAYS} days")
    return (
        "flat_file",
        f"auto: large query ({size}; {' and '.join(why)}), flat files do not use the REST quota",
    )


def rest_calls_needed(request: FetchRequest, days: int | None = None) -> int:
    """Upper bound of REST calls for the request's symbols over `days` trading days."""
    days = len(request.trading_days) if days is None else days
    if days == 0:
        return 0
    return len(request.symbols) * max(1, math.ceil(days * MINUTES_PER_DAY / AGGS_LIMIT))


@dataclass
class Plan:
    """What a fetch will do and cost; `as_dict()` is what the control command returns."""

    request: dict[str, Any]
    method: str
    reason: str
    trading_days: int
    rest_calls: int  # REST calls the chosen method needs (upper bound; split_calls included)
    split_calls: int = 0  # of those, the splits look-ups that adjust flat-file bars
    files: int = 0
    files_cached: int = 0
    bytes_total: int = 0
    bytes_to_download: int = 0
    missing_days: list[str] = field(
        default_factory=list
    )  # trading days with no file yet (REST stands in)
    flat_files_error: str = ""
    quota: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # why it would not fit in the quota

    @property
    def fits(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["fits"] = self.fits
        return out

    def lines(self) -> list[str]:
        """The human-readable plan `massive fetch --dry-run` prints."""
        r = self.request
        out = [
            f"request   {','.join(r['symbols'])}  {r['start']} .. {r['end']}  interval {r['interval']}  ({self.trading_days} trading day(s))",
            f"prices    {'split-adjusted' if r.get('adjusted', True) else 'as traded (--unadjusted)'}",
            f"method    {self.method}: {self.reason}",
        ]
        if self.method == "flat_file":
            if self.flat_files_error:
                out.append(f"files     unavailable: {self.flat_files_error}")
                out.append(f"fallback  REST, up to {self.rest_calls} call(s)")
            else:
                out.append(
                    f"files     {self.files} day file(s), {human_bytes(self.bytes_total)}; {self.files_cached} cached, {human_bytes(self.bytes_to_download)} to download"
                )
                if self.split_calls:
                    out.append(
                        f"splits    {self.split_calls} REST call(s): the files are as traded, each symbol's splits adjust them"
                    )
                if self.missing_days:
                    out.append(
                        f"missing   {len(self.missing_days)} day(s) not in the bucket ({', '.join(self.missing_days[:5])}{' ...' if len(self.missing_days) > 5 else ''}): REST, up to {self.rest_calls - self.split_calls} call(s)"
                    )
                if self.rest_calls:
                    out.append(f"cost      up to {self.rest_calls} REST call(s)")
        else:
            out.append(f"cost      up to {self.rest_calls} REST call(s)")
        q = self.quota
        if q:
            out.append(
                f"quota     REST {q['rest_calls_today']}/{q['rest_calls_per_day'] or 'unlimited'} today, {q['rest_calls_minute']}/{q['rest_calls_per_minute'] or 'unlimited'} this minute; "
                f"flat files {human_bytes(q['s3_bytes_month'])}/{human_bytes(q['s3_bytes_per_month']) if q['s3_bytes_per_month'] else 'unlimited'} this month"
            )
        out.extend(f"WILL NOT FIT: {p}" for p in self.problems)
        return out


def make_plan(request: FetchRequest, ledger: QuotaLedger, flatfiles: FlatFiles | None) -> Plan:
    """The plan of `request`, listing the bucket when flat files are (or may be) used."""
    method, reason = choose(request)
    quota = ledger.snapshot()
    plan = Plan(request.as_dict(), method, reason, len(request.trading_days), 0, quota=quota)
    rest_left = (
        None
        if not quota["rest_calls_per_day"]
        else max(0, quota["rest_calls_per_day"] - quota["rest_calls_today"])
    )
    if method == "rest":
        plan.rest_calls = rest_calls_needed(request)
    else:
        try:
            if flatfiles is None:
                raise FlatFileError("flat files are not configured")
            files, missing = flatfiles.plan(request.trading_days)
            plan.files = len(files)
            plan.files_cached = sum(f.cached for f in files)
            plan.bytes_total = sum(f.size for f in files)
            plan.bytes_to_download = sum(f.size for f in files if not f.cached)
            plan.missing_days = [d.isoformat() for d in missing]
            plan.split_calls = len(request.symbols) if request.adjusted and files else 0
            plan.rest_calls = rest_calls_needed(request, len(missing)) + plan.split_calls
        except FlatFileError as exc:
            plan.flat_files_error = str(exc)
            plan.rest_calls = rest_calls_needed(request)
        bytes_left = ledger.bytes_left()
        if bytes_left is not None and plan.bytes_to_download > bytes_left:
            plan.problems.append(
                f"{human_bytes(plan.bytes_to_download)} to download but {human_bytes(bytes_left)} of the monthly flat-file allowance left"
            )
    if rest_left is not None and plan.rest_calls > rest_left:
        plan.problems.append(
            f"up to {plan.rest_calls} REST call(s) needed but {rest_left} left today"
        )
    return plan
