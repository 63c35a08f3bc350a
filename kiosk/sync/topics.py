"""The MQTT topic contract: every topic name, every payload schema, every size limit.

Owns: the topic tree (`kiosk/v1/<kiosk_id>/...` plus the province-wide `kiosk/v1/province/...`
and the registration channels `kiosk/v1/register/<kiosk_id>/request|reply`),
the JSON encoding (compact, sorted keys, UTF-8, `"v": SCHEMA_VERSION`), and a small declarative
schema per message kind (required fields and their types; unknown fields are tolerated).
Pure: no I/O, no clock. Must never be bypassed: no other module spells a topic name.
docs/mqtt-api.yaml is the same contract for people; tests keep the two in step.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "ALL_EVENTS",
    "ALL_IMAGE_REQUESTS",
    "ALL_ORDER_STATUS_REQUESTS",
    "ALL_REPORTED",
    "ALL_STATUS",
    "ALL_TELEMETRY",
    "DESIRED_NAMES",
    "EVENT_KINDS",
    "MAX_CATALOG_BYTES",
    "MAX_IMAGE_BYTES",
    "MAX_PAYLOAD_BYTES",
    "PREFIX",
    "PROVINCE_CATALOG",
    "PROVINCE_IMAGES",
    "PROVINCE_KEYS",
    "REGISTER_PREFIX",
    "REGISTER_REPLIES",
    "REGISTER_REQUESTS",
    "SCHEMAS",
    "SCHEMA_VERSION",
    "MessageError",
    "MessageErrorReason",
    "ParsedTopic",
    "Topics",
    "check_image",
    "decode",
    "encode",
    "max_bytes",
    "parse_topic",
    "province_image",
    "province_subscriptions",
    "register_reply",
    "register_request",
]

SCHEMA_VERSION = 1
PREFIX = "kiosk/v1"

MAX_PAYLOAD_BYTES = 64 * 1024  # every message unless listed below
MAX_CATALOG_BYTES = 1024 * 1024  # the province catalog (signed, retained)
MAX_IMAGE_BYTES = 256 * 1024  # one product image (raw bytes, addressed by its sha256)

EVENT_KINDS: tuple[str, ...] = (
    "sale",
    "refund_due",
    "order",
    "stock",
    "alarm",
    "technician",
    "selftest",
)
DESIRED_NAMES: tuple[str, ...] = ("planogram", "prices", "config")

PROVINCE = "province"  # reserved: never a kiosk id
PROVINCE_CATALOG = f"{PREFIX}/{PROVINCE}/catalog"
PROVINCE_KEYS = f"{PREFIX}/{PROVINCE}/keys"
PROVINCE_IMAGES = f"{PREFIX}/{PROVINCE}/images/+"

# Registration (provisioning/register.py <-> kiosk.sim.province_ca), used before a kiosk has a
# client certificate, over the broker's bootstrap listener (kiosk.sim.broker, docs/sync.md).
REGISTER = "register"  # reserved: never a kiosk id (its tree would be every kiosk's register)
REGISTER_PREFIX = f"{PREFIX}/{REGISTER}"
REGISTER_REQUESTS = f"{REGISTER_PREFIX}/+/request"  # what the province subscribes to
REGISTER_REPLIES = f"{REGISTER_PREFIX}/+/reply"

# Province-side subscription filters (the backend listens to every kiosk's uplink).
ALL_EVENTS = f"{PREFIX}/+/events/#"
ALL_TELEMETRY = f"{PREFIX}/+/telemetry"
ALL_STATUS = f"{PREFIX}/+/status"
ALL_REPORTED = f"{PREFIX}/+/reported"
ALL_ORDER_STATUS_REQUESTS = f"{PREFIX}/+/orders/status/request"
ALL_IMAGE_REQUESTS = f"{PREFIX}/+/images/request"

QOS_AT_LEAST_ONCE = 1

_KIOSK_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def _check_sha256(sha256: str) -> str:
    if not isinstance(sha256, str) or not _SHA256_RE.match(sha256):
        raise ValueError(f"not a lowercase hex sha256: {sha256!r}")
    return sha256


def province_image(sha256: str) -> str:
    """The retained, province-wide topic of one product image (raw bytes)."""
    return f"{PREFIX}/{PROVINCE}/images/{_check_sha256(sha256)}"


def _check_kiosk_id(kiosk_id: str) -> str:
    if not isinstance(kiosk_id, str) or not _KIOSK_ID_RE.match(kiosk_id):
        raise ValueError(
            f"kiosk id must be 1-64 letters, digits, '-' or '_' (one topic level), got {kiosk_id!r}"
        )
    if kiosk_id in (PROVINCE, REGISTER):
        raise ValueError(f"{kiosk_id!r} is reserved and cannot be a kiosk id")
    return kiosk_id


def register_request(kiosk_id: str, prefix: str = PREFIX) -> str:
    """QoS 1, not retained: a kiosk's registration or renewal request (a CSR + token or sig)."""
    return f"{prefix}/{REGISTER}/{_check_kiosk_id(kiosk_id)}/request"


