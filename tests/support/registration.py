"""A registration round trip over the broker's bootstrap listener (TLS, no client certificate),
as `kiosk-provision register` does it, for tests that need a kiosk registered with the
province simulator's ProvisioningCA: returns the reply to one request."""

from __future__ import annotations

import json
import queue
import ssl
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from kiosk.sync.topics import register_reply, register_request


def register_over_mqtt(
    port: int, ca_file: Path, request: dict[str, Any], timeout: float = 20.0
) -> bytes:
    """Publish `request` on `kiosk/v1/register/<id>/request` and return the reply carrying its
    nonce (AssertionError when none comes within `timeout`)."""
    kiosk_id = str(request["kiosk_id"])
    replies: queue.Queue[bytes] = queue.Queue()
    subscribed: queue.Queue[bool] = queue.Queue()
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"reg-{request['nonce']}", protocol=mqtt.MQTTv5
    )
    c.tls_set_context(ssl.create_default_context(cafile=str(ca_file)))
    c.on_connect = lambda cl, _u, _f, _rc, _p=None: cl.subscribe(register_reply(kiosk_id), qos=1)
    c.on_subscribe = lambda *_a: subscribed.put(True)
    c.on_message = lambda _c, _u, m: replies.put(bytes(m.payload))
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        assert subscribed.get(timeout=timeout)
        c.publish(register_request(kiosk_id), json.dumps(request), qos=1)
        while True:
            payload = replies.get(timeout=timeout)  # queue.Empty: no reply
            if json.loads(payload).get("nonce") == request["nonce"]:
                return payload
    finally:
        c.disconnect()
        c.loop_stop()
