"""`python -m benchmarks.latency`: see benchmarks/latency/__init__.py."""

from __future__ import annotations

import sys

from benchmarks.latency.runner import main

if __name__ == "__main__":
    sys.exit(main())
