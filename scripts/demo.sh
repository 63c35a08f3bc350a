#!/usr/bin/env bash
# Set up and run the kiosk demo on a fresh Debian / Raspberry Pi OS machine.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$KIOSK_ROOT"

ensure_system_packages mosquitto mosquitto-clients fonts-wqy-microhei
ensure_venv "test"

CONFIG="$KIOSK_ROOT/kiosk/data/demo.toml"
"$VENV/bin/kiosk" config check --config "$CONFIG"
"$VENV/bin/kiosk" store seed-demo --config "$CONFIG"
"$VENV/bin/kiosk" catalog summary --config "$CONFIG"