def register_reply(kiosk_id: str, prefix: str = PREFIX) -> str:
    """QoS 1, not retained: the province's answer (certificate, sealed payment secret)."""
    return f"{prefix}/{REGISTER}/{_check_kiosk_id(kiosk_id)}/reply"


def province_subscriptions() -> list[tuple[str, int]]:
    """What the province backend subscribes to: every kiosk's uplink."""
    return [
        (f, QOS_AT_LEAST_ONCE)
        for f in (
            ALL_EVENTS,
            ALL_TELEMETRY,
            ALL_STATUS,
            ALL_REPORTED,
            ALL_ORDER_STATUS_REQUESTS,
            ALL_IMAGE_REQUESTS,
        )
    ]


class Topics:
    """The topics of one kiosk. `kiosk_id` must be a single topic level (no `/ + #`)."""

    def __init__(self, kiosk_id: str, prefix: str = PREFIX) -> None:
        _check_kiosk_id(kiosk_id)
        # other prefixes are allowed for test isolation on a shared broker
        if not prefix or any(c in prefix for c in "+#") or prefix.endswith("/"):
            raise ValueError(f"bad topic prefix {prefix!r}")
        self.kiosk_id = kiosk_id
        self.prefix = prefix
        self.base = f"{prefix}/{kiosk_id}"
        self.PROVINCE_CATALOG = f"{prefix}/{PROVINCE}/catalog"
        self.PROVINCE_KEYS = f"{prefix}/{PROVINCE}/keys"
        self.PROVINCE_IMAGES = f"{prefix}/{PROVINCE}/images/+"

    # --- up (kiosk -> province) ---------------------------------------------------------

    def events(self, kind: str) -> str:
        """QoS 1, not retained. Outbox records, acknowledged end to end on `acks`."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r} (known: {', '.join(EVENT_KINDS)})")
        return f"{self.base}/events/{kind}"

    @property
    def telemetry(self) -> str:
        """QoS 0/1, not retained. LOW priority, may be coalesced or dropped under pressure."""
        return f"{self.base}/telemetry"

    @property
    def status(self) -> str:
        """QoS 1, retained: the birth message on connect, the "offline" will."""
        return f"{self.base}/status"

    @property
    def reported(self) -> str:
        """QoS 1, not retained (also an outbox record): versions applied, stock, software."""
        return f"{self.base}/reported"

    @property
    def order_status_request(self) -> str:
        """QoS 1: "has order X been paid?"."""
        return f"{self.base}/orders/status/request"

    @property
    def image_request(self) -> str:
        """QoS 1: "please (re)publish image <sha256>"."""
        return f"{self.base}/images/request"

    # --- down (province -> kiosk) -------------------------------------------------------

    def desired(self, name: str) -> str:
        """QoS 1, retained, signed and versioned: planogram, prices or config."""
        if name not in DESIRED_NAMES:
            raise ValueError(f"unknown desired-state name {name!r} (known: {DESIRED_NAMES})")
        return f"{self.base}/desired/{name}"

    @property
    def payment_confirm(self) -> str:
        """QoS 1: a province payment confirmation (verified by kiosk.core.payment)."""
        return f"{self.base}/payment/confirm"

    @property
    def order_status_reply(self) -> str:
        """QoS 1: the answer to `order_status_request`."""
        return f"{self.base}/orders/status/reply"

    @property
    def commands(self) -> str:
        """QoS 1, not retained, signed, with expiry and nonce."""
        return f"{self.base}/commands"

    @property
    def acks(self) -> str:
        """QoS 1: end-to-end acknowledgements of outbox records: signed envelopes naming
        (event id, seq) pairs (kiosk.sync.acks)."""
        return f"{self.base}/acks"

    def image_reply(self, sha256: str) -> str:
        """QoS 1: one image's raw bytes, sent to this kiosk only."""
        return f"{self.base}/images/reply/{_check_sha256(sha256)}"

    def province_image(self, sha256: str) -> str:
        return f"{self.prefix}/{PROVINCE}/images/{_check_sha256(sha256)}"

    # --- registration (bootstrap listener; not in `subscriptions()`) ---------------------

    @property
    def register_request(self) -> str:
        return register_request(self.kiosk_id, self.prefix)

    @property
    def register_reply(self) -> str:
        return register_reply(self.kiosk_id, self.prefix)

    def uplink(self) -> list[str]:
        """Every topic this kiosk publishes on (the broker ACL grants write on these only)."""
        return [
            *(self.events(k) for k in EVENT_KINDS),
            self.telemetry,
            self.status,
            self.reported,
            self.order_status_request,
            self.image_request,
        ]

    # --- the kiosk's subscriptions ------------------------------------------------------

    def subscriptions(self) -> list[tuple[str, int]]:
        """Topic filters and QoS: only this kiosk's downlink plus the province-wide topics."""
        return [
            (f"{self.base}/desired/+", QOS_AT_LEAST_ONCE),
            (self.payment_confirm, QOS_AT_LEAST_ONCE),
            (self.order_status_reply, QOS_AT_LEAST_ONCE),
            (self.commands, QOS_AT_LEAST_ONCE),
            (self.acks, QOS_AT_LEAST_ONCE),
            (f"{self.base}/images/reply/+", QOS_AT_LEAST_ONCE),
            (self.PROVINCE_CATALOG, QOS_AT_LEAST_ONCE),
            (self.PROVINCE_KEYS, QOS_AT_LEAST_ONCE),
            (self.PROVINCE_IMAGES, QOS_AT_LEAST_ONCE),
        ]

    def all_topics(self, sample_sha256: str = "0" * 64) -> list[str]:
        """Every concrete topic of this kiosk (one sample image hash), for docs and tests."""
        return [
            *(self.events(k) for k in EVENT_KINDS),
            self.telemetry,
            self.status,
            self.reported,
            self.order_status_request,
            self.image_request,
            *(self.desired(n) for n in DESIRED_NAMES),
            self.payment_confirm,
            self.order_status_reply,
            self.commands,
            self.acks,
            self.image_reply(sample_sha256),
            self.PROVINCE_CATALOG,
            self.PROVINCE_KEYS,
            self.province_image(sample_sha256),
            self.register_request,
            self.register_reply,
        ]

    def message_kind(self, topic: str) -> str | None:
        """The schema kind (a key of SCHEMAS, or "image") of a topic, None if not ours."""
        p = parse_topic(topic, self.prefix)
        if p is None or p.kiosk_id not in (self.kiosk_id, None):
            return None
        return p.message_kind


