"""`massive-tui`: the terminal dashboard over the mesh."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="massive-tui",
        description="The massive-mesh dashboard: live quotes, recording, mesh health.",
    )
    parser.add_argument("--bus", help="bus subscriber endpoint to attach to (default MESH_BUS_SUB)")
    parser.add_argument("--mesh", action="store_true", help="also start the Procfile's services as children and stop them on exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print("massive-tui: the dashboard is not in this version yet; use `massive status` and `massive tap`.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
