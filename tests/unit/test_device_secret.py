"""The device secret file (payments.device_secret_file, docs/configuration.md [payments]):
exactly what `kiosk-provision register` writes is accepted, anything else is a clear
ConfigError naming the key and what to do, before the kiosk signs a single pay URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.app import load_device_secret
from kiosk.config import ConfigError, KioskConfig, device_secret_problems
from tests.support.config import write_kiosk_config
from tests.support.paths import SECRET_FILE

HEX = "0123456789abcdef" * 4  # 64 lower-case hex digits


def _config(tmp_path: Path, secret: Path | None) -> KioskConfig:
    payments = {"device_secret_file": secret}  # None: the key is left out
    return write_kiosk_config(tmp_path / "k.toml", "emu://x", tmp_path / "data", payments=payments)


@pytest.fixture(autouse=True)
def _english(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIOSK_LANG", "en")


def _line_of(path: Path, start: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(n for n, text in enumerate(lines, 1) if text.startswith(start))


@pytest.mark.parametrize("data", [HEX.encode() + b"\n", SECRET_FILE.read_bytes()])
def test_what_register_writes_is_accepted(tmp_path: Path, data: bytes) -> None:
    secret = tmp_path / "device-secret"
    secret.write_bytes(data)
    cfg = _config(tmp_path, secret)
    assert device_secret_problems(cfg, data) == []
    assert load_device_secret(cfg) == data  # the HMAC key: the bytes exactly as stored


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\n",
        HEX.encode(),  # the newline is part of the key the province holds
        HEX.encode() + b"\r\n",  # saved by a Windows editor
        HEX.upper().encode() + b"\n",
        HEX[:63].encode() + b"\n",
        HEX.encode() + b"0\n",
        b" " + HEX.encode() + b"\n",
        HEX.encode() + b"\n\n",
        b"kiosk B secret",
    ],
)
def test_a_malformed_secret_is_a_clear_config_error(tmp_path: Path, data: bytes) -> None:
    secret = tmp_path / "device-secret"
    secret.write_bytes(data)
    cfg = _config(tmp_path, secret)
    with pytest.raises(ConfigError) as e:
        load_device_secret(cfg)
    (issue,) = e.value.issues
    text = str(issue)
    line = _line_of(cfg.source, "device_secret_file")
    assert text.startswith(f"{cfg.source}, line {line}: payments.device_secret_file = '{secret}': ")
    assert "64 hex digits" in text and f"has {len(data)} bytes" in text
    assert "kiosk-provision register" in text
    assert device_secret_problems(cfg, data) == [issue]


def test_no_secret_file_is_a_clear_config_error(tmp_path: Path) -> None:
    cfg = _config(tmp_path, None)
    with pytest.raises(ConfigError) as e:
        load_device_secret(cfg)
    (issue,) = e.value.issues
    line = _line_of(cfg.source, "[payments]")  # where the key goes
    where = f"{cfg.source}, line {line}: payments.device_secret_file = (missing): "
    assert str(issue).startswith(where)
    assert "required to run the kiosk" in str(issue) and "kiosk-provision register" in str(issue)
