"""Every MQTT message of a test, checked against docs/mqtt-api.yaml.

`running_broker` (tests/support/fixtures.py, hence the `mosquitto` fixture and every test that
uses the real broker) starts a `Recording`: the broker gets the read-only audit identity
(kiosk.sim.broker `audit_identities`, docs/broker.md) and one `BrokerTap` subscribes to `#`
with it. When the broker fixture ends, every recorded message is validated
(tests/support/mqtt_contract.py); a violation or a topic the document does not list fails the
test that produced it, naming the topic, a payload excerpt and the schema path.

A test that sends off-contract messages ON PURPOSE (forged, malformed, unsigned) says so:
`recording(broker).tolerate(topic_filter, why)`; those messages are then not checked.
`recording(broker).seen(...)` / `wait_for(...)` let a test look at what crossed the broker.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kiosk.sim.broker import Mosquitto, Pki
from kiosk.sim.mqtt_tap import AUDIT_USER, BrokerTap, TappedMessage
from tests.support.mqtt_contract import Violation, contract

__all__ = [
    "AUDIT_USER",
    "Recording",
    "check_messages",
    "format_violations",
    "recording",
    "topic_matches",
]

_recordings: weakref.WeakKeyDictionary[Mosquitto, Recording] = weakref.WeakKeyDictionary()
MAX_SHOWN = 12


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching (`+` one level, `#` the rest)."""
    f, t = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(f) == len(t)


@dataclass(frozen=True, slots=True)
class Tolerated:
    topic_filter: str
    why: str
    payload: bytes | None = None  # None: every message on the filter

    def covers(self, m: TappedMessage) -> bool:
        return topic_matches(self.topic_filter, m.topic) and self.payload in (None, m.payload)


def check_messages(
    messages: Iterable[TappedMessage], tolerated: Iterable[Tolerated] = ()
) -> list[Violation]:
    """Every violation among `messages`, skipping the tolerated ones."""
    skip: list[Tolerated] = []
    exact: set[tuple[str, bytes]] = set()  # (topic, payload): a flood tolerates thousands
    for t in tolerated:
        if t.payload is not None and not any(c in t.topic_filter for c in "+#"):
            exact.add((t.topic_filter, t.payload))
        else:
            skip.append(t)
    out: list[Violation] = []
    for m in messages:
        if (m.topic, m.payload) in exact or any(t.covers(m) for t in skip):
            continue
        out.extend(contract().check(m.topic, m.payload))
    return out


def format_violations(violations: list[Violation], where: str) -> str:
    # one entry per message: its problems, then the topic and payload once
    by_message: dict[tuple[str, bytes], list[Violation]] = {}
    for v in violations:
        by_message.setdefault((v.topic, v.payload), []).append(v)
    head = (
        f"{len(by_message)} MQTT message(s) {where} break docs/mqtt-api.yaml "
        "(tests/support/mqtt_record.py):"
    )
    shown: list[str] = []
    for (topic, payload), vs in list(by_message.items())[:MAX_SHOWN]:
        shown.append(f"topic {topic}:")
        for v in vs:
            where = f" at {v.instance_path}" if v.instance_path else ""
            schema = f" (schema path {v.schema_path})" if v.schema_path else ""
            shown.append(f"    {v.problem}{where}{schema}")
        shown.append(f"    payload ({len(payload)} bytes): {vs[0].excerpt()}")
    more = len(by_message) - MAX_SHOWN
    return "\n".join([head, *shown, *([f"... and {more} more message(s)"] if more > 0 else [])])


class Recording:
    """The tap of one broker and what the test declared off-contract."""

    def __init__(self, broker: Mosquitto, pki: Pki) -> None:
        assert broker.backend_port is not None, "recording needs the TLS broker"
        cert = pki.backend_client(AUDIT_USER)
        self.tap = BrokerTap(broker.backend_port, pki.ca_file, cert.cert_file, cert.key_file)
        self.broker = broker
        self.tolerated: list[Tolerated] = []
        self._lock = threading.Lock()

    def start(self) -> Recording:
        self.tap.start()
        return self

    def tolerate(self, topic_filter: str, why: str, payload: bytes | None = None) -> None:
        """Messages on `topic_filter` (only this `payload`, when given) are sent off-contract
        on purpose: not checked."""
        with self._lock:
            self.tolerated.append(Tolerated(topic_filter, why, payload))

    def messages(self) -> list[TappedMessage]:
        return self.tap.messages()

    def seen(self, topic_filter: str) -> list[TappedMessage]:
        return [m for m in self.tap.messages() if topic_matches(topic_filter, m.topic)]

    def wait_for(self, pred: Callable[[list[TappedMessage]], bool], timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self.tap.messages()):
                return True
            time.sleep(0.05)
        return pred(self.tap.messages())

    def finish(self) -> list[Violation]:
        """Stop the tap (after a drain while the broker still runs) and check everything."""
        if self.broker.running:
            self.tap.drain()
        self.tap.stop()
        with self._lock:
            tolerated = list(self.tolerated)
        return check_messages(self.tap.messages(), tolerated)


def start_recording(broker: Mosquitto, pki: Pki) -> Recording:
    rec = Recording(broker, pki).start()
    _recordings[broker] = rec
    return rec


def recording(broker: Mosquitto) -> Recording:
    """The recording of a broker started by `running_broker` (every test broker)."""
    rec = _recordings.get(broker)
    if rec is None:
        raise LookupError("this broker is not recorded: start it with running_broker()")
    return rec
