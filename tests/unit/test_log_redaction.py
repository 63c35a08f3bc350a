"""Every log path redacts (issue 14 req. 10): kiosk.log.redact is the one function, used by the
stderr handler (kv and JSON), the sync bridge's `upload_logs` tail and kiosk-provision.

Real secrets, made the way the kiosk makes them: a device payment secret file loaded by the
kiosk, a pay URL signed with it, an offline code, a device private key PEM, a registration
token, a service PIN. Each is logged the careless ways (a field with an innocent name, the
message text, an exception's message in a traceback) and must not reach the line.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk.app import load_device_secret
from kiosk.core.payment import make_order_id, offline_code, pay_url
from kiosk.log import REDACTED, formatter, log_event, redact, setup_logging
from kiosk.sync.bridge import _LogTail
from kiosk.sync.identity import generate_device_key, private_key_pem
from tests.support.config import write_kiosk_config
from tests.support.paths import ROOT

KIOSK = "AH-340100-0001"
log = logging.getLogger("kiosk.test.redaction")


class Secrets:
    def __init__(self, tmp_path: Path) -> None:
        secret_file = tmp_path / "device-secret"
        secret_file.write_text(secrets.token_hex(32) + "\n")
        cfg = write_kiosk_config(
            tmp_path / "kiosk.toml",
            "loop://",
            tmp_path / "data",
            payments={"device_secret_file": secret_file},
        )
        self.device_secret = load_device_secret(cfg)  # what the kiosk does: registered
        self.secret_text = self.device_secret.decode().strip()
        order = make_order_id(KIOSK, 7)
        self.url = pay_url(
            "https://pay.kiosk.ah.example/p", KIOSK, order, 1280, 2e9, self.device_secret
        )
        self.sig = self.url.rsplit("&s=", 1)[1]
        self.code = offline_code(self.device_secret, order, 1280)
        self.pem = private_key_pem(generate_device_key()).decode()
        self.key_body = self.pem.splitlines()[1]
        self.pin = "246813"
        self.token = secrets.token_urlsafe(18)

    def leaks(self, text: str) -> list[str]:
        found = [
            name
            for name, value in (
                ("device secret", self.secret_text),
                ("device secret hex", self.device_secret.hex()),
                ("pay URL signature", self.sig),
                ("offline code", self.code),
                ("private key", self.key_body),
                ("PIN", self.pin),
                ("token", self.token),
            )
            if value in text
        ]
        return found


@pytest.fixture
def real(tmp_path: Path) -> Secrets:
    return Secrets(tmp_path)


def log_everything(s: Secrets) -> None:
    """The careless ways a secret could be logged."""
    log_event(log, "pay.shown", url=s.url, order="o-1")  # innocent field name, signed URL
    log_event(log, "config.loaded", value=s.secret_text)  # the secret under another name
    log_event(log, "offline.entered", offline_code=s.code, amount_fen=1280)
    log_event(log, "register.sent", detail=f"token={s.token} kiosk={KIOSK}")
    log_event(log, "service.login", body=json.dumps({"pin": s.pin, "user": "tech"}))
    log.warning("secret file holds %s; pin: %s", s.secret_text, s.pin)
    try:
        raise ValueError(f"bad key file:\n{s.pem}")
    except ValueError:
        log.exception("identity.load_failed")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield
    setup_logging("warning", "kv", stream=io.StringIO())


@pytest.mark.parametrize("fmt", ["kv", "json"])
def test_the_stderr_lines_never_carry_a_secret(
    real: Secrets, fmt: str, restore_logging: None
) -> None:
    buf = io.StringIO()
    setup_logging("info", fmt, stream=buf)
    log_everything(real)
    out = buf.getvalue()
    assert out.count("\n") == 7, out
    assert real.leaks(out) == [], out
    # what is not secret stays readable
    assert "event=pay.shown" in out or '"event": "pay.shown"' in out
    assert "o=" + make_order_id(KIOSK, 7) in out and "a=1280" in out and "amount_fen" in out
    assert f"kiosk={KIOSK}" in out and "identity.load_failed" in out and "user" in out
    if fmt == "json":
        for line in out.splitlines():
            json.loads(line)  # still JSON after redaction


def test_the_upload_logs_tail_never_carries_a_secret(real: Secrets) -> None:
    tail = _LogTail()
    root = logging.getLogger()
    root.addHandler(tail)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        log_everything(real)
    finally:
        root.removeHandler(tail)
        root.setLevel(level)
    text = "\n".join(tail.lines)
    assert len(tail.lines) == 7, text
    assert real.leaks(text) == [], text
    assert "event=offline.entered" in text and f"offline_code={REDACTED}" in text


def test_redact_patterns() -> None:
    assert (
        redact("https://p/x?o=K-1&a=5&e=9&s=AbC_d-1") == f"https://p/x?o=K-1&a=5&e=9&s={REDACTED}"
    )
    assert redact("GET /cb?sig=deadbeef&x=1") == f"GET /cb?sig={REDACTED}&x=1"
    assert (
        redact('{"payment_secret": "abc", "n": 1}') == f'{{"payment_secret": "{REDACTED}", "n": 1}}'
    )
    assert redact("service_pin_hash=pbkdf2$1$ab$cd") == f"service_pin_hash={REDACTED}"
    assert redact("Token: xyz") == f"Token: {REDACTED}"
    # words that merely contain a secret word are kept
    kept = "logger=kiosk.sync.signing spinning=3 mapping=m shipping=s kid=k1 signed=true"
    assert redact(kept) == kept
    once = redact("pin=1234 -----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----")
    assert "MHc" not in once and "1234" not in once
    assert redact(once) == once  # idempotent


def test_kiosk_provision_lines_are_redacted(tmp_path: Path) -> None:
    """kiosk-provision's log handler formats with the same redacting formatter."""
    token = secrets.token_urlsafe(18)
    code = (
        "import logging\n"
        "from provisioning.cli import main\n"
        "main([])\n"  # installs its log handler, prints the help
        f"logging.getLogger('provisioning.x').error('register failed: token=%s', {token!r})\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert "register failed" in r.stderr, r.stderr
    assert token not in r.stderr and f"token={REDACTED}" in r.stderr, r.stderr


def test_formatter_is_the_one_line_format() -> None:
    rec = logging.LogRecord("kiosk.x", logging.INFO, __file__, 1, "e", None, None)
    rec.kv = {"device_secret": "s3cr3tvalue", "slot": 3}
    assert formatter("kv").format(rec).endswith(f"event=e device_secret={REDACTED} slot=3")
