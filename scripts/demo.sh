#!/usr/bin/env bash
# Set up and run the kiosk demo on a fresh Debian / Raspberry Pi OS machine.
# `kiosk demo` starts everything in a temporary directory: a Mosquitto (TLS) on a free loopback
# port, the province simulator and its pay page, the board emulator on a pty and the kiosk in a
# window; with no $DISPLAY (or --headless) a scripted shopper makes three purchases instead.
# Ctrl-C stops everything. Extra arguments go to `kiosk demo` (e.g. --headless, --keep).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$KIOSK_ROOT"

ensure_system_packages mosquitto mosquitto-clients fonts-wqy-microhei
ensure_venv "test"

"$VENV/bin/kiosk" config check --config "$KIOSK_ROOT/kiosk/data/demo.toml"
exec "$VENV/bin/kiosk" demo "$@"
