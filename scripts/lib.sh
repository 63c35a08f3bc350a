# Shared setup for scripts/demo.sh and scripts/test.sh. Sourced, not run.
# Installs what is missing and nothing else: Debian packages with apt-get when root (else prints
# the apt-get line to run), Python packages into ./.venv pinned by constraints.txt.

KIOSK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${KIOSK_VENV:-$KIOSK_ROOT/.venv}"

say() { printf '==> %s\n' "$*" >&2; }

ensure_system_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    say "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "missing system packages: ${missing[*]}"
    say "install them with: sudo apt-get install -y ${missing[*]}"
    return 1
  fi
}

ensure_python() {
  if ! python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    say "Python 3.11 or newer is required (Debian 12 / Raspberry Pi OS bookworm ship it)"
    return 1
  fi
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    ensure_system_packages python3-venv
  fi
}

ensure_venv() {  # $1: extras, e.g. "test,dev"
  local extras="$1" stamp want
  ensure_python
  [ -x "$VENV/bin/python" ] || { say "creating $VENV"; python3 -m venv "$VENV"; }
  stamp="$VENV/.kiosk-installed"
  want="$extras $(cat "$KIOSK_ROOT/pyproject.toml" "$KIOSK_ROOT/constraints.txt" | sha256sum | cut -c1-16) $KIOSK_ROOT"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing Python packages into $VENV (pinned by constraints.txt)"
    if ! { "$VENV/bin/python" -m pip install -q --upgrade pip &&
      "$VENV/bin/python" -m pip install -q -c "$KIOSK_ROOT/constraints.txt" -e "$KIOSK_ROOT[$extras]"; \
      } >"$VENV/pip.log" 2>&1; then
      tail -n 30 "$VENV/pip.log" >&2
      say "pip install failed; the whole log is in $VENV/pip.log"
      return 1
    fi
    printf '%s' "$want" >"$stamp"
  fi
}
