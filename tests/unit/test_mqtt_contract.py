"""docs/mqtt-api.yaml as JSON Schemas: every schema is valid draft 2020-12, every topic maps to
its channel, what the kiosk and the province build validates, and what the kiosk refuses (or a
province must not send) does not. The recorder that holds every integration test's traffic to
these schemas is tests/support/mqtt_record.py."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from kiosk.core.planogram import SlotKind, planogram_to_csv
from kiosk.sim.demo_data import demo_catalog, demo_planogram
from kiosk.sync import messages
from kiosk.sync.signing import generate_keypair, key_id, sign_envelope
from kiosk.sync.topics import Topics, encode
from tests.support.kiosk_node import sale_body
from tests.support.mqtt_contract import contract

KIOSK = "AH-340100-0001"
ORDER = f"{KIOSK}-7K2Q0001A"
T = Topics(KIOSK)
SHA = hashlib.sha256(b"img").hexdigest()
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "province-guide.md"
PRIV, PUB = generate_keypair()
KID = key_id(PUB)


def problems(topic: str, obj: Any) -> list[str]:
    payload = obj if isinstance(obj, bytes) else encode(obj)
    return [f"{v.problem} at {v.instance_path}" for v in contract().check(topic, payload)]


def record(kind: str, body: dict[str, Any], priority: str, event_id: str = "") -> dict[str, Any]:
    return {
        "kiosk_id": KIOSK,
        "seq": 7,
        "event_id": event_id or uuid.uuid4().hex,
        "kind": kind,
        "priority": priority,
        "kiosk_time": 1790000000.25,
        "clock_offset": None,
        "boot": 3,
        "body": body,
    }


def guide_wire(vector: str) -> dict[str, Any]:
    text = GUIDE.read_text(encoding="utf-8")
    block = text.split(f"```vector name={vector}\n", 1)[1].split("```", 1)[0]
    m = re.search(r"^wire: (.*)$", block, re.M)
    assert m is not None, vector
    wire: dict[str, Any] = json.loads(m.group(1))
    return wire


# --- the document --------------------------------------------------------------------------


def test_every_schema_is_a_draft_2020_12_schema_and_every_message_has_one() -> None:
    c = contract()
    for name in c.schema_names():
        Draft202012Validator.check_schema(c.doc["components"]["schemas"][name])
    for name, msg in c.doc["components"]["messages"].items():
        ref = msg["payload"]["$ref"]
        assert ref.startswith("#/components/schemas/"), name
        assert ref.rsplit("/", 1)[1] in c.doc["components"]["schemas"], name


def test_every_topic_maps_to_its_channel() -> None:
    c = contract()
    for topic in T.all_topics(SHA):
        found = c.match(topic)
        assert found is not None, topic
    ch, params = c.match(T.events("sale")) or (None, {})
    assert ch is not None and ch.message == "SaleEvent" and params == {"kioskId": KIOSK}
    assert c.match(T.image_reply(SHA)) is not None
    assert c.match(f"kiosk/v1/province/images/{SHA}") is not None
    for bad in ("kiosk/v1/province/secrets", f"kiosk/v1/{KIOSK}/events/bogus", "other/x"):
        assert c.match(bad) is None, bad
        assert problems(bad, b"{}") == ["no channel of docs/mqtt-api.yaml has this topic at "]
    # another prefix (test isolation) maps onto the document's kiosk/v1
    iso = Topics(KIOSK, prefix="test/run1/kiosk/v1")
    assert c.match(iso.acks, prefix="test/run1/kiosk/v1") is not None


# --- uplink --------------------------------------------------------------------------------


def test_sale_record_is_strict() -> None:
    body = sale_body(KIOSK, 1, "0" * 64, 1)
    assert problems(T.events("sale"), record("sale", body, "critical", f"sale-{ORDER}")) == []
    extra = {**body, "note": "x"}
    assert problems(T.events("sale"), record("sale", extra, "critical", f"sale-{ORDER}"))
    line = {**body, "lines": [{**body["lines"][0], "outcome": "ok"}]}
    assert problems(T.events("sale"), record("sale", line, "critical", f"sale-{ORDER}"))
    money = {**body, "paid_fen": 10.5}
    assert problems(T.events("sale"), record("sale", money, "critical", f"sale-{ORDER}"))
    # the kind is the topic's, the priority the kind's
    assert problems(T.events("sale"), record("sale", body, "low", f"sale-{ORDER}"))
    assert problems(T.events("refund_due"), record("sale", body, "critical", f"sale-{ORDER}"))


GOOD_BODIES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "refund_due",
        "critical",
        {"order_id": ORDER, "amount_fen": 2990, "reason": "not_delivered", "provider_ref": ""},
    ),
    (
        "order",
        "critical",
        {
            "order_id": ORDER,
            "state": "cancelled",
            "reason": "timeout",
            "total_fen": 3990,
            "paid_fen": 0,
            "at": 1790000000.5,
        },
    ),
    (
        "stock",
        "high",
        {
            "slot_no": 11,
            "product_id": "TEA-LAGP-50",
            "delta": -1,
            "level": 4,
            "reason": "sale",
            "ref": ORDER,
            "at": 1790000000.5,
        },
    ),
    (
        "selftest",
        "high",
        {
            "source": "service_menu",
            "ok": False,
            "started_at": 1790000000,
            "finished_at": 1790000030.5,
            "slots": [
                {"slot_no": 11, "result": "ok", "detail": ""},
                {"slot_no": 12, "result": "jammed", "detail": "motor stalled"},
            ],
            "technician": "",
        },
    ),
    (
        "alarm",
        "high",
        {
            "code": "SLOT_FAULT",
            "severity": "warning",
            "detail": "slot 12 jammed",
            "context": {"order_id": ORDER, "slot_no": 12},
        },
    ),
    (
        "alarm",
        "high",
        {
            "code": "SYNC_REJECTED",
            "severity": "warning",
            "detail": "",
            "context": {
                "what": "desired/prices",
                "reason": "BAD_SIGNATURE",
                "count": 3,
                "first_at": 1790000000.0,
                "last_at": 1790000010.0,
            },
        },
    ),
    (
        "technician",
        "high",
        {"action": "restock", "technician": "T0042", "slot": 11, "level": 5, "at": 1.5},
    ),
    ("technician", "high", {"action": "lock_sales", "technician": "", "locked": True, "at": 1.5}),
    (
        "technician",
        "high",
        {"action": "open_door", "technician": "", "slot": 31, "tx": 9, "kind": "unlock", "at": 1},
    ),
    (
        "technician",
        "high",
        {"action": "test_vend", "technician": "T1", "slot": 3, "tx": 8, "kind": "test", "at": 1},
    ),
    (
        "technician",
        "high",
        {
            "action": "test_vend_done",
            "technician": "T1",
            "slot": 31,
            "tx": 9,
            "outcome": "DOOR_OPENED_AND_CLOSED",
            "at": 1,
        },
    ),
    ("technician", "high", {"action": "upload_logs", "lines": ["a", "b"], "at": 1.5}),
    (
        "technician",
        "high",
        {"action": "ServiceLogin", "ok": False, "locked_out": True, "technician": "", "at": 1},
    ),
    (
        "technician",
        "high",
        {"action": "ServiceExit", "reason": "timeout", "technician": "T1", "at": 1},
    ),
    (
        "technician",
        "high",
        {"action": "ServiceViewed", "panel": "stock", "technician": "T1", "at": 1},
    ),
]


@pytest.mark.parametrize(("kind", "priority", "body"), GOOD_BODIES)
def test_event_bodies(kind: str, priority: str, body: dict[str, Any]) -> None:
    eid = {"order": f"order-{ORDER}-cancelled", "stock": f"stock-{KIOSK}-7K2Q-1"}.get(kind, "")
    eid = {
        "refund_due": f"refund-{ORDER}-not_delivered-",
        "selftest": f"selftest-{KIOSK}-7K2Q-1",
    }.get(kind, eid)
    assert problems(T.events(kind), record(kind, body, priority, eid)) == []
    # every field listed is required
    for field in body:
        short = {k: v for k, v in body.items() if k != field}
        assert problems(T.events(kind), record(kind, short, priority, eid)), (kind, field)


@pytest.mark.parametrize(
    "body",
    [
        # the controller's old shape, and the old SYNC_REJECTED context without count
        {"kind": "slot_fault", "order_id": "", "slot_no": None, "detail": "x"},
        {
            "code": "SYNC_REJECTED",
            "severity": "warning",
            "detail": "",
            "context": {"what": "catalog", "reason": "BAD_SIGNATURE"},
        },
        {"code": "slot_fault", "severity": "warning", "detail": "", "context": {}},
        {"code": "SLOT_FAULT", "severity": "urgent", "detail": "", "context": {}},
        {"code": "SLOT_FAULT", "severity": "warning", "detail": "", "context": {"x": [1]}},
    ],
)
def test_alarm_shape_is_one(body: dict[str, Any]) -> None:
    assert problems(T.events("alarm"), record("alarm", body, "high"))


def test_technician_action_and_its_fields() -> None:
    bad = [
        {"action": "dance", "at": 1},
        {"action": "restock", "slot": 0, "level": 5, "at": 1},
        {"action": "test_vend", "slot": 3, "tx": 9, "kind": "open", "at": 1},
        {"action": "test_vend_done", "slot": 3, "tx": 9, "outcome": "fine", "at": 1},
    ]
    for body in bad:
        assert problems(T.events("technician"), record("technician", body, "high")), body


def test_reported_telemetry_status_and_requests_as_the_kiosk_builds_them() -> None:
    reported = messages.reported_state(
        applied_versions={"catalog": 2, "catalog_in_store": 2},
        stock={11: 5, 12: 0},
        software_version="1.2.3",
        link={"serial_frames": 10},
        outbox_depth={"critical": 0},
        outbox_dropped={},
    )
    assert problems(T.reported, record("reported", reported, "normal")) == []
    metrics: dict[str, Any] = {
        "mode": "idle",
        "board_online": True,
        "mqtt_connected": True,
        "outbox_depth": 0,
        "clock_offset_s": None,
        "serial_retransmits": 0,
        "mqtt_published": 3,
    }
    tele = messages.telemetry(metrics)
    assert problems(T.telemetry, record("telemetry", tele, "low")) == []
    assert problems(T.telemetry, record("telemetry", {"metrics": {"mode": 1}}, "low"))
    birth = messages.birth(KIOSK, 3, 1790000000.5, "1.2.3", None, 17)
    assert problems(T.status, birth) == []
    assert problems(T.status, messages.will(KIOSK, 3, 1790000000.5)) == []
    assert problems(T.status, {k: v for k, v in birth.items() if k != "software"})
    assert problems(T.status, {**birth, "kiosk_id": "AH-340100-0002"})  # not the topic's
    req = messages.order_status_request(KIOSK, ORDER, uuid.uuid4().hex, 1790000000)
    assert problems(T.order_status_request, req) == []
    assert problems(T.order_status_request, {**req, "order_id": "nonsense"})
    assert problems(T.image_request, messages.image_request(KIOSK, SHA)) == []
    assert problems(T.image_request, messages.image_request(KIOSK, SHA.upper()))


# --- downlink ------------------------------------------------------------------------------


def test_guide_vectors_are_valid_messages() -> None:
    assert problems(T.desired("prices"), guide_wire("envelope-prices")) == []
    assert problems(T.commands, guide_wire("envelope-command")) == []
    assert problems(T.payment_confirm, guide_wire("confirmation")) == []
    padded = guide_wire("envelope-prices")
    padded["sig"] += "=="
    assert problems(T.desired("prices"), padded)
    extra = guide_wire("confirmation")
    extra["confirmation"]["note"] = "x"  # the kiosk refuses unknown confirmation fields
    assert problems(T.payment_confirm, extra)


def _catalog_body() -> dict[str, Any]:
    products = []
    for p in demo_catalog():
        d = {k: getattr(v, "value", v) for k, v in dataclasses.asdict(p).items()}
        d["image_ref"] = SHA
        products.append(d)
    return {"name": "catalog", "version": 3, "issued_at": 1790000000, "products": products}


def test_signed_state_bodies() -> None:
    catalog = _catalog_body()
    assert problems("kiosk/v1/province/catalog", sign_envelope(PRIV, KID, catalog)) == []
    bad = copy.deepcopy(catalog)
    bad["products"][0]["colour"] = "red"  # Product(**p) refuses it
    assert problems("kiosk/v1/province/catalog", sign_envelope(PRIV, KID, bad))
    bad = copy.deepcopy(catalog)
    bad["products"][0]["image_ref"] = "../../etc/passwd"
    assert problems("kiosk/v1/province/catalog", sign_envelope(PRIV, KID, bad))
    bad = copy.deepcopy(catalog)
    bad["products"][0]["price_fen"] = 39.9
    assert problems("kiosk/v1/province/catalog", sign_envelope(PRIV, KID, bad))

    csv = planogram_to_csv(demo_planogram(SlotKind.SPIRAL))
    pg = {"name": "planogram", "version": 2, "kiosk_id": KIOSK, "issued_at": 1, "csv": csv}
    assert problems(T.desired("planogram"), sign_envelope(PRIV, KID, pg)) == []
    no_header = {**pg, "csv": csv.split("\n", 1)[1]}
    assert problems(T.desired("planogram"), sign_envelope(PRIV, KID, no_header))
    assert problems(T.desired("planogram"), sign_envelope(PRIV, KID, {**pg, "kiosk_id": None}))

    prices = {"name": "prices", "version": 2, "kiosk_id": KIOSK, "prices": {"TEA-1": 3990}}
    assert problems(T.desired("prices"), sign_envelope(PRIV, KID, prices)) == []
    zero = {**prices, "prices": {"TEA-1": 0}}
    assert problems(T.desired("prices"), sign_envelope(PRIV, KID, zero))

    config = {"name": "config", "version": 1, "kiosk_id": KIOSK, "anything": {"x": [1]}}
    assert problems(T.desired("config"), sign_envelope(PRIV, KID, config)) == []
    assert problems(T.desired("config"), sign_envelope(PRIV, KID, {**config, "version": 0}))

    from kiosk.sync.signing import _b64url  # the kiosk's own encoder

    # the full key set, root-signed (the schema checks the shape, not which key signed)
    keys = {"name": "keys", "version": 2, "keys": [_b64url(PUB)], "issued_at": 1790000000}
    assert problems("kiosk/v1/province/keys", sign_envelope(PRIV, KID, keys)) == []
    padded = {**keys, "keys": [_b64url(PUB) + "="]}
    assert problems("kiosk/v1/province/keys", sign_envelope(PRIV, KID, padded))
    deltas = {"name": "keys", "version": 2, "add": [_b64url(PUB)], "retire": [KID]}
    assert problems("kiosk/v1/province/keys", sign_envelope(PRIV, KID, deltas))  # refused form
    both = {**keys, "retire": [KID]}
    assert problems("kiosk/v1/province/keys", sign_envelope(PRIV, KID, both))
    jump = {**keys, "version": 2**63 - 1}
    assert problems("kiosk/v1/province/keys", sign_envelope(PRIV, KID, jump))


def test_commands_and_their_arguments() -> None:
    def cmd(command: str, args: dict[str, Any]) -> dict[str, Any]:
        body = {
            "kiosk_id": KIOSK,
            "command": command,
            "args": args,
            "nonce": uuid.uuid4().hex,
            "issued_at": 1790000000,
            "expires_at": 1790000300,
        }
        return sign_envelope(PRIV, KID, body)

    for command in ("lock_sales", "unlock_sales", "resync", "restart_app", "upload_logs"):
        assert problems(T.commands, cmd(command, {})) == [], command
    assert problems(T.commands, cmd("upload_logs", {"lines": 50})) == []
    assert problems(T.commands, cmd("open_door", {"slot": 31})) == []
    assert problems(T.commands, cmd("open_door", {}))
    assert problems(T.commands, cmd("open_door", {"slot": "31"}))
    assert problems(T.commands, cmd("upload_logs", {"lines": "all"}))
    assert problems(T.commands, cmd("self_destruct", {}))


def test_status_reply_speaks_capitals_only() -> None:
    conf = guide_wire("confirmation")["confirmation"]
    paid = {
        "order_id": conf["order_id"],
        "request_id": uuid.uuid4().hex,
        "status": "PAID",
        "confirmation": conf,
        "sent_at": 1790000030,
    }
    assert problems(T.order_status_reply, paid) == []
    not_paid = {**paid, "status": "NOT_PAID", "confirmation": None}
    assert problems(T.order_status_reply, not_paid) == []
    assert problems(T.order_status_reply, {**not_paid, "status": "CLOSED"}) == []
    for bad in ("paid", "UNKNOWN", "not_paid"):
        assert problems(T.order_status_reply, {**not_paid, "status": bad}), bad
    assert problems(T.order_status_reply, {**paid, "confirmation": None})


def test_acks_images_and_registration() -> None:
    assert problems(T.acks, guide_wire("envelope-ack")) == []
    body = {"name": "ack", "kiosk_id": KIOSK, "issued_at": 1790000031, "records": [["sale-x", 7]]}
    assert problems(T.acks, sign_envelope(PRIV, KID, body)) == []
    for bad in (
        {"records": []},
        {"records": [["x", 1]] * 1001},
        {"records": [["x", "7"]]},
        {"records": [["x"]]},
        {"issued_at": 0},
    ):
        assert problems(T.acks, sign_envelope(PRIV, KID, {**body, **bad})), bad
    old = {"event_ids": ["sale-x"], "sent_at": 1790000000}  # the unsigned ack of before
    assert problems(T.acks, old)
    assert problems(T.image_reply(SHA), b"img") == []
    assert problems(T.image_reply(SHA), b"other")
    assert problems(f"kiosk/v1/province/images/{SHA}", b"img") == []

    from cryptography.hazmat.primitives.asymmetric import ec

    from provisioning.register import build_request

    key = ec.generate_private_key(ec.SECP256R1())
    req = build_request(KIOSK, key, token="tok-123")
    assert problems(T.register_request, req) == []
    assert problems(T.register_request, {k: v for k, v in req.items() if k != "token"})
    refused = {"ok": False, "nonce": "ab", "error": "token_used", "detail": "spent"}
    assert problems(T.register_reply, refused) == []
    assert problems(T.register_reply, {**refused, "error": "nope"})
    assert problems(T.register_reply, {"ok": True, "nonce": "ab"})


def test_critical_alarms_say_so() -> None:
    body = {"code": "UNKNOWN_OUTCOME", "severity": "warning", "detail": "", "context": {}}
    assert problems(T.events("alarm"), record("alarm", body, "high"))
    assert problems(T.events("alarm"), record("alarm", {**body, "code": "STORE_CORRUPT"}, "high"))
    ok = {**body, "severity": "critical", "context": {"order_id": ORDER, "slot_no": 3}}
    assert problems(T.events("alarm"), record("alarm", ok, "high")) == []


def test_downlink_requires_what_the_kiosk_requires() -> None:
    reply = {"order_id": ORDER, "status": "NOT_PAID", "sent_at": 1790000030}
    assert problems(T.order_status_reply, reply) == []  # request_id: echoed, not needed
    assert problems(T.order_status_reply, {**reply, "status": "PAID"})  # PAID needs its proof
    refused = {"ok": False, "nonce": "ab"}
    assert problems(T.register_reply, refused) == []
