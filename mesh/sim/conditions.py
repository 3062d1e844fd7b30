"""US stock trade conditions as Massive's `/v3/reference/conditions` publishes them, and their bar rules.

A trade's `conditions` (a list of ids such as `[12, 37]`) decide whether it may set a bar's
high/low, open/close and volume. Massive publishes those rules per condition as `update_rules`,
`consolidated` (bars across all exchanges, which are what REST aggregates, flat files and the
WebSocket `A`/`AM` bars are) and `market_center` (one exchange's own figures). This module is the
sim's one copy of that table: the REST endpoint serves it and the bar builders ask it.

    from mesh.sim import conditions

    conditions.eligibility(12)            # Eligibility(updates_high_low=False, updates_open_close=False, updates_volume=True)
    conditions.trade_eligibility([14, 37])  # every condition must allow it: odd lot -> no price, volume yes

A trade with no condition is a regular sale and updates everything; an id the table does not know
is treated the same way (Massive lists no rule for it, so nothing excludes it). Form T (12) is
`False, False, True` here as in Massive's listing: its two price flags describe the day bar and
regular-hours minute bars; Massive's pre-market and after-hours minute bars take prices from Form
T trades anyway (knowledge base, "Does a Form T trade update a pre-market minute bar's high, low,
open and close?"), which is the bar builder's rule, not this table's.

Sources: ids 1-10 as in the official client's `/v3/reference/conditions` fixture; 10, 12, 14,
37 and 41 as in live listings quoted in public code (2026); the others from Massive's (then
Polygon's) published condition glossary.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple


class ConditionType(StrEnum):
    """Massive's `type` of a condition (a subset of its enum: the ones stock trades carry)."""

    SALE = "sale_condition"
    TRADE_THRU_EXEMPT = "trade_thru_exempt"


class Eligibility(NamedTuple):
    """What a trade may update in a bar: high/low, open/close, volume."""

    updates_high_low: bool
    updates_open_close: bool
    updates_volume: bool


EVERYTHING = Eligibility(True, True, True)


@dataclass(frozen=True)
class Condition:
    """One stock trade condition: Massive's id, name, SIP symbols and update rules."""

    id: int
    name: str
    sip_mapping: tuple[tuple[str, str], ...]  # (SIP, symbol): CTA (tapes A/B), UTP (tape C)
    consolidated: Eligibility
    market_center: Eligibility
    type: ConditionType = ConditionType.SALE
    legacy: bool = False

    def as_massive(self) -> dict[str, Any]:
        """The condition as a `/v3/reference/conditions` result."""
        body: dict[str, Any] = {
            "id": self.id,
            "type": str(self.type),
            "name": self.name,
            "asset_class": "stocks",
            "sip_mapping": dict(self.sip_mapping),
            "update_rules": {
                "consolidated": self.consolidated._asdict(),
                "market_center": self.market_center._asdict(),
            },
            "data_types": ["trade"],
        }
        if self.legacy:
            body["legacy"] = True
        return body


def _c(
    id: int,
    name: str,
    sips: dict[str, str],
    rules: str,
    centre: str | None = None,
    type: ConditionType = ConditionType.SALE,
    legacy: bool = False,
) -> Condition:
    """A row from a compact spelling: `rules` is 'TFT' = high/low, open/close, volume."""

    def flags(text: str) -> Eligibility:
        return Eligibility(*(ch == "T" for ch in text))

    return Condition(
        id, name, tuple(sips.items()), flags(rules), flags(centre or rules), type, legacy
    )


