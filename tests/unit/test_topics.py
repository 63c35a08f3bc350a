"""The topic contract: names, subscriptions, parsing, payload schemas, and docs/mqtt-api.yaml."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from kiosk.sync import topics as t
from kiosk.sync.topics import (
    MAX_PAYLOAD_BYTES,
    SCHEMA_VERSION,
    MessageError,
    MessageErrorReason,
    ParsedTopic,
    Topics,
    decode,
    encode,
    parse_topic,
)

KIOSK = "AH-341524-0007"
SHA = hashlib.sha256(b"img").hexdigest()
SPEC = Path(__file__).resolve().parents[2] / "docs" / "mqtt-api.yaml"


def test_topic_names() -> None:
    tp = Topics(KIOSK)
    assert tp.events("sale") == f"kiosk/v1/{KIOSK}/events/sale"
    assert tp.events("refund_due").endswith("/events/refund_due")
    assert tp.telemetry == f"kiosk/v1/{KIOSK}/telemetry"
    assert tp.status == f"kiosk/v1/{KIOSK}/status"
    assert tp.desired("prices") == f"kiosk/v1/{KIOSK}/desired/prices"
    assert tp.image_reply(SHA) == f"kiosk/v1/{KIOSK}/images/reply/{SHA}"
    assert t.PROVINCE_CATALOG == "kiosk/v1/province/catalog"
    assert t.province_image(SHA) == f"kiosk/v1/province/images/{SHA}"
    with pytest.raises(ValueError):
        tp.events("nonsense")
    with pytest.raises(ValueError):
        tp.desired("firmware")
    with pytest.raises(ValueError):
        tp.image_reply("not-a-hash")


@pytest.mark.parametrize("bad", ["", "a/b", "a+b", "#", "province", "x" * 65, "é"])
def test_bad_kiosk_ids(bad: str) -> None:
    with pytest.raises(ValueError):
        Topics(bad)


def _matches(filt: str, topic: str) -> bool:
    f, tt = filt.split("/"), topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(tt) or (part != "+" and part != tt[i]):
            return False
    return len(f) == len(tt)


def test_subscriptions_cover_exactly_the_downlink_of_this_kiosk() -> None:
    tp = Topics(KIOSK)
    subs = tp.subscriptions()
    assert all(q == 1 for _, q in subs)
    filters = [f for f, _ in subs]
    down = [
        *(tp.desired(n) for n in t.DESIRED_NAMES),
        tp.payment_confirm,
        tp.order_status_reply,
        tp.commands,
        tp.acks,
        tp.image_reply(SHA),
        t.PROVINCE_CATALOG,
        t.PROVINCE_KEYS,
        t.province_image(SHA),
    ]
    up = [
        *(tp.events(k) for k in t.EVENT_KINDS),
        tp.telemetry,
        tp.status,
        tp.reported,
        tp.order_status_request,
        tp.image_request,
    ]
    for topic in down:
        assert any(_matches(f, topic) for f in filters), topic
    for topic in up:  # never hear our own uplink
        assert not any(_matches(f, topic) for f in filters), topic
    other = Topics("AH-341524-0008")
    for topic in other.all_topics():
        if "/province/" not in topic:
            assert not any(_matches(f, topic) for f in filters), topic
    # and the province side hears every kiosk's uplink
    prov = [f for f, _ in t.province_subscriptions()]
    for topic in up:
        assert any(_matches(f, topic) for f in prov), topic


def test_parse_topic_round_trip() -> None:
    tp = Topics(KIOSK)
    assert parse_topic(tp.events("sale")) == ParsedTopic(KIOSK, "events", "sale")
    assert parse_topic(tp.acks) == ParsedTopic(KIOSK, "acks", "")
    assert parse_topic(t.PROVINCE_KEYS) == ParsedTopic(None, "keys", "")
    kinds = {topic: tp.message_kind(topic) for topic in tp.all_topics(SHA)}
    assert kinds[tp.desired("config")] == "desired"
    assert kinds[tp.commands] == "command"
    assert kinds[tp.image_reply(SHA)] == "image"
    assert kinds[t.province_image(SHA)] == "image"
    assert None not in kinds.values()
    for k in kinds.values():
        assert k == "image" or k in t.SCHEMAS
    for bad in [
        "",
        "kiosk/v1",
        "kiosk/v2/X/acks",
        f"kiosk/v1/{KIOSK}/events/bogus",
        f"kiosk/v1/{KIOSK}/nothing",
        "kiosk/v1/province/secrets",
        f"kiosk/v1/{KIOSK}/acks/extra",
        "kiosk/v1/+/acks",
    ]:
        assert parse_topic(bad) is None, bad
    assert Topics("AH-1").message_kind(tp.acks) is None  # another kiosk's topic


def test_other_prefix_for_test_isolation() -> None:
    tp = Topics(KIOSK, prefix="test/run42/kiosk/v1")
    assert tp.acks == f"test/run42/kiosk/v1/{KIOSK}/acks"
    assert tp.message_kind(tp.acks) == "ack"
    assert tp.PROVINCE_CATALOG == "test/run42/kiosk/v1/province/catalog"
    assert all(f.startswith("test/run42/") for f, _ in tp.subscriptions())


# --- payloads ---------------------------------------------------------------------------


def test_encode_is_compact_sorted_utf8_with_version() -> None:
    b = encode({"z": 1, "a": "六安瓜片"})
    assert b == '{"a":"六安瓜片","v":1,"z":1}'.encode()
    with pytest.raises(ValueError):
        encode({"x": float("nan")})


def _ack(**over: object) -> bytes:
    """An ack's shape on the wire: a signed envelope (the signature is kiosk.sync.acks' job)."""
    d: dict[str, object] = {"v": SCHEMA_VERSION, "kid": "k", "body": {"name": "ack"}, "sig": "s"}
    d.update(over)
    return json.dumps(d).encode()


def test_decode_valid_and_unknown_fields_tolerated() -> None:
    got = decode("ack", _ack(future_field={"x": 1}))
    assert got["body"] == {"name": "ack"} and got["future_field"] == {"x": 1}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"x" * (MAX_PAYLOAD_BYTES + 1), MessageErrorReason.TOO_BIG),
        (b"\xff\xfe{}", MessageErrorReason.NOT_UTF8),
        (b"{not json", MessageErrorReason.NOT_JSON),
        (b'{"v":1,"kid":"k","body":{"t":NaN},"sig":"s"}', MessageErrorReason.NOT_JSON),
        (b"[1,2]", MessageErrorReason.NOT_OBJECT),
        (b'{"kid":"k","body":{},"sig":"s"}', MessageErrorReason.BAD_VERSION),
        (_ack(v=2), MessageErrorReason.BAD_VERSION),
        (_ack(v="1"), MessageErrorReason.BAD_VERSION),
        (_ack(v=True), MessageErrorReason.BAD_VERSION),
        (b'{"v":1,"body":{},"sig":"s"}', MessageErrorReason.MISSING_FIELD),
        (b'{"v":1,"event_ids":["a"],"sent_at":1}', MessageErrorReason.MISSING_FIELD),
        (_ack(kid=1), MessageErrorReason.BAD_TYPE),
        (_ack(body="a"), MessageErrorReason.BAD_TYPE),
        (_ack(body=[1]), MessageErrorReason.BAD_TYPE),
        (_ack(sig=True), MessageErrorReason.BAD_TYPE),
    ],
)
def test_decode_rejections(payload: bytes, reason: MessageErrorReason) -> None:
    with pytest.raises(MessageError) as ei:
        decode("ack", payload)
    assert ei.value.reason is reason
    assert str(ei.value).startswith(reason.value)


def test_decode_unknown_kind_and_deep_nesting() -> None:
    with pytest.raises(MessageError) as ei:
        decode("nope", b"{}")
    assert ei.value.reason is MessageErrorReason.UNKNOWN_KIND
    deep = b'{"v":1,"kid":"k","body":{},"sig":"s","x":' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    with pytest.raises(MessageError):  # too big here; nesting never crashes anyway
        decode("ack", deep)
    deep_small = b'{"v":1,"kid":"k","body":{},"sig":"s","x":' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    with pytest.raises(MessageError) as ei:
        decode("ack", deep_small)
    assert ei.value.reason is MessageErrorReason.NOT_JSON


def test_catalog_may_be_bigger_and_nullable_fields() -> None:
    body = {"kid": "k", "sig": "s", "body": {"pad": "x" * (200 * 1024)}}
    assert decode("catalog", encode(body))["body"]["pad"]
    with pytest.raises(MessageError):
        decode("desired", encode(body))  # 64 KiB there
    reply = {"order_id": "o", "status": "NOT_PAID", "sent_at": 1}
    assert decode("order_status_reply", encode(reply))["status"] == "NOT_PAID"
    assert decode("order_status_reply", encode({**reply, "confirmation": None}))
    with pytest.raises(MessageError):
        decode("order_status_reply", encode({**reply, "confirmation": "yes"}))
    with pytest.raises(MessageError) as ei:
        decode("status", encode({"kiosk_id": "k", "state": "dancing", "boot": 1, "kiosk_time": 1}))
    assert ei.value.reason is MessageErrorReason.BAD_VALUE


def test_image_check() -> None:
    assert t.check_image(SHA, b"img") == b"img"
    with pytest.raises(MessageError) as ei:
        t.check_image(SHA, b"other")
    assert ei.value.reason is MessageErrorReason.HASH_MISMATCH
    with pytest.raises(MessageError):
        t.check_image(SHA, b"x" * (t.MAX_IMAGE_BYTES + 1))


# --- the AsyncAPI document --------------------------------------------------------------


def _spec_channels() -> dict[str, str]:
    """channel name -> its block of text, from the `channels:` section of docs/mqtt-api.yaml."""
    text = SPEC.read_text(encoding="utf-8")
    section = text.split("\nchannels:\n", 1)[1]
    section = re.split(r"\n(?=\S)", section, maxsplit=1)[0]  # up to the next top-level key
    blocks = re.split(r"\n(?=  ['\"]?kiosk/)", "\n" + section)
    out: dict[str, str] = {}
    for b in blocks:
        m = re.match(r"\s*['\"]?(kiosk/[^'\":\s]+)['\"]?:", b)
        if m:
            out[m.group(1)] = b
    return out


def _template(topic: str) -> str:
    return topic.replace(KIOSK, "{kioskId}").replace(SHA, "{sha256}")


def test_asyncapi_lists_every_topic_and_nothing_else() -> None:
    channels = _spec_channels()
    produced = {_template(x) for x in Topics(KIOSK).all_topics(SHA)}
    assert produced == set(channels), (
        f"missing in spec: {sorted(produced - set(channels))}; "
        f"not produced by Topics: {sorted(set(channels) - produced)}"
    )
    for name, block in channels.items():
        assert re.search(r"qos: [01]", block), name
        assert re.search(r"retain: (true|false)", block), name
        assert "x-direction:" in block, name
        assert "x-max-bytes:" in block, name
    text = SPEC.read_text(encoding="utf-8")
    assert re.search(r"^asyncapi: ['\"]?2\.6\.0", text, re.M)