# --- parsing topics ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    """`kiosk_id` is None for province-wide topics. `channel` is the first level after the
    kiosk id (events, telemetry, status, reported, desired, payment, orders, commands, acks,
    images; or catalog, keys, images for the province; "register" for
    `kiosk/v1/register/<kiosk_id>/request|reply`); `sub` is the rest ("" if none)."""

    kiosk_id: str | None
    channel: str
    sub: str

    @property
    def message_kind(self) -> str | None:
        """The schema kind to decode this topic's payload with (see SCHEMAS)."""
        if self.kiosk_id is None:
            return {"catalog": "catalog", "keys": "keys", "images": "image"}.get(self.channel)
        return _KIOSK_KINDS.get((self.channel, _sub_key(self.channel, self.sub)))


def _sub_key(channel: str, sub: str) -> str:
    if channel == "events":
        return "*" if sub in EVENT_KINDS else "?"
    if channel == "desired":
        return "*" if sub in DESIRED_NAMES else "?"
    if channel == "images" and sub.startswith("reply/"):
        return "reply/*" if _SHA256_RE.match(sub[len("reply/") :]) else "?"
    return sub


_KIOSK_KINDS: dict[tuple[str, str], str] = {
    ("events", "*"): "event",
    ("telemetry", ""): "telemetry",
    ("status", ""): "status",
    ("reported", ""): "reported",
    ("orders", "status/request"): "order_status_request",
    ("orders", "status/reply"): "order_status_reply",
    ("images", "request"): "image_request",
    ("images", "reply/*"): "image",
    ("desired", "*"): "desired",
    ("payment", "confirm"): "payment_confirm",
    ("commands", ""): "command",
    ("acks", ""): "ack",
    (REGISTER, "request"): "register_request",
    (REGISTER, "reply"): "register_reply",
}


