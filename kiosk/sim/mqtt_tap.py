"""A read-only recorder of every MQTT message crossing a broker: the audit identity's tap.

Owns: one subscriber on `#` that connects as a monitoring identity (a backend-CA client
certificate whose CN is listed in the broker's `audit_identities`, docs/broker.md: it may read
every topic and write none) and keeps every message it hears, in order. The tests validate what
it recorded against docs/mqtt-api.yaml (tests/support/mqtt_record.py); `kiosk demo
--record-mqtt FILE` writes the demo's traffic to FILE (one JSON object per line) for the same
check. Never publishes anything.

The session is persistent (MQTT v5, clean start off, session expiry), so a broker restarted
with its persistence (`Mosquitto.stop(); start()`) delivers to the tap what it queued while the
tap was reconnecting. `drain()` is the barrier before reading the record at the end: a
SUBSCRIBE round trip, then until nothing arrived for a short while.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

__all__ = ["AUDIT_USER", "BrokerTap", "TappedMessage", "load_recording"]

AUDIT_USER = "audit"  # the CN of the test/demo monitoring certificate (backend CA)
_SESSION_EXPIRY_S = 600
_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class TappedMessage:
    topic: str
    payload: bytes
    retain: bool
    at: float  # wall clock when the tap received it

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "payload_b64": base64.b64encode(self.payload).decode("ascii"),
            "retain": self.retain,
            "at": self.at,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TappedMessage:
        return cls(
            str(d["topic"]),
            base64.b64decode(str(d["payload_b64"])),
            bool(d["retain"]),
            float(d["at"]),
        )


def load_recording(path: Path) -> list[TappedMessage]:
    """The messages `BrokerTap.dump` wrote."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [TappedMessage.from_json(json.loads(line)) for line in lines if line.strip()]


class BrokerTap:
    """Subscribes to `#` on 127.0.0.1:`port` with a client certificate; records every message."""

    def __init__(self, port: int, ca_file: Path, cert_file: Path, key_file: Path) -> None:
        self.port = port
        self._lock = threading.Lock()
        self._messages: list[TappedMessage] = []
        self._last_at = time.monotonic()
        self._subscribed = threading.Event()
        self._barriers: dict[int, threading.Event] = {}
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
        ctx.load_cert_chain(str(cert_file), str(key_file))
        self.client_id = f"audit-tap-{os.getpid()}-{next(_ids)}"
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        c.tls_set_context(ctx)
        c.reconnect_delay_set(1, 1)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        self._client = c

    def start(self, timeout: float = 10.0) -> BrokerTap:
        # paho ships type hints but leaves Properties.__init__ unannotated (no-untyped-call)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = _SESSION_EXPIRY_S
        self._client.connect_async(
            "127.0.0.1", self.port, keepalive=30, clean_start=False, properties=props
        )
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise RuntimeError(f"the MQTT tap could not subscribe to # on port {self.port}")
        return self

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if not reason_code.is_failure:
            client.subscribe("#", qos=1)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any
    ) -> None:
        with self._lock:
            barrier = self._barriers.pop(mid, None)
        if barrier is not None:
            barrier.set()
        else:
            self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        m = TappedMessage(msg.topic, bytes(msg.payload), bool(msg.retain), time.time())
        with self._lock:
            self._messages.append(m)
            self._last_at = time.monotonic()

    def messages(self) -> list[TappedMessage]:
        with self._lock:
            return list(self._messages)

    def drain(self, quiet_s: float = 0.3, timeout: float = 5.0) -> None:
        """Wait until what the broker has routed to the tap so far has arrived: a SUBSCRIBE
        round trip (to a topic nobody uses), then until nothing came for `quiet_s`."""
        deadline = time.monotonic() + timeout
        barrier = threading.Event()
        with self._lock:
            rc, mid = self._client.subscribe(f"audit/barrier/{self.client_id}", qos=0)
            if rc == mqtt.MQTT_ERR_SUCCESS and mid is not None:
                self._barriers[mid] = barrier
        if rc == mqtt.MQTT_ERR_SUCCESS:
            barrier.wait(max(0.0, deadline - time.monotonic()))
        while time.monotonic() < deadline:
            with self._lock:
                idle = time.monotonic() - self._last_at
            if idle >= quiet_s:
                return
            time.sleep(quiet_s - idle)

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def dump(self, path: Path) -> None:
        """Write the record as JSON lines (TappedMessage.to_json)."""
        tmp = Path(path).with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for m in self.messages():
                f.write(json.dumps(m.to_json()) + "\n")
        os.replace(tmp, path)
