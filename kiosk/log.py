"""Logging: one line per event to stderr, key=value (default) or JSON, for journald.

Owns: the log format and the redaction of secrets, for every log path: the stderr handler
(`setup_logging`), the sync bridge's `upload_logs` tail (`formatter()`) and kiosk-provision all
format through `_Formatter`, whose last step is `redact(line)`. Call sites log an event name
plus fields: `log_event(log, "vend.done", slot=12, tx=77)`.

What is hidden ("***"): any field whose name suggests a secret (secret, password, pin, token,
private key, signature, offline code), whatever its value; and anywhere in the line (message,
field values, tracebacks): `name=value` / `"name": value` with such a name, the pay URL's
signature (`?s=` / `&s=`, `sig=`), PEM private key blocks, and the exact values registered
with `register_secret` (the device payment secret, the registration token).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from typing import Any

__all__ = ["REDACTED", "formatter", "log_event", "redact", "register_secret", "setup_logging"]

REDACTED = "***"
_SECRET_WORDS = r"secret|passw(?:or)?d|pin|token|private|credentials?|signature|sig|offline_codes?"
_SECRET_KEY = re.compile(rf"(?:^|_)(?:{_SECRET_WORDS})(?:_|$)", re.I)
# name=value, name: value, "name": "value" where the name has a secret word as a `_` part
_SECRET_PAIR = re.compile(
    rf"(?<![A-Za-z0-9])((?:[A-Za-z0-9]+_)*(?:{_SECRET_WORDS})(?:_[A-Za-z0-9]+)*"
    r"""(?:\\?["'])?\s*[=:]\s*(?:\\?["'])?)(?!\*\*\*)[^\s"'&,;}\]|\\]+""",
    re.I,
)
# the pay URL's signature (kiosk.core.payment.pay_url: ...&s=<sig>) and any sig= parameter
_URL_SIG = re.compile(r"([?&](?:s|sig|signature|token)=)[^&\s\"'#]+", re.I)
_PEM_KEY = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.S
)
_MIN_SECRET_LEN = 6  # shorter registered values would hide ordinary words and numbers
_secrets_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()


def register_secret(value: bytes | str) -> None:
    """Hide this exact value (and, for bytes, its hex and its text) wherever it appears in a
    log line from now on: the device payment secret, the registration token."""
    global _secrets
    forms: set[str] = set()
    if isinstance(value, bytes):
        forms.add(value.hex())
        forms.add(value.decode("utf-8", "replace").strip())
    else:
        forms.add(value.strip())
    with _secrets_lock:
        _secrets = _secrets | {f for f in forms if len(f) >= _MIN_SECRET_LEN}


def redact(text: str) -> str:
    """The one redaction of a log line (see the module docstring); idempotent."""
    for known in sorted(_secrets, key=len, reverse=True):
        if known in text:
            text = text.replace(known, REDACTED)
    text = _PEM_KEY.sub(lambda m: f"-----BEGIN {m[1]}PRIVATE KEY-----{REDACTED}", text)
    text = _URL_SIG.sub(lambda m: m[1] + REDACTED, text)
    return _SECRET_PAIR.sub(lambda m: m[1] + REDACTED, text)


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
            return redact(json.dumps(fields, ensure_ascii=False, default=str))
        return redact(" ".join(f"{k}={_kv_value(v)}" for k, v in fields.items()))


def formatter(fmt: str = "kv") -> logging.Formatter:
    """The kiosk's line format, redacted: what every handler of the kiosk formats with."""
    return _Formatter(fmt)


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
