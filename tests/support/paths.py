"""Where things are: the repository root and the demo device secret the simulator also knows."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECRET_FILE = ROOT / "kiosk" / "data" / "demo-device-secret"


def child_env(*drop_prefixes: str, **extra: str) -> dict[str, str]:
    """This process's environment for a child `python -m ...` run from the repository: the
    repository on PYTHONPATH, variables starting with any of ``drop_prefixes`` removed."""
    env = {
        k: v for k, v in os.environ.items() if not (drop_prefixes and k.startswith(drop_prefixes))
    }
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env
