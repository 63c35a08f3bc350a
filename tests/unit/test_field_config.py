"""Field configs refuse the test and demo paths (kiosk.config.field_problems, issue 14 req. 10):
`--test-payments` and the published demo device secret with a real province's broker."""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from pathlib import Path

import pytest

from kiosk.app import load_device_secret
from kiosk.cli import main
from kiosk.config import (
    DEMO_SECRET_SHA256,
    ConfigError,
    KioskConfig,
    SyncConfig,
    demo_config_path,
    field_problems,
    is_field_config,
    load_config,
    refuse_in_field,
)
from tests.support.paths import SECRET_FILE

DEMO_SECRET = SECRET_FILE.read_bytes()


def with_broker(url: str) -> KioskConfig:
    cfg = load_config(demo_config_path())
    return dataclasses.replace(cfg, sync=SyncConfig(broker_url=url, allow_plaintext=True))


@pytest.mark.parametrize(
    "url",
    [
        "mqtts://mqtt.kiosk.ah.example:8883",
        "mqtts://10.1.2.3:8883",
        "mqtt://mqtt.kiosk.ah.example:1883",  # plaintext to a real province is still the field
        "mqtts://[2001:db8::1]:8883",
    ],
)
def test_a_broker_off_this_machine_is_a_field_config(url: str) -> None:
    assert is_field_config(with_broker(url))


@pytest.mark.parametrize(
    "url",
    [
        "mqtt://127.0.0.1:1883",
        "mqtts://127.0.0.1:8883",
        "mqtts://127.8.9.1:8883",
        "mqtts://localhost:8883",
        "mqtts://[::1]:8883",
    ],
)
def test_a_loopback_broker_is_the_demo_or_a_rehearsal(url: str) -> None:
    cfg = with_broker(url)
    assert not is_field_config(cfg)
    assert field_problems(cfg, test_payments=True, device_secret=DEMO_SECRET) == []


def test_the_digests_are_the_published_demo_secret() -> None:
    assert hashlib.sha256(DEMO_SECRET).hexdigest() in DEMO_SECRET_SHA256
    assert hashlib.sha256(DEMO_SECRET.strip()).hexdigest() in DEMO_SECRET_SHA256


def test_field_refuses_test_payments_and_the_demo_secret() -> None:
    cfg = with_broker("mqtts://mqtt.kiosk.ah.example:8883")
    (tp,) = field_problems(cfg, test_payments=True)
    assert tp.key == "sync.broker_url" and "--test-payments is refused" in str(tp)
    for demo in (DEMO_SECRET, DEMO_SECRET.strip(), DEMO_SECRET.strip() + b"\r\n"):
        (ds,) = field_problems(cfg, device_secret=demo)
        assert ds.key == "payments.device_secret_file" and "published demo secret" in str(ds)
        assert DEMO_SECRET.strip().decode() not in str(ds)  # the message names, never shows
    assert len(field_problems(cfg, test_payments=True, device_secret=DEMO_SECRET)) == 2
    assert field_problems(cfg, device_secret=secrets.token_hex(32).encode()) == []
    assert field_problems(cfg) == []
    with pytest.raises(ConfigError):
        refuse_in_field(cfg, test_payments=True)
    refuse_in_field(cfg, device_secret=b"a real secret")


def test_loading_the_demo_secret_in_a_field_config_is_refused() -> None:
    field = with_broker("mqtts://mqtt.kiosk.ah.example:8883")
    with pytest.raises(ConfigError, match="published demo secret"):
        load_device_secret(field)
    assert load_device_secret(load_config(demo_config_path())) == DEMO_SECRET


def test_config_check_names_the_demo_secret_in_a_field_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = demo_config_path().read_text(encoding="utf-8")
    ca = tmp_path / "ca.pem"
    ca.write_text("not read by the check\n")
    text = text.replace(
        'broker_url = "mqtt://127.0.0.1:1883"',
        f'broker_url = "mqtts://mqtt.kiosk.ah.example:8883"\nca_file = "{ca}"',
    )
    text = text.replace('"demo-device-secret"', f'"{SECRET_FILE}"')
    from kiosk.core.pin import DEMO_PIN_HASH, hash_pin

    text = text.replace(DEMO_PIN_HASH, hash_pin("802461", iterations=10))  # (refused as well)
    cfg = tmp_path / "kiosk.toml"
    cfg.write_text(text, encoding="utf-8")
    assert main(["config", "check", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "payments.device_secret_file" in err and "published demo secret" in err
