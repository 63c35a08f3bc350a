"""The recorder of tests/support/mqtt_record.py can fail a test: a payload that breaks
docs/mqtt-api.yaml, or a topic the document does not list, crossing a recorded broker fails
the block that ran it, naming the topic, the payload and the schema path; what a test declared
off-contract on purpose does not."""

from __future__ import annotations

from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kiosk.sim.broker import Mosquitto, Pki
from kiosk.sync.topics import Topics, encode
from tests.support.fixtures import running_broker
from tests.support.kiosk_node import KIOSK_A
from tests.support.mqtt_record import recording

TIMEOUT = 20.0


def _publish_as_province(pki: Pki, broker: Mosquitto, topic: str, payload: bytes) -> None:
    """Publish once (QoS 1, wait for the PUBACK) on the backend listener."""
    assert broker.backend_port is not None
    cert = pki.backend_client()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="record-probe", protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(pki.ca_file), certfile=str(cert.cert_file), keyfile=str(cert.key_file))
    c.connect("127.0.0.1", broker.backend_port)
    c.loop_start()
    try:
        c.publish(topic, payload, qos=1).wait_for_publish(TIMEOUT)
    finally:
        c.disconnect()
        c.loop_stop()


def test_a_bad_payload_or_an_unlisted_topic_fails_the_block(tmp_path: Path, pki: Pki) -> None:
    topic = Topics(KIOSK_A).image_request
    with (
        pytest.raises(pytest.fail.Exception) as failed,
        running_broker(tmp_path / "b1", pki) as broker,
    ):
        _publish_as_province(pki, broker, topic, encode({"kiosk_id": KIOSK_A, "sha256": "x"}))
        _publish_as_province(pki, broker, "kiosk/v1/province/secrets", b"{}")
        assert recording(broker).wait_for(lambda ms: len(ms) >= 2, TIMEOUT)
    text = str(failed.value)
    assert "2 MQTT message(s)" in text, text
    assert f"topic {topic}:" in text and "'x' does not match" in text, text
    assert "at $.sha256 (schema path #/components/schemas/Sha256/pattern)" in text, text
    assert f'{{"kiosk_id":"{KIOSK_A}","sha256":"x","v":1}}' in text, text
    assert "topic kiosk/v1/province/secrets:" in text and "no channel" in text, text


def test_valid_and_tolerated_messages_pass(tmp_path: Path, pki: Pki) -> None:
    topic = Topics(KIOSK_A).image_request
    with running_broker(tmp_path / "b2", pki) as broker:
        rec = recording(broker)
        rec.tolerate(topic, "a malformed request, on purpose", b"not json")
        good = {"kiosk_id": KIOSK_A, "sha256": "0" * 64}
        _publish_as_province(pki, broker, topic, encode(good))
        _publish_as_province(pki, broker, topic, b"not json")
        assert rec.wait_for(lambda ms: len(ms) >= 2, TIMEOUT)
        assert [m.payload for m in rec.seen(topic)][-1] == b"not json"