# Every stock trade condition the sim knows, by id.
TABLE: dict[int, Condition] = {
    c.id: c
    for c in [
        _c(1, "Acquisition", {"UTP": "A"}, "TTT"),
        _c(2, "Average Price Trade", {"CTA": "B", "UTP": "W"}, "FFT"),
        _c(3, "Automatic Execution", {"CTA": "E"}, "TTT"),
        _c(4, "Bunched Trade", {"UTP": "B"}, "TTT"),
        _c(5, "Bunched Sold Trade", {"UTP": "G"}, "TFT"),
        _c(6, "CAP Election", {"CTA": "I"}, "TTT", legacy=True),
        _c(7, "Cash Sale", {"CTA": "C", "UTP": "C"}, "FFT"),
        _c(8, "Closing Prints", {"UTP": "6"}, "TTT"),
        _c(9, "Cross Trade", {"CTA": "X", "UTP": "X"}, "TTT"),
        _c(10, "Derivatively Priced", {"CTA": "4", "UTP": "4"}, "TFT"),
        _c(11, "Distribution", {"UTP": "D"}, "TTT"),
        _c(12, "Form T", {"CTA": "T", "UTP": "T"}, "FFT"),
        _c(13, "Extended Trading Hours (Sold Out Of Sequence)", {"CTA": "U", "UTP": "U"}, "FFT"),
        _c(14, "Intermarket Sweep", {"CTA": "F", "UTP": "F"}, "TTT"),
        _c(15, "Market Center Official Close", {"UTP": "M"}, "FFF", centre="TTF"),
        _c(16, "Market Center Official Open", {"UTP": "Q"}, "FFF", centre="TFF"),
        _c(20, "Next Day", {"CTA": "N", "UTP": "N"}, "FFT"),
        _c(21, "Price Variation Trade", {"CTA": "H", "UTP": "H"}, "FFT"),
        _c(22, "Prior Reference Price", {"CTA": "P", "UTP": "P"}, "TFT"),
        _c(23, "Rule 155 Trade (AMEX)", {"CTA": "K"}, "TTT"),
        _c(25, "Opening Prints", {"CTA": "O", "UTP": "O"}, "TTT"),
        _c(28, "Re-Opening Prints", {"CTA": "5", "UTP": "5"}, "TTT"),
        _c(29, "Seller", {"CTA": "R", "UTP": "R"}, "TFT"),
        _c(30, "Sold Last", {"CTA": "L", "UTP": "L"}, "TTT"),
        _c(32, "Sold (Out Of Sequence)", {"CTA": "Z", "UTP": "Z"}, "TFT"),
        _c(34, "Split Trade", {"CTA": "S"}, "TTT"),
        _c(36, "Yellow Flag Regular Trade", {"UTP": "Y"}, "TTT"),
        _c(37, "Odd Lot Trade", {"CTA": "I", "UTP": "I"}, "FFT"),
        _c(
            38,
            "Corrected Consolidated Close (per listing market)",
            {"CTA": "9", "UTP": "9"},
            "TTF",
            centre="FFF",
        ),
        _c(
            41,
            "Trade Thru Exempt",
            {"CTA": "1", "UTP": "X"},
            "TTT",
            type=ConditionType.TRADE_THRU_EXEMPT,
        ),
        _c(52, "Contingent Trade", {"CTA": "V", "UTP": "V"}, "FFT"),
        _c(53, "Qualified Contingent Trade", {"CTA": "7", "UTP": "7"}, "FFT"),
    ]
}

FORM_T = 12
INTERMARKET_SWEEP = 14
ODD_LOT = 37


def condition(condition_id: int) -> Condition | None:
    """The condition with this id, or None if the table does not know it."""
    return TABLE.get(condition_id)


def eligibility(condition_id: int, market_center: bool = False) -> Eligibility:
    """(updates_high_low, updates_open_close, updates_volume) for one condition id.

    Consolidated rules by default (the bars Massive serves); `market_center=True` gives one
    exchange's own. An unknown id updates everything."""
    known = TABLE.get(condition_id)
    if known is None:
        return EVERYTHING
    return known.market_center if market_center else known.consolidated


def trade_eligibility(condition_ids: Iterable[int], market_center: bool = False) -> Eligibility:
    """What a trade with all these conditions may update: each flag must be allowed by every one."""
    high_low = open_close = volume = True
    for condition_id in condition_ids:
        rule = eligibility(condition_id, market_center)
        high_low &= rule.updates_high_low
        open_close &= rule.updates_open_close
        volume &= rule.updates_volume
    return Eligibility(high_low, open_close, volume)
