"""Ingest's gap tracking: `GapTracker` lives in mesh.gaps, shared with the recorder (kept here for imports)."""

from mesh.gaps import PENDING_SECONDS, GapTracker, IntColumn

__all__ = ["PENDING_SECONDS", "GapTracker", "IntColumn"]
