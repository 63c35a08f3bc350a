"""`kiosk-provision register --token` end to end over a real Mosquitto (plaintext loopback
listener, anonymous), with ProvisioningCA answering on the province side.

The integration fixture (tests/integration) runs a TLS broker whose ACL only lets kiosks use
`kiosk/v1/<id>/#`; the register topics need an ACL entry there, so this test runs its own broker.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prov_helpers import KIOSK_ID

from kiosk.config import load_config
from kiosk.sim.province_ca import ProvisioningCA, register_request_filter
from provisioning.cli import main

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@pytest.fixture(autouse=True, scope="module")
def _mosquitto_installed() -> None:
    # scripts/test.sh installs it; a missing broker is a broken setup, never a skip.
    if not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto is not installed: run bash scripts/test.sh (it installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"mosquitto did not listen on 127.0.0.1:{port} within 5 s")
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(timeout=5)


@pytest.fixture
def province(broker: int, tmp_path: Path) -> Iterator[ProvisioningCA]:
    ca = ProvisioningCA(tmp_path / "province")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="province", protocol=mqtt.MQTTv5)

    def on_message(c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        answer = ca.handle_request(msg.topic, bytes(msg.payload))
        if answer is not None:
            c.publish(answer[0], answer[1], qos=1)

    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(register_request_filter, qos=1)
    client.connect("127.0.0.1", broker)
    client.loop_start()
    time.sleep(0.3)
    yield ca
    client.disconnect()
    client.loop_stop()
    ca.close()


def test_register_over_mosquitto(
    broker: int,
    province: ProvisioningCA,
    make_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg_path = make_config(broker_url=f"mqtt://127.0.0.1:{broker}")
    assert main(["keys", "--config", str(cfg_path)]) == 0
    token = province.issue_token(KIOSK_ID)
    capsys.readouterr()
    assert main(["register", "--config", str(cfg_path), "--token", token, "--timeout", "5"]) == 0
    out = capsys.readouterr().out
    assert f"registered {KIOSK_ID}" in out and token not in out
    cfg = load_config(cfg_path)
    assert cfg.sync.cert_file is not None and cfg.payments.device_secret_file is not None
    assert cfg.payments.device_secret_file.read_bytes() == province.payment_secret(KIOSK_ID)
    # the token is spent; renewal works without one
    assert main(["register", "--config", str(cfg_path), "--token", token, "--timeout", "5"]) == 1
    assert "token_used" in capsys.readouterr().out
    assert main(["register", "--config", str(cfg_path), "--renew", "--timeout", "5"]) == 0
    assert main(["register", "--config", str(cfg_path), "--renew", "--if-expiring-days", "30"]) == 0
    assert "no renewal needed" in capsys.readouterr().out
