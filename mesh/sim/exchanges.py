"""US stock exchanges as Massive's `/v3/reference/exchanges` lists them, by the ids trades carry.

A trade's or quote's `exchange` (`x`, `bx`, `ax`) is one of these ids; the sim's history draws
from them, and `/v3/reference/exchanges` serves the table. Values are Massive's own listing (the
official client's fixture of that endpoint): id, type, name, MIC, operating MIC, SIP participant
id and URL. Id 4 is shared by FINRA's trade reporting facilities, as on Massive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Exchange:
    """One venue of the US stock market."""

    id: int
    type: str  # "exchange", "TRF" or "SIP"
    name: str
    mic: str | None
    operating_mic: str
    participant_id: str
    url: str
    acronym: str | None = None

    def as_massive(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "asset_class": "stocks",
            "locale": "us",
            "name": self.name,
        }
        if self.acronym:
            body["acronym"] = self.acronym
        if self.mic:
            body["mic"] = self.mic
        body.update(
            operating_mic=self.operating_mic, participant_id=self.participant_id, url=self.url
        )
        return body


NYSE_URL, CBOE_URL, FINRA_URL = (
    "https://www.nyse.com",
    "https://www.cboe.com/us/equities",
    "https://www.finra.org",
)

STOCK_EXCHANGES: tuple[Exchange, ...] = (
    Exchange(1, "exchange", "NYSE American, LLC", "XASE", "XNYS", "A", f"{NYSE_URL}/markets/nyse-american", "AMEX"),
    Exchange(2, "exchange", "Nasdaq OMX BX, Inc.", "XBOS", "XNAS", "B", "https://www.nasdaq.com/solutions/nasdaq-bx-stock-market"),
    Exchange(3, "exchange", "NYSE National, Inc.", "XCIS", "XNYS", "C", f"{NYSE_URL}/markets/nyse-national", "NSX"),
    Exchange(4, "TRF", "FINRA NYSE TRF", "FINY", "XNYS", "D", FINRA_URL),
    Exchange(4, "TRF", "FINRA Nasdaq TRF Carteret", "FINN", "FINR", "D", FINRA_URL),
    Exchange(4, "TRF", "FINRA Nasdaq TRF Chicago", "FINC", "FINR", "D", FINRA_URL),
    Exchange(4, "TRF", "FINRA Alternative Display Facility", "XADF", "FINR", "D", FINRA_URL),
    Exchange(5, "SIP", "Unlisted Trading Privileges", None, "XNAS", "E", "https://www.utpplan.com"),
    Exchange(6, "TRF", "International Securities Exchange, LLC - Stocks", "XISE", "XNAS", "I", "https://nasdaq.com/solutions/nasdaq-ise"),
    Exchange(7, "exchange", "Cboe EDGA", "EDGA", "XCBO", "J", CBOE_URL),
    Exchange(8, "exchange", "Cboe EDGX", "EDGX", "XCBO", "K", CBOE_URL),
    Exchange(9, "exchange", "NYSE Chicago, Inc.", "XCHI", "XNYS", "M", f"{NYSE_URL}/markets/nyse-chicago"),
    Exchange(10, "exchange", "New York Stock Exchange", "XNYS", "XNYS", "N", NYSE_URL),
    Exchange(11, "exchange", "NYSE Arca, Inc.", "ARCX", "XNYS", "P", f"{NYSE_URL}/markets/nyse-arca"),
    Exchange(12, "exchange", "Nasdaq", "XNAS", "XNAS", "T", "https://www.nasdaq.com"),
    Exchange(13, "SIP", "Consolidated Tape Association", None, "XNYS", "S", f"{NYSE_URL}/data/cta"),
    Exchange(14, "exchange", "Long-Term Stock Exchange", "LTSE", "LTSE", "L", "https://www.ltse.com"),
    Exchange(15, "exchange", "Investors Exchange", "IEXG", "IEXG", "V", "https://www.iextrading.com"),
    Exchange(16, "TRF", "Cboe Stock Exchange", "CBSX", "XCBO", "W", "https://www.cboe.com"),
    Exchange(17, "exchange", "Nasdaq Philadelphia Exchange LLC", "XPHL", "XNAS", "X", "https://www.nasdaq.com/solutions/nasdaq-phlx"),
    Exchange(18, "exchange", "Cboe BYX", "BATY", "XCBO", "Y", CBOE_URL),
    Exchange(19, "exchange", "Cboe BZX", "BATS", "XCBO", "Z", CBOE_URL),
    Exchange(20, "exchange", "MIAX Pearl", "EPRL", "MIHI", "H", "https://www.miaxoptions.com/alerts/pearl-equities"),
    Exchange(21, "exchange", "Members Exchange", "MEMX", "MEMX", "U", "https://www.memx.com"),
)  # fmt: skip

IDS = frozenset(x.id for x in STOCK_EXCHANGES)
