# Quickstart: `make demo` (no root needed) and `make test` (installs the test servers from
# Debian's repositories when missing, so run it as root or with sudo available).
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint

setup:  ## .venv with the project and its [dev] extras (re-installed when pyproject.toml changes)
	scripts/install-test-deps.sh --python-only

demo: setup  ## the whole pipeline on simulated sensors, with a report
	$(VENV)/bin/bosai demo

test:  ## the full suite, integration tests against real Mosquitto, VictoriaMetrics, InfluxDB 1.x
	scripts/install-test-deps.sh
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
