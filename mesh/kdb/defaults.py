"""What `massive kdb load` does unless told otherwise, in a module light enough for `massive --help`.

mesh.kdb.load (which needs pyarrow and numpy) and the command line (mesh.kdb.cli, which must
not make `massive --help` wait for them) both take the defaults from here.
"""

from __future__ import annotations

DEFAULT_LOAD_BATCH_ROWS = 10_000  # bigger batches than the live service's: nothing waits on latency
DEFAULT_LOAD_FUNCTION = ".u.upd"  # a tickerplant's entry point; `upd` for an RDB
DEFAULT_LOAD_TIMEOUT_S = 30.0  # give up once kdb+ has taken nothing for this long
