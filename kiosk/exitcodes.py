"""The exit codes of every command (`kiosk ...`, `kiosk-provision ...`): one meaning each.

README.md ("Exit codes", under the command table) documents the same table. A command picks
the code by what happened, never by its own numbering:
"""

from __future__ import annotations

__all__ = ["FAIL", "INTERRUPTED", "OK", "RESTART", "UNREACHABLE", "USAGE"]

OK = 0  # done; every check passed
FAIL = 1  # the command ran and something failed or is not ok (a check, a refused step)
USAGE = 2  # bad arguments, a config or input file that cannot be used, a missing prerequisite
UNREACHABLE = 3  # a device or service cannot be reached (the control board, the port)
RESTART = 75  # EX_TEMPFAIL: `kiosk run` after a `restart_app` command; systemd starts it again
INTERRUPTED = 130  # 128 + SIGINT: stopped with Ctrl-C
