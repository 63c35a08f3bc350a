"""The one kiosk config renderer for the tests: a dict of sections -> TOML (tomli_w).

``kiosk_config(port=..., data_dir=..., **sections)`` is a complete, valid config for a test
kiosk (plaintext sync to a broker nobody runs, the demo device secret) with each keyword's
keys merged into that section; ``write_config`` renders it to a file. Paths may be given as
``Path``; they are written as strings. Tests that check how the parser treats broken text
(tests/unit/test_config.py, test_cli.py) keep writing that text themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w

from kiosk.config import KioskConfig, load_config
from tests.support.paths import SECRET_FILE

KIOSK_ID = "AH-340100-0001"


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def kiosk_config(
    *, port: str | Path, data_dir: Path, **sections: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """A test kiosk's config; ``sections`` (identity=..., sync=..., store=...) are merged in."""
    cfg: dict[str, dict[str, Any]] = {
        "identity": {
            "kiosk_id": KIOSK_ID,
            "site_name": "test",
            "site_type": "hospital",
            "area_code": "340100",
        },
        "hardware": {"port": port},
        "sync": {"broker_url": "mqtt://127.0.0.1:1883", "allow_plaintext": True},
        "payments": {"device_secret_file": SECRET_FILE},
        "store": {"data_dir": data_dir},
    }
    for name, keys in sections.items():
        cfg.setdefault(name, {}).update(keys)
    return cfg


def render_config(cfg: Mapping[str, Mapping[str, Any]]) -> str:
    """TOML text for a config dict (None values are left out, paths become strings)."""
    return tomli_w.dumps(_plain(cfg))


def write_config(path: Path, cfg: Mapping[str, Mapping[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_config(cfg), encoding="utf-8")
    return path


def write_kiosk_config(
    path: Path, port: str | Path, data_dir: Path, **sections: Mapping[str, Any]
) -> KioskConfig:
    """Write ``kiosk_config(...)`` to ``path`` and load it the way the kiosk does."""
    return load_config(write_config(path, kiosk_config(port=port, data_dir=data_dir, **sections)))
