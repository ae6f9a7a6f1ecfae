"""Command line entry: `python -m custom_components.cry_detector.engine scan FILE...`."""

from __future__ import annotations

import sys

from .scan import main

if __name__ == "__main__":
    sys.exit(main())
