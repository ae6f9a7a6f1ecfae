"""`cry-train scan FILE...`: the engine's scan (engine/scan.py), exposed here too."""

from __future__ import annotations

from collections.abc import Sequence
import sys

from ._engine import engine_module


def run_scan(argv: Sequence[str]) -> int:
    """Run the engine's scan command line with these arguments; return its exit status.

    Uses `scan.main(argv)` when engine/scan.py has one, else the engine's `__main__` with
    `scan` prepended (`python -m ...engine scan FILE...`).
    """
    try:
        scan = engine_module("scan")
    except ModuleNotFoundError as err:
        print(
            f"error: the engine's scan is not available in this checkout ({err})",
            file=sys.stderr,
        )
        return 2
    entry = getattr(scan, "main", None)
    if callable(entry):
        return int(entry(list(argv)) or 0)
    command_line = engine_module("__main__")
    return int(command_line.main(["scan", *argv]) or 0)