def parse_topic(topic: str, prefix: str = PREFIX) -> ParsedTopic | None:
    """Split a topic of our tree; None for anything else (never raises)."""
    if not isinstance(topic, str) or not topic.startswith(prefix + "/"):
        return None
    rest = topic[len(prefix) + 1 :].split("/")
    if len(rest) < 2 or any(not p or p in ("+", "#") for p in rest):
        return None
    owner, channel, sub = rest[0], rest[1], "/".join(rest[2:])
    if owner == REGISTER:  # kiosk/v1/register/<kiosk_id>/request|reply
        if len(rest) == 3 and _KIOSK_ID_RE.match(channel) and channel != PROVINCE:
            parsed = ParsedTopic(channel, REGISTER, sub)
            return parsed if parsed.message_kind is not None else None
        return None
    if owner == PROVINCE:
        if (channel, sub) in (("catalog", ""), ("keys", "")) or (
            channel == "images" and _SHA256_RE.match(sub)
        ):
            return ParsedTopic(None, channel, sub)
        return None
    if not _KIOSK_ID_RE.match(owner) or channel == REGISTER:
        return None
    parsed = ParsedTopic(owner, channel, sub)
    return parsed if parsed.message_kind is not None else None


# --- payloads ---------------------------------------------------------------------------


class MessageErrorReason(StrEnum):
    TOO_BIG = "TOO_BIG"
    NOT_UTF8 = "NOT_UTF8"
    NOT_JSON = "NOT_JSON"
    NOT_OBJECT = "NOT_OBJECT"
    BAD_VERSION = "BAD_VERSION"
    MISSING_FIELD = "MISSING_FIELD"
    BAD_TYPE = "BAD_TYPE"
    BAD_VALUE = "BAD_VALUE"
    UNKNOWN_KIND = "UNKNOWN_KIND"
    HASH_MISMATCH = "HASH_MISMATCH"


class MessageError(ValueError):
    """A payload that does not meet the contract. `reason` is machine-readable, `detail` says
    which field and why; `str(e)` is "REASON: detail"."""

    def __init__(self, reason: MessageErrorReason, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)


# Field types. "int" excludes bool; "number" is int or float (not bool); "?" suffix: may be null.
_T = str
_Schema = Mapping[str, _T]

_RECORD: _Schema = {  # what the outbox publishes (events, telemetry, reported)
    "kiosk_id": "str",
    "seq": "int",
    "event_id": "str",
    "kind": "str",
    "priority": "str",
    "kiosk_time": "number",
    "clock_offset": "number?",
    "boot": "int",
    "body": "object",
}
_SIGNED: _Schema = {"kid": "str", "body": "object", "sig": "str"}

SCHEMAS: dict[str, _Schema] = {
    # up
    "event": _RECORD,
    "telemetry": _RECORD,
    "reported": _RECORD,
    "status": {"kiosk_id": "str", "state": "str", "boot": "int", "kiosk_time": "number"},
    "order_status_request": {
        "kiosk_id": "str",
        "order_id": "str",
        "request_id": "str",
        "asked_at": "number",
    },
    "image_request": {"kiosk_id": "str", "sha256": "str"},
    # down
    "desired": _SIGNED,
    "catalog": _SIGNED,
    "keys": _SIGNED,
    "command": _SIGNED,
    "payment_confirm": {"confirmation": "object", "sent_at": "number"},
    "order_status_reply": {
        "order_id": "str",
        "status": "str",
        "confirmation": "object?",
        "sent_at": "number",
    },
    "ack": _SIGNED,  # body: kiosk.sync.acks (name "ack", kiosk_id, issued_at, records)
    # registration (full contract: provisioning/register.py)
    "register_request": {"kiosk_id": "str", "nonce": "str", "csr": "str"},
    "register_reply": {"nonce": "str"},
}

