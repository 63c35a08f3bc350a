"""`upload_logs` over the real broker never carries a secret (issue 14 req. 10: every log path
redacts).

A kiosk built by `build_app(sync=True)` with its own device secret, connected to the real
Mosquitto; secrets get logged the careless ways (the device secret in a message, a signed pay
URL in a field, an offline code, a PIN in JSON text, a private key in a traceback); then the
province simulator sends a signed `upload_logs` command and the lines it stores must hold none
of them, while the events themselves are there.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import time
from pathlib import Path

from kiosk.app import build_app
from kiosk.core.payment import make_order_id, offline_code, pay_url
from kiosk.log import REDACTED, log_event
from kiosk.sim.broker import Mosquitto, Pki
from kiosk.sim.province import ProvinceSimulator
from kiosk.store import open_store
from kiosk.sync.identity import generate_device_key, private_key_pem
from kiosk.sync.signing import Keyring
from tests.support.config import write_kiosk_config
from tests.support.kiosk_node import KIOSK_A, sync_config
from tests.support.store import seed_store

log = logging.getLogger("kiosk.test.upload")


def test_uploaded_log_lines_hold_no_secret(
    tmp_path: Path, pki: Pki, mosquitto: Mosquitto, province: ProvinceSimulator
) -> None:
    data = tmp_path / "data"
    seed_store(data)
    store = open_store(data)
    Keyring([province.public_key]).save(store)  # as provisioning installs it
    store.close()
    secret_file = tmp_path / "device-secret"
    secret_file.write_text(secrets.token_hex(32) + "\n")
    cfg = write_kiosk_config(
        tmp_path / "kiosk.toml",
        "loop://",
        data,
        identity={"kiosk_id": KIOSK_A},
        payments={"device_secret_file": secret_file},
    )
    cert = pki.client(KIOSK_A)
    cfg = dataclasses.replace(
        cfg, sync=sync_config(mosquitto.url, pki.ca_file, cert.cert_file, cert.key_file)
    )
    app = build_app(cfg, sync=True)  # loads (and registers) the device secret
    bridge = app.sync
    assert bridge is not None
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    bridge.start()
    try:
        assert bridge.client.wait_connected(15), "kiosk did not connect"
        device_secret = secret_file.read_bytes()
        order = make_order_id(KIOSK_A, 41)
        url = pay_url("https://pay.kiosk.ah.example/p", KIOSK_A, order, 990, 2e9, device_secret)
        code = offline_code(device_secret, order, 990)
        pem = private_key_pem(generate_device_key()).decode()
        leaks = {
            "device secret": device_secret.decode().strip(),
            "pay URL signature": url.rsplit("&s=", 1)[1],
            "offline code": code,
            "PIN": "246813",
            "private key": pem.splitlines()[1],
        }
        log.warning("loaded secret %s", device_secret.decode().strip())
        log_event(log, "pay.shown", url=url)
        log_event(log, "offline.entered", offline_code=code)
        log_event(log, "service.login", body=json.dumps({"pin": "246813"}))
        try:
            raise ValueError(pem)
        except ValueError:
            log.exception("identity.failed")

        province.send_command(KIOSK_A, "upload_logs", {"lines": 200})
        deadline = time.monotonic() + 30
        uploads: list[dict[str, object]] = []
        while not uploads and time.monotonic() < deadline:
            uploads = [
                e["body"]
                for e in province.events(KIOSK_A)
                if e["body"].get("action") == "upload_logs"
            ]
            time.sleep(0.1)
        assert uploads, "no upload_logs record reached the province"
        lines = uploads[0]["lines"]
        assert isinstance(lines, list)
        text = "\n".join(str(x) for x in lines)
        for event in ("pay.shown", "offline.entered", "service.login", "identity.failed"):
            assert f"event={event}" in text, text
        assert f"offline_code={REDACTED}" in text, text
        assert [name for name, value in leaks.items() if value in text] == [], text
    finally:
        root.setLevel(level)
        bridge.stop()
        app.link.close()
        app.store.close()
