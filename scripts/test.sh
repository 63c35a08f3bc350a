#!/usr/bin/env bash
# Set up and run the whole test suite on a fresh Debian / Raspberry Pi OS machine:
# system packages (real Mosquitto, CJK fonts, Xvfb, xdotool, socat), a venv, lint, types, the
# import contracts in pyproject.toml (lint-imports), pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/unit -x`.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$KIOSK_ROOT"

ensure_system_packages mosquitto mosquitto-clients fonts-wqy-microhei xvfb xdotool socat
ensure_venv "test,dev"

KIOSK_VENV="$VENV" bash "$KIOSK_ROOT/scripts/lint.sh"
say "pytest"
set +e
# Two workers (pytest-xdist), a test file per worker at a time (module fixtures stay shared):
# most of the suite's wall time is waiting (brokers, ptys, outages, motors at time scale), so two
# files overlap on 2 cores. KIOSK_TEST_WORKERS=0 runs in this process (e.g. to debug).
"$VENV/bin/python" -m pytest -n "${KIOSK_TEST_WORKERS:-2}" --dist loadfile --durations=25 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  say "pytest collected no tests: that is a failure"
  exit 1
fi
exit "$rc"
