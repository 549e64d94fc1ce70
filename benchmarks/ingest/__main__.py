"""`python -m benchmarks.ingest`: see benchmarks/ingest/__init__.py."""

from __future__ import annotations

import sys

from benchmarks.ingest.runner import main

if __name__ == "__main__":
    sys.exit(main())
