"""Logging: one line per event to stderr, key=value (default) or JSON, for journald.

Owns: the log format and the redaction of secrets. Call sites log an event name plus fields:
`log_event(log, "vend.done", slot=12, tx=77)`. Any field whose name suggests a secret (secret,
password, pin, token, private key) is written as "***", whatever its value.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

__all__ = ["REDACTED", "log_event", "setup_logging"]

REDACTED = "***"
_SECRET_KEY = re.compile(
    r"(?:^|_)(?:secret|passw(?:or)?d|pin|token|private|credentials?|signature|sig)(?:_|$)", re.I
)
_RESERVED = frozenset({"ts", "level", "logger", "event", "exc"})
_BARE = re.compile(r"^[A-Za-z0-9_.:/@+*-]+$")


def _redact(fields: dict[str, Any]) -> dict[str, Any]:
    """Hide secrets; a field named like a standard key is kept as `field_<name>`."""
    out: dict[str, Any] = {}
    for k, v in fields.items():
        out[f"field_{k}" if k in _RESERVED else k] = REDACTED if _SECRET_KEY.search(k) else v
    return out


def _kv_value(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
    return s if _BARE.match(s) else json.dumps(s, ensure_ascii=False)


class _Formatter(logging.Formatter):
    def __init__(self, fmt: str) -> None:
        super().__init__()
        self.fmt = fmt

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        ts += f".{int(record.msecs):03d}Z"
        fields: dict[str, Any] = {
            "ts": ts,
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields.update(_redact(getattr(record, "kv", {})))
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info).replace("\n", " | ")
        if self.fmt == "json":
            return json.dumps(fields, ensure_ascii=False, default=str)
        return " ".join(f"{k}={_kv_value(v)}" for k, v in fields.items())


class _KioskHandler(logging.StreamHandler[Any]):
    """The handler `setup_logging` installs; its `_kiosk` mark finds it again to replace it."""

    _kiosk = True


def setup_logging(level: str = "info", fmt: str = "kv", stream: Any = None) -> None:
    """Configure the root logger once (idempotent)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_kiosk", False):
            root.removeHandler(h)
    handler = _KioskHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level.upper())


def log_event(
    logger: logging.Logger, event_name: str, /, _level: int = logging.INFO, **fields: Any
) -> None:
    """Log one event; `fields` may use any name, `event` and `level` included."""
    logger.log(_level, event_name, extra={"kv": fields})
