"""`cry-train scan FILE...`: the engine's scan (engine/scan.py), exposed here too."""

from __future__ import annotations

from collections.abc import Sequence
import sys

from ._engine import engine_module


def run_scan(argv: Sequence[str]) -> int:
    """Run the engine's scan command line (`python -m ...engine scan FILE...`); return its status."""
    try:
        scan = engine_module("scan")
    except ModuleNotFoundError as err:
        print(
            f"error: the engine's scan is not available in this checkout ({err})",
            file=sys.stderr,
        )
        return 2
    return int(scan.main(["scan", *argv]) or 0)
