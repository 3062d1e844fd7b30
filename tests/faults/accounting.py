"""Every event the sim sent, accounted for in a recording: recorded, or inside a recorded gap.

The sim numbers quotes and trades with one counter per kind, contiguous across all symbols
(mesh/sim/generator.py), and sends every event to every subscribed connection. So between the
first and the last sequence recorded of a kind, every number was generated; each one missing from
the recording must lie inside a recorded gap of that kind. The counter starts again when the sim
restarts, so each sim process (told apart by event time) is checked on its own. No (kind,
sequence) of one sim process may be recorded twice. Used by the fault suite and bench/soak.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds


@dataclass(frozen=True)
class Account:
    """One kind of event from one sim process."""

    kind: str
    life: str  # which sim process
    sent: int  # sequence numbers from the first recorded to the last
    recorded: int
    duplicates: np.ndarray  # sequences recorded more than once
    missing: int  # not recorded (all must be inside gaps)
    lost: np.ndarray  # missing and inside no recorded gap of the kind
    gaps: int
    seconds: float  # event time from the first to the last recorded

    def line(self) -> str:
        return (
            f"{self.kind}s of the {self.life}: {self.sent} sent over {self.seconds:.1f} s ({self.sent / max(self.seconds, 1e-9):,.0f}/s), "
            f"{self.missing} missing, {len(self.lost)} of them outside the {self.gaps} gaps, {len(self.duplicates)} duplicates"
        )


def gap_rows(folder: Path) -> list[dict[str, Any]]:
    if not (folder / "gaps").is_dir():
        return []
    return (
        ds.dataset(folder / "gaps", format="parquet")
        .to_table(columns=["symbol", "kind", "from_sequence", "to_sequence", "reason", "source"])
        .to_pylist()
    )


def covered(missing: np.ndarray, gaps: list[tuple[int, int]]) -> np.ndarray:
    """Which of the sorted sequences `missing` lie strictly inside some (from, to) gap (to 0: open-ended)."""
    inside = np.zeros(len(missing) + 1, np.int64)
    for lo, hi in gaps:
        start = np.searchsorted(missing, lo, side="right")
        end = len(missing) if hi == 0 else np.searchsorted(missing, hi, side="left")
        if end > start:
            inside[start] += 1
            inside[end] -= 1
    return np.cumsum(inside)[:-1] > 0


def account(folder: Path, lives: list[tuple[str, int, int]] | None = None) -> list[Account]:
    """Check a recording; `lives`: (name, from ns, to ns) of event time per sim process (default: one)."""
    lives = lives or [("sim", 0, 2**63 - 1)]
    gaps = gap_rows(folder)
    out = []
    for kind, table in (("quote", "quotes"), ("trade", "trades")):
        data = ds.dataset(folder / table, format="parquet").to_table(
            columns=["sequence", "ts_event"]
        )
        ts = pc.cast(data.column("ts_event"), pa.int64()).to_numpy()
        seq = data.column("sequence").to_numpy()
        kind_gaps = [(g["from_sequence"], g["to_sequence"]) for g in gaps if g["kind"] == kind]
        for life, start, end in lives:
            in_life = (ts >= start) & (ts < end)
            recorded = np.sort(seq[in_life])
            if not len(recorded):
                out.append(Account(kind, life, 0, 0, recorded, 0, recorded, len(kind_gaps), 0.0))
                continue
            duplicates = recorded[1:][recorded[1:] == recorded[:-1]]
            expected = np.arange(recorded[0], recorded[-1] + 1)
            missing = expected[~np.isin(expected, recorded)]
            lost = missing[~covered(missing, kind_gaps)]
            seconds = float(ts[in_life].max() - ts[in_life].min()) / 1e9
            out.append(
                Account(
                    kind,
                    life,
                    len(expected),
                    len(recorded),
                    duplicates,
                    len(missing),
                    lost,
                    len(kind_gaps),
                    seconds,
                )
            )
    return out
