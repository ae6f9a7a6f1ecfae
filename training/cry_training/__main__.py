"""`python -m cry_training ...` = `cry-train ...`."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
