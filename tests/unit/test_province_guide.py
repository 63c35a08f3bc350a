"""The test vectors of docs/province-guide.md, checked against the kiosk's code (issue 13, req. 2).

Every ```vector name=<name>``` block of the guide is parsed here (`key: value` lines) and has
exactly one check below, which recomputes each value with the project's own functions and reads
every line of the block: a vector without a check, a check without a vector, or a line no check
reads fails the suite. So the guide and the code cannot drift apart.

Lines keyed `refuse, accepted today` state what the code accepts today although the guide tells
a province to refuse it (the guide's "Where the reference is more lenient" section). They are
checked against today's behaviour: when the code is tightened, these checks fail, and the line
becomes a plain `refuse` line (and the guide's section shrinks) in the same change.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk.app import load_device_secret as kiosk_load_device_secret
from kiosk.core import ledger, payment
from kiosk.core.ledger import GENESIS_HASH, LedgerError, ProblemKind
from kiosk.core.payment import (
    ConfirmationRejected,
    Payment,
    PaymentConfirmation,
    PayUrlParams,
    RejectReason,
)
from kiosk.sim.province import load_device_secret as province_load_device_secret
from kiosk.sync import acks, identity, keyset, ledger_head, signing, topics
from kiosk.sync.signing import Keyring, TrustError, TrustReason
from tests.support.paths import ROOT

GUIDE = ROOT / "docs" / "province-guide.md"
_BLOCK = re.compile(r"^```vector name=(\S+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
ACCEPTED_TODAY = "refuse, accepted today"
DEMO_KIOSK = "AH-340100-0001"


class Vector:
    """One block: its `key: value` lines in order, and which of them a check has read."""

    def __init__(self, name: str, lines: list[tuple[str, str]]) -> None:
        self.name = name
        self.lines = lines
        self.read: set[int] = set()

    def all(self, key: str) -> list[str]:
        found = [(n, v) for n, (k, v) in enumerate(self.lines) if k == key]
        self.read.update(n for n, _ in found)
        return [v for _, v in found]

    def one(self, key: str) -> str:
        values = self.all(key)
        assert len(values) == 1, f"vector {self.name}: want one {key!r} line, got {len(values)}"
        return values[0]

    def has(self, key: str) -> bool:
        return any(k == key for k, _ in self.lines)

    def unread(self) -> list[str]:
        return [f"{k}: {v}" for n, (k, v) in enumerate(self.lines) if n not in self.read]


def parse_guide() -> dict[str, Vector]:
    text = GUIDE.read_text(encoding="utf-8")
    out: dict[str, Vector] = {}
    for m in _BLOCK.finditer(text):
        name, body = m.group(1), m.group(2)
        assert name not in out, f"two vectors named {name!r} in {GUIDE.name}"
        lines = []
        for line in body.splitlines():
            key, sep, value = line.partition(": ")
            assert sep and value, f"vector {name}: not a 'key: value' line: {line!r}"
            lines.append((key, value))
        out[name] = Vector(name, lines)
    return out


VECTORS = parse_guide()
CHECKS: dict[str, Callable[[Vector], None]] = {}


def check(name: str) -> Callable[[Callable[[Vector], None]], Callable[[Vector], None]]:
    def register(fn: Callable[[Vector], None]) -> Callable[[Vector], None]:
        assert name not in CHECKS, f"two checks for vector {name!r}"
        CHECKS[name] = fn
        return fn

    return register


def demo_secret() -> bytes:
    return (ROOT / "kiosk" / "data" / "demo-device-secret").read_bytes()


def signed_text_bytes(text: str) -> bytes:
    """`domain\\n{json}` as written in the guide -> the signed bytes (the first `\\n` is the
    domain string's line feed)."""
    domain, sep, rest = text.partition("\\n")
    assert sep, f"no \\n after the domain in {text[:40]!r}"
    return (domain + "\n" + rest).encode("utf-8")


def raw_public(private: bytes) -> bytes:
    return (
        Ed25519PrivateKey.from_private_bytes(private)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


# --- the checks, one per vector ------------------------------------------------------------


@check("device-secret")
def _device_secret(v: Vector) -> None:
    path = ROOT / v.one("file")
    data = path.read_bytes()
    assert data.hex() == v.one("file_hex")
    assert data == (v.one("file_text_without_newline") + "\n").encode("ascii")
    assert len(data) == int(v.one("key_length"))
    key_hex = v.one("key_hex")
    assert province_load_device_secret(path).hex() == key_hex
    config: Any = SimpleNamespace(
        source=ROOT / "kiosk.toml",
        payments=SimpleNamespace(device_secret_file=path),
        sync=SimpleNamespace(broker_url="mqtt://127.0.0.1:1883"),  # not a field config
        key_lines={},  # where each key is in the file (none: this config has no file text)
    )
    assert kiosk_load_device_secret(config).hex() == key_hex


@check("device-secret-sealing")
def _device_secret_sealing(v: Vector) -> None:
    import base64

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    kiosk_id = v.one("kiosk_id")
    secret = (v.one("secret_text_without_newline") + "\n").encode("ascii")
    dev = ec.derive_private_key(int(v.one("device_private_scalar_hex"), 16), ec.SECP256R1())
    eph = ec.derive_private_key(int(v.one("ephemeral_private_scalar_hex"), 16), ec.SECP256R1())
    point = serialization.PublicFormat.UncompressedPoint
    pub = dev.public_key().public_bytes(serialization.Encoding.X962, point)
    assert pub.hex() == v.one("device_public_point")
    shared = eph.exchange(ec.ECDH(), dev.public_key())
    assert shared.hex() == v.one("shared_x")
    key = identity._kdf(shared, kiosk_id)
    assert key.hex() == v.one("aes_key")
    sealed = {k: v.one(k) for k in ("alg", "epk", "nonce", "ct")}
    epk = eph.public_key().public_bytes(serialization.Encoding.X962, point)
    assert base64.b64decode(sealed["epk"], validate=True) == epk
    nonce = base64.b64decode(sealed["nonce"], validate=True)
    assert (
        base64.b64encode(AESGCM(key).encrypt(nonce, secret, kiosk_id.encode())).decode()
        == (sealed["ct"])
    )
    assert identity.unseal(sealed, dev, kiosk_id) == secret  # the kiosk opens it


@check("order-id")
def _order_id(v: Vector) -> None:
    kiosk_id, epoch, seq = v.one("kiosk_id"), v.one("store_epoch"), int(v.one("order_seq"))
    assert payment.store_epoch_from_int(int(v.one("store_epoch_number"))) == epoch
    order_id = v.one("order_id")
    assert payment.make_order_id(kiosk_id, seq, epoch) == order_id
    assert payment.parse_order_id(order_id) == (kiosk_id, seq)
    assert payment.order_epoch(order_id) == epoch
    legacy = v.one("legacy_order_id")
    assert payment.make_order_id(kiosk_id, seq) == legacy
    assert payment.parse_order_id(legacy) == (kiosk_id, seq)
    assert payment.order_epoch(legacy) == ""


@check("order-id-parse")
def _order_id_parse(v: Vector) -> None:
    for line in v.all("parse"):
        order_id, _, want = line.partition(" -> ")
        kiosk_id, epoch, seq = want.split(", ")
        assert payment.parse_order_id(order_id) == (kiosk_id, int(seq)), line
        assert payment.order_epoch(order_id) == ("" if epoch == "-" else epoch), line
    for order_id in v.all("refuse"):
        with pytest.raises(ValueError):
            payment.parse_order_id(order_id)


_B64_CODECS = (
    (payment._b64url, payment._b64url_decode),
    (signing._b64url, signing._b64url_decode),
)


@check("base64url")
def _base64url(v: Vector) -> None:
    for line in v.all("encode"):
        hex_in, _, text = line.partition(" -> ")
        for encode, _decode in _B64_CODECS:
            assert encode(bytes.fromhex(hex_in)) == text, line
    for key in ("decode", ACCEPTED_TODAY):
        for line in v.all(key):
            text, _, hex_out = line.partition(" -> ")
            for _encode, decode in _B64_CODECS:
                assert decode(text).hex() == hex_out, f"{key}: {line}"
    for text in v.all("refuse"):
        for _encode, decode in _B64_CODECS:
            with pytest.raises(ValueError):
                decode(text)


@check("canonical-json")
def _canonical_json(v: Vector) -> None:
    value = json.loads(v.one("input"))
    want = v.one("canonical").encode("utf-8")
    assert want.hex() == v.one("canonical_hex")
    assert ledger.canonical_json(value) == want
    assert signing.canonical_body(value) == want
    assert identity.canonical(value) == want
    # the envelope and message encodings are the same JSON with "v" added
    assert topics.encode(value) == signing.canonical_body({**value, "v": 1})


@check("canonical-json-numbers")
def _canonical_json_numbers(v: Vector) -> None:
    value = json.loads(v.one("input"))
    assert signing.canonical_body(value).decode("utf-8") == v.one("envelope_canonical")
    assert v.one("ledger_canonical") == "refused"
    with pytest.raises(LedgerError):
        ledger.canonical_json(value)
    for text in v.all("envelope_refuses"):
        with pytest.raises(ValueError):
            signing.canonical_body(json.loads(text))


def _pay_url_vector(v: Vector) -> None:
    secret = demo_secret()
    base, kiosk_id, order_id = v.one("base"), v.one("kiosk_id"), v.one("order_id")
    amount, expires = int(v.one("amount_fen")), int(v.one("expires_at"))
    canonical = v.one("canonical")
    assert payment._url_canonical(kiosk_id, order_id, amount, expires) == canonical.encode()
    mac = hmac.new(secret, canonical.encode("ascii"), hashlib.sha256).digest()
    assert mac.hex() == v.one("hmac_sha256_hex")
    sig = v.one("sig")
    assert payment._b64url(mac[:12]) == sig
    assert payment.url_signature(secret, kiosk_id, order_id, amount, expires) == sig
    url = v.one("url")
    assert payment.pay_url(base, kiosk_id, order_id, amount, expires, secret) == url
    want = PayUrlParams(kiosk_id, order_id, amount, expires)
    assert payment.parse_pay_url(url, {kiosk_id: secret}) == want
    # the two usual ways to get the key wrong
    stripped = secret.rstrip(b"\n")
    assert payment.url_signature(stripped, kiosk_id, order_id, amount, expires) == v.one(
        "sig_if_newline_stripped"
    )
    decoded = bytes.fromhex(stripped.decode("ascii"))
    assert payment.url_signature(decoded, kiosk_id, order_id, amount, expires) == v.one(
        "sig_if_hex_decoded"
    )
    assert payment.parse_pay_url(url, {kiosk_id: stripped}) is None


check("pay-url-new")(_pay_url_vector)
check("pay-url-legacy")(_pay_url_vector)


@check("pay-url-parse")
def _pay_url_parse(v: Vector) -> None:
    secrets = {DEMO_KIOSK: demo_secret()}
    want = PayUrlParams(DEMO_KIOSK, f"{DEMO_KIOSK}-7K2Q0001A", 3990, 1790000120)
    for key in ("accept", ACCEPTED_TODAY):
        for url in v.all(key):
            assert payment.parse_pay_url(url, secrets) == want, f"{key}: {url}"
    for url in v.all("refuse"):
        assert payment.parse_pay_url(url, secrets) is None, f"refuse: {url}"


def _offline_code_vector(v: Vector) -> None:
    secret = demo_secret()
    order_id, amount = v.one("order_id"), int(v.one("amount_fen"))
    message = v.one("message")
    assert message == f"kiosk-offline-code-v1|{order_id}|{amount}"
    # the guide's recipe, step by step ...
    mac = hmac.new(secret, message.encode("ascii"), hashlib.sha256).digest()
    assert mac.hex() == v.one("hmac_sha256_hex")
    offset = mac[31] & 0x0F
    assert offset == int(v.one("offset"))
    four = mac[offset : offset + 4]
    assert four.hex() == v.one("four_bytes_hex")
    value = int.from_bytes(four, "big") & 0x7FFF_FFFF
    assert value == int(v.one("value"))
    code = v.one("code")
    assert f"{value % 10**8:08d}" == code
    # ... and the kiosk's code
    assert payment.offline_code(secret, order_id, amount) == code
    assert payment.offline_code_matches(secret, order_id, amount, f"{code[:4]} {code[4:]}")
    assert not payment.offline_code_matches(secret, order_id, amount + 1, code)


check("offline-code-new")(_offline_code_vector)
check("offline-code-legacy")(_offline_code_vector)


@check("confirmation")
def _confirmation(v: Vector) -> None:
    private = bytes.fromhex(v.one("private_key_hex"))
    fields = json.loads(v.one("fields"))
    unsigned = PaymentConfirmation(**fields)
    assert payment.confirmation_signing_bytes(unsigned) == signed_text_bytes(v.one("signed_text"))
    signed = payment.sign_confirmation(private, unsigned)
    assert payment._b64url(signed.signature) == v.one("signature")
    sent_at = int(v.one("sent_at"))
    wire = v.one("wire")
    body = {"confirmation": payment.confirmation_to_dict(signed), "sent_at": sent_at}
    assert topics.encode(body) == wire.encode("utf-8")
    # what the kiosk does with the wire form
    got = topics.decode("payment_confirm", wire.encode("utf-8"))
    parsed = payment.confirmation_from_dict(got["confirmation"])
    assert isinstance(parsed, PaymentConfirmation)

    def verify(c: PaymentConfirmation) -> Payment | ConfirmationRejected:
        return payment.verify_confirmation(
            c,
            province_public_key=raw_public(private),
            kiosk_id=fields["kiosk_id"],
            order_amounts={fields["order_id"]: fields["amount_fen"]},
            now=float(v.one("kiosk_now")),
        )

    paid = verify(parsed)
    assert isinstance(paid, Payment)
    assert (paid.provider_ref, paid.amount_fen) == (fields["provider_ref"], fields["amount_fen"])
    forged = PaymentConfirmation(**{**fields, "amount_fen": 1}, signature=parsed.signature)
    rejected = payment.verify_confirmation(
        forged,
        province_public_key=raw_public(private),
        kiosk_id=fields["kiosk_id"],
        order_amounts={fields["order_id"]: 1},
        now=float(v.one("kiosk_now")),
    )
    assert rejected == ConfirmationRejected(RejectReason.BAD_SIGNATURE)


def _envelope_vector(v: Vector, kind: str) -> None:
    private = bytes.fromhex(v.one("private_key_hex"))
    public = raw_public(private)
    if v.has("public_key_hex"):
        assert public.hex() == v.one("public_key_hex")
        assert signing._b64url(public) == v.one("public_key_base64url")
    kid = v.one("kid")
    assert signing.key_id(public) == kid
    body = json.loads(v.one("body"))
    signed_bytes = signed_text_bytes(v.one("signed_text"))
    assert signing.ENVELOPE_DOMAIN + signing.canonical_body(body) == signed_bytes
    env = signing.sign_envelope(private, kid, body)
    assert env["sig"] == v.one("sig")
    wire = v.one("wire").encode("utf-8")
    assert topics.encode(env) == wire
    # what the kiosk does with the wire form
    received = topics.decode(kind, wire)
    assert signing.verify_envelope(received, Keyring([public])) == body
    tampered = {**received, "body": {**body, "kiosk_id": "AH-340100-0002"}}
    with pytest.raises(TrustError) as e:
        signing.verify_envelope(tampered, Keyring([public]))
    assert e.value.reason is TrustReason.BAD_SIGNATURE


check("envelope-prices")(lambda v: _envelope_vector(v, "desired"))
check("envelope-command")(lambda v: _envelope_vector(v, "command"))


@check("keyset")
def _keyset(v: Vector) -> None:
    root_private = bytes.fromhex(v.one("root_private_key_hex"))
    root = raw_public(root_private)
    assert root.hex() == v.one("root_public_key_hex")
    assert signing.key_id(root) == v.one("root_kid")
    keys = [bytes.fromhex(h) for h in v.all("key_public_hex")]
    kids = [signing.key_id(k) for k in keys]
    assert kids == v.one("key_kids").split()
    body = json.loads(v.one("body"))
    assert body == keyset.key_set_body(body["version"], keys, body["issued_at"])
    signed_bytes = signed_text_bytes(v.one("signed_text"))
    assert keyset.KEYSET_DOMAIN + signing.canonical_body(body) == signed_bytes
    env = keyset.sign_key_set(root_private, body)
    assert env["sig"] == v.one("sig")
    wire = v.one("wire").encode("utf-8")
    assert topics.encode(env) == wire
    # what the kiosk does with the wire form: the root's signature, the full set
    received = topics.decode("keys", wire)
    assert keyset.verify_key_set(received, root, Keyring(keys[:1])) == body
    assert keyset.parse_key_set(body, root).ids() == sorted(kids)
    # the same body signed by a signing key, under either domain, is refused
    other_hex, reason = v.one("refuse_signed_by").split()
    other = bytes.fromhex(other_hex)
    other_kid = signing.key_id(raw_public(other))
    forged = [signing.sign_envelope(other, other_kid, body), keyset.sign_key_set(other, body)]
    for env in forged:
        with pytest.raises(TrustError) as e:
            keyset.verify_key_set(env, root, Keyring(keys))
        assert e.value.reason is TrustReason(reason)


@check("envelope-ack")
def _envelope_ack(v: Vector) -> None:
    _envelope_vector(v, "ack")
    private = bytes.fromhex(v.one("private_key_hex"))
    body = json.loads(v.one("body"))
    pairs = [(str(e), int(s)) for e, s in body["records"]]
    env = acks.sign_ack(private, v.one("kid"), body["kiosk_id"], pairs, body["issued_at"])
    assert topics.encode(env) == v.one("wire").encode("utf-8")
    # what the kiosk does with it: signature, name, kiosk, pairs, freshness
    wire = topics.decode("ack", v.one("wire").encode("utf-8"))
    verifier = acks.AckVerifier.for_key(DEMO_KIOSK, raw_public(private))
    got = verifier.verify(wire)
    assert got.records == pairs and got.issued_at == body["issued_at"]
    with pytest.raises(TrustError) as e:
        acks.AckVerifier.for_key("AH-340100-0002", raw_public(private)).verify(wire)
    assert e.value.reason is TrustReason.WRONG_KIOSK


def _record(body: dict[str, Any], prev_hash: str) -> ledger.SaleRecord:
    h = ledger.record_hash(prev_hash, body)
    return ledger.record_from_dict({**body, "prev_hash": prev_hash, "record_hash": h})


@check("ledger-record")
def _ledger_record(v: Vector) -> None:
    prev_hash = v.one("prev_hash")
    assert prev_hash == GENESIS_HASH
    body = json.loads(v.one("body"))
    hash_input = v.one("hash_input")
    assert hash_input.encode("utf-8") == prev_hash.encode("ascii") + ledger.canonical_json(body)
    want = v.one("record_hash")
    assert hashlib.sha256(hash_input.encode("utf-8")).hexdigest() == want
    assert ledger.record_hash(prev_hash, body) == want
    rec = _record(body, prev_hash)
    assert rec.record_hash == want
    assert ledger.verify_chain([rec]) == []
    wire = ledger.record_to_dict(rec)
    assert {k: x for k, x in wire.items() if k not in ("prev_hash", "record_hash")} == body


@check("ledger-chain")
def _ledger_chain(v: Vector) -> None:
    records: list[ledger.SaleRecord] = []
    prev = GENESIS_HASH
    n = 1
    while v.has(f"body_{n}"):
        body = json.loads(v.one(f"body_{n}"))
        want = v.one(f"record_hash_{n}")
        assert ledger.record_hash(prev, body) == want, f"record {n}"
        records.append(_record(body, prev))
        prev = want
        n += 1
    assert len(records) == 3
    assert ledger.verify_chain(records) == []
    # one changed digit is found, and so is a record left out
    body_2 = json.loads(v.one("body_2"))
    altered = ledger.record_from_dict(
        {
            **body_2,
            "paid_fen": body_2["paid_fen"] - 100,
            "prev_hash": records[1].prev_hash,
            "record_hash": records[1].record_hash,
        }
    )
    kinds = [p.kind for p in ledger.verify_chain([records[0], altered, records[2]])]
    assert kinds == [ProblemKind.ALTERED]
    kinds = [p.kind for p in ledger.verify_chain([records[0], records[2]])]
    assert kinds == [ProblemKind.MISSING_SEQUENCE, ProblemKind.BROKEN_LINK]


@check("ledger-head")
def _ledger_head(v: Vector) -> None:
    point = bytes.fromhex(v.one("public_key_point"))
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    kiosk_id, seq, rh = v.one("kiosk_id"), int(v.one("seq")), v.one("record_hash")
    assert ledger_head.head_bytes(kiosk_id, seq, rh).decode("utf-8") == v.one("signed_bytes")
    record = {"seq": seq, "record_hash": rh, "head_sig": v.one("head_sig")}
    assert ledger_head.verify_head(key, kiosk_id, record)
    tampered = {**record, "seq": int(v.one("tampered_seq"))}
    assert not ledger_head.verify_head(key, kiosk_id, tampered)
    assert not ledger_head.verify_head(key, kiosk_id + "X", record)
    assert not ledger_head.verify_head(
        key, kiosk_id, {**record, "head_sig": record["head_sig"] + "="}
    )


# --- the tests -------------------------------------------------------------------------------


def test_the_guide_has_vectors_and_every_block_parses() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    openers = [ln for ln in text.splitlines() if ln.startswith("```vector")]
    assert len(openers) == len(VECTORS), "a ```vector block that is not ```vector name=<name>"
    assert len(VECTORS) >= 15


def test_every_vector_has_a_check_and_every_check_a_vector() -> None:
    assert sorted(set(VECTORS) - set(CHECKS)) == [], "vectors in the guide without a check"
    assert sorted(set(CHECKS) - set(VECTORS)) == [], "checks whose vector left the guide"


@pytest.mark.parametrize("name", sorted(set(VECTORS) | set(CHECKS)))
def test_vector(name: str) -> None:
    assert name in VECTORS, f"no vector {name!r} in {GUIDE.name}"
    assert name in CHECKS, f"vector {name!r} in {GUIDE.name} has no check"
    vector = parse_guide()[name]
    CHECKS[name](vector)
    assert vector.unread() == [], f"lines of vector {name!r} that no check reads"


def test_the_guide_is_linked_from_the_readme_and_the_contract() -> None:
    assert "(docs/province-guide.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/province-guide.md" in (ROOT / "docs" / "mqtt-api.yaml").read_text(encoding="utf-8")
