#!/usr/bin/env bash
# Installs what the test suite needs, and only what is missing (safe to run again and again):
#   - Debian 12 packages: the real servers the integration tests start on free ports
#     (mosquitto, mosquitto-clients, victoria-metrics, influxdb), and Node.js with npm for the
#     Node-RED benchmark peer; needs root (or sudo);
#   - .venv with the project installed editable with its [dev] extras.
# With --python-only it does just the second part (what `make demo` needs; no root).
# The packages are not left running as system services: tests start their own instances.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
python_only=false
case "${1:-}" in
  --python-only) python_only=true ;;
  "") ;;
  *) echo "usage: $0 [--python-only]" >&2; exit 2 ;;
esac

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    echo "install-test-deps: need root to run: $*" >&2
    exit 1
  fi
}

install_debian_packages() {
  local -a missing=()
  # package:binary it provides
  local pair
  for pair in mosquitto:/usr/sbin/mosquitto mosquitto-clients:/usr/bin/mosquitto_pub \
      victoria-metrics:/usr/bin/victoria-metrics influxdb:/usr/bin/influxd; do
    [ -x "${pair#*:}" ] || missing+=("${pair%%:*}")
  done
  # Node.js and npm for the Node-RED peer of the ingest benchmark (benchmarks/nodered/, tested
  # by tests/integration/test_nodered_peer.py); any Node.js >= 18 will do, Debian 12 has 18.
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  # Debian's python3 needs python3-venv for `python3 -m venv` (ensurepip is split out).
  "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  [ ${#missing[@]} -eq 0 ] && return 0

  echo "install-test-deps: installing ${missing[*]}"
  # A postinst would start each server as a system service (and fail the install if its
  # default port is taken); policy-rc.d answering 101 tells invoke-rc.d not to start anything.
  local policy=/usr/sbin/policy-rc.d added_policy=false
  if [ ! -e "$policy" ]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
    added_policy=true
  fi
  local rc=0
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || rc=$?
  if [ $rc -eq 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" || rc=$?
  fi
  if $added_policy; then as_root rm -f "$policy"; fi
  [ $rc -eq 0 ] || exit $rc

  # Belt and braces where services were started anyway (e.g. under systemd).
  local svc
  for svc in mosquitto victoria-metrics influxdb; do
    case " ${missing[*]} " in
      *" $svc "*)
        as_root service "$svc" stop >/dev/null 2>&1 || true
        as_root systemctl disable "$svc" >/dev/null 2>&1 || true
        ;;
    esac
  done
}

install_python_env() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "install-test-deps: creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  # Re-install only when the dependencies changed: the stamp holds pyproject.toml's hash
  # (content, not mtime, which a fresh clone resets).
  local stamp="$VENV/.bosai-installed" want
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "install-test-deps: pip install -e '.[dev]' into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]'
    echo "$want" > "$stamp"
  fi
}

$python_only || install_debian_packages
install_python_env