_SIZE_LIMITS: dict[str, int] = {"catalog": MAX_CATALOG_BYTES, "image": MAX_IMAGE_BYTES}


def max_bytes(kind: str) -> int:
    """The size limit of a message kind's payload."""
    return _SIZE_LIMITS.get(kind, MAX_PAYLOAD_BYTES)


def _type_ok(value: Any, t: str) -> bool:
    if t.endswith("?"):
        if value is None:
            return True
        t = t[:-1]
    if t == "str":
        return isinstance(value, str)
    if t == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if t == "object":
        return isinstance(value, dict)
    if t == "list[str]":
        return isinstance(value, list) and all(isinstance(x, str) for x in value)
    raise AssertionError(f"unknown schema type {t!r}")


def _no_nan(value: str) -> Any:
    raise ValueError(f"{value} is not JSON")


def encode(obj: Mapping[str, Any]) -> bytes:
    """Compact JSON, sorted keys, UTF-8 (Chinese kept), `"v": SCHEMA_VERSION` added."""
    return json.dumps(
        {**obj, "v": SCHEMA_VERSION},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode("utf-8")


def decode(topic_kind: str, payload: bytes) -> dict[str, Any]:
    """Parse and check one payload of message kind `topic_kind` (a key of SCHEMAS).

    Raises MessageError for: too big, not UTF-8, not a JSON object, a missing or unsupported
    "v", a missing required field or one of the wrong type. Unknown fields are kept.
    """
    schema = SCHEMAS.get(topic_kind)
    if schema is None:
        raise MessageError(MessageErrorReason.UNKNOWN_KIND, f"no schema for {topic_kind!r}")
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise MessageError(MessageErrorReason.NOT_JSON, "payload is not bytes")
    limit = max_bytes(topic_kind)
    if len(payload) > limit:
        raise MessageError(
            MessageErrorReason.TOO_BIG, f"{len(payload)} bytes > {limit} for {topic_kind}"
        )
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as e:
        raise MessageError(MessageErrorReason.NOT_UTF8, str(e)) from None
    try:
        obj = json.loads(text, parse_constant=_no_nan)
    except (ValueError, RecursionError) as e:
        raise MessageError(MessageErrorReason.NOT_JSON, str(e)[:200]) from None
    if not isinstance(obj, dict):
        raise MessageError(MessageErrorReason.NOT_OBJECT, f"got JSON {type(obj).__name__}")
    v = obj.get("v")
    if "v" not in obj:
        raise MessageError(MessageErrorReason.BAD_VERSION, 'missing "v"')
    if not _type_ok(v, "int") or v != SCHEMA_VERSION:
        raise MessageError(
            MessageErrorReason.BAD_VERSION, f'"v" is {v!r}, this kiosk speaks {SCHEMA_VERSION}'
        )
    for name, t in schema.items():
        if name not in obj:
            if t.endswith("?"):
                continue  # optional-nullable fields may also be absent
            raise MessageError(MessageErrorReason.MISSING_FIELD, f"{topic_kind}: {name}")
        if not _type_ok(obj[name], t):
            raise MessageError(
                MessageErrorReason.BAD_TYPE,
                f"{topic_kind}: {name} must be {t}, got {type(obj[name]).__name__}",
            )
    if topic_kind == "status" and obj["state"] not in ("online", "offline"):
        raise MessageError(MessageErrorReason.BAD_VALUE, f"status: state {obj['state']!r}")
    return obj


def check_image(sha256: str, payload: bytes) -> bytes:
    """An image payload is raw bytes whose sha256 is the last topic level; checks both."""
    if len(payload) > MAX_IMAGE_BYTES:
        raise MessageError(
            MessageErrorReason.TOO_BIG, f"image {len(payload)} bytes > {MAX_IMAGE_BYTES}"
        )
    digest = hashlib.sha256(payload).hexdigest()
    if digest != sha256:
        raise MessageError(
            MessageErrorReason.HASH_MISMATCH, f"image sha256 {digest} != topic {sha256}"
        )
    return bytes(payload)
