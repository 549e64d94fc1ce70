"""`python -m bosai ...`: the same as the `bosai` command (for systemd units and tests that
must use a given interpreter)."""

from bosai.cli import main

raise SystemExit(main())
