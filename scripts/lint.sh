#!/usr/bin/env bash
# Lint, types and import contracts: the one list, run by scripts/test.sh and `make lint` /
# `make test-fast`. Needs the venv scripts/test.sh sets up (VENV, default ./.venv).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${KIOSK_VENV:-$PWD/.venv}"
say() { printf '==> %s\n' "$*" >&2; }
say "ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
say "mypy"
"$VENV/bin/mypy" kiosk provisioning
say "import contracts (layers; no simulator or tests in production code)"
"$VENV/bin/lint-imports"
