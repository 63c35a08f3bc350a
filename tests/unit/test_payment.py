"""Unit tests for kiosk.core.payment: order ids, pay URL + QR size, confirmations, offline code."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import qrcode
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from hypothesis import given
from hypothesis import strategies as st

from kiosk.core.payment import (
    ORDER_SEQ_MAX,
    ConfirmationRejected,
    Payment,
    PaymentConfirmation,
    PaymentMethod,
    PaymentStatus,
    PaymentStatusReply,
    RejectReason,
    confirmation_from_dict,
    confirmation_to_dict,
    make_order_id,
    offline_code,
    offline_code_matches,
    parse_order_id,
    parse_pay_url,
    pay_url,
    sign_confirmation,
    verify_confirmation,
    verify_status_reply,
)

DEMO_SECRET = (
    Path(__file__).resolve().parents[2] / "kiosk" / "data" / "demo-device-secret"
).read_bytes()
KIOSK = "AH-340100-0001"
NOW = 1_790_000_000.0

_key = Ed25519PrivateKey.generate()
PRIV = _key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
PUB = _key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


# --- order ids ------------------------------------------------------------------------------


def test_order_id_format() -> None:
    assert make_order_id(KIOSK, 1) == "AH-340100-0001-00001"
    assert make_order_id(KIOSK, 42) == "AH-340100-0001-0001A"
    assert make_order_id(KIOSK, ORDER_SEQ_MAX) == "AH-340100-0001-FZZZZ"
    with pytest.raises(ValueError):
        make_order_id(KIOSK, 0)
    with pytest.raises(ValueError):
        make_order_id("bad kiosk", 1)
    for bad in ("AH-1-0000I", "AH-1-000", "nodash", "AH-1-00000"):
        with pytest.raises(ValueError):
            parse_order_id(bad)


@given(st.integers(1, ORDER_SEQ_MAX))
def test_order_id_roundtrip(seq: int) -> None:
    assert parse_order_id(make_order_id(KIOSK, seq)) == (KIOSK, seq)


def test_order_ids_differ_across_kiosks() -> None:
    assert make_order_id("AH-340100-0001", 5) != make_order_id("AH-340100-0002", 5)


# --- pay URL --------------------------------------------------------------------------------

BASE = "http://127.0.0.1:8780/pay"


def demo_url(amount: int = 12_345, seq: int = 0xFFFFF) -> str:
    return pay_url(BASE, KIOSK, make_order_id(KIOSK, seq), amount, NOW + 120, DEMO_SECRET)


def test_pay_url_shape_and_signature_verifies() -> None:
    url = demo_url()
    assert url.startswith(BASE + "?o=AH-340100-0001-")
    assert len(url) < 120, len(url)
    params = parse_pay_url(url, {KIOSK: DEMO_SECRET})
    assert params is not None
    assert (params.kiosk_id, params.amount_fen, params.expires_at) == (
        KIOSK,
        12_345,
        int(NOW) + 120,
    )


@pytest.mark.parametrize(
    "tamper",
    [
        lambda u: u.replace("a=12345", "a=1"),
        lambda u: u.replace(f"e={int(NOW) + 120}", f"e={int(NOW) + 9999}"),
        lambda u: u.replace("-0001-", "-0002-"),
        lambda u: u[:-1] + ("A" if u[-1] != "A" else "B"),
        lambda u: u.split("&s=")[0],
    ],
)
def test_tampered_url_is_rejected(tamper: object) -> None:
    assert callable(tamper)
    assert (
        parse_pay_url(tamper(demo_url()), {KIOSK: DEMO_SECRET, "AH-340100-0002": DEMO_SECRET})
        is None
    )


def test_url_signed_with_another_secret_is_rejected() -> None:
    assert parse_pay_url(demo_url(), {KIOSK: b"another secret"}) is None


def test_qr_of_pay_url_is_small() -> None:
    """Version <= 6 at error correction M: modules big enough to scan from 40 cm."""
    url = demo_url(amount=99_999_99, seq=ORDER_SEQ_MAX)
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    qr.add_data(url)
    qr.make(fit=True)
    assert qr.version <= 6, (qr.version, len(url), url)


def test_pay_url_refuses_foreign_order() -> None:
    with pytest.raises(ValueError):
        pay_url(BASE, KIOSK, make_order_id("AH-340100-0002", 1), 100, NOW, DEMO_SECRET)


# --- offline code ---------------------------------------------------------------------------


def test_offline_code_is_8_digits_and_deterministic() -> None:
    oid = make_order_id(KIOSK, 7)
    code = offline_code(DEMO_SECRET, oid, 3800)
    assert len(code) == 8 and code.isdigit()
    assert code == offline_code(DEMO_SECRET, oid, 3800)
    assert code != offline_code(DEMO_SECRET, oid, 3801)
    assert code != offline_code(DEMO_SECRET, make_order_id(KIOSK, 8), 3800)
    assert code != offline_code(b"other", oid, 3800)


def test_offline_code_known_answer() -> None:
    """Pins the derivation so the province implementation can be checked against it."""
    assert offline_code(b"12345678901234567890", "AH-340100-0001-00001", 3800) == offline_code(
        b"12345678901234567890", "AH-340100-0001-00001", 3800
    )
    import hashlib
    import hmac

    mac = hmac.new(
        b"12345678901234567890", b"kiosk-offline-code-v1|AH-340100-0001-00001|3800", hashlib.sha256
    ).digest()
    off = mac[-1] & 0x0F
    want = (int.from_bytes(mac[off : off + 4], "big") & 0x7FFFFFFF) % 10**8
    assert offline_code(b"12345678901234567890", "AH-340100-0001-00001", 3800) == f"{want:08d}"


def test_offline_code_matching() -> None:
    oid = make_order_id(KIOSK, 7)
    code = offline_code(DEMO_SECRET, oid, 3800)
    assert offline_code_matches(DEMO_SECRET, oid, 3800, code)
    assert offline_code_matches(DEMO_SECRET, oid, 3800, f"{code[:4]} {code[4:]}")
    assert not offline_code_matches(DEMO_SECRET, oid, 3800, code[:7])
    assert not offline_code_matches(DEMO_SECRET, oid, 3800, "")
    assert not offline_code_matches(DEMO_SECRET, oid, 3800, "１２３４５６７８")


def test_offline_codes_spread_over_the_space() -> None:
    codes = {offline_code(DEMO_SECRET, make_order_id(KIOSK, n), 100) for n in range(1, 2001)}
    assert len(codes) >= 1995  # birthday bound for 2000 draws in 10^8 is ~0.02 collisions


# --- confirmations --------------------------------------------------------------------------

ORDER = make_order_id(KIOSK, 9)


def confirmation(**kw: object) -> PaymentConfirmation:
    c = PaymentConfirmation(
        kiosk_id=KIOSK,
        order_id=ORDER,
        amount_fen=7600,
        method="wechat",
        provider_ref="4200001234202009140001",
        paid_at=int(NOW) - 5,
        event_id="evt-1",
    )
    return sign_confirmation(PRIV, replace(c, **kw))  # type: ignore[arg-type]


def verify(c: PaymentConfirmation, now: float = NOW) -> Payment | ConfirmationRejected:
    return verify_confirmation(
        c, province_public_key=PUB, kiosk_id=KIOSK, order_amounts={ORDER: 7600}, now=now
    )


def test_good_confirmation_gives_a_payment() -> None:
    p = verify(confirmation())
    assert p == Payment(PaymentMethod.WECHAT, "4200001234202009140001", 7600, NOW)


def rejected(result: object) -> RejectReason:
    assert isinstance(result, ConfirmationRejected), result
    return result.reason


def test_rejections() -> None:
    good = confirmation()
    assert rejected(verify(replace(good, amount_fen=7601))) is RejectReason.BAD_SIGNATURE
    assert rejected(verify(replace(good, signature=bytes(64)))) is RejectReason.BAD_SIGNATURE
    other = Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    assert rejected(verify(sign_confirmation(other, good))) is RejectReason.BAD_SIGNATURE
    assert rejected(verify(confirmation(kiosk_id="AH-340100-0002"))) is RejectReason.WRONG_KIOSK
    assert (
        rejected(verify(confirmation(order_id=make_order_id(KIOSK, 10))))
        is RejectReason.UNKNOWN_ORDER
    )
    assert rejected(verify(confirmation(amount_fen=7500))) is RejectReason.WRONG_AMOUNT
    assert rejected(verify(confirmation(paid_at=int(NOW) - 3 * 86400))) is RejectReason.STALE
    assert rejected(verify(confirmation(paid_at=int(NOW) + 3600))) is RejectReason.STALE
    assert rejected(verify(confirmation(method="offline-code"))) is RejectReason.MALFORMED
    assert rejected(verify(confirmation(provider_ref=""))) is RejectReason.MALFORMED


def test_clock_skew_is_tolerated() -> None:
    assert isinstance(verify(confirmation(paid_at=int(NOW) + 200)), Payment)
    assert isinstance(verify(confirmation(paid_at=int(NOW) - 86400)), Payment)


def test_wire_roundtrip_and_malformed() -> None:
    c = confirmation()
    d = confirmation_to_dict(c)
    assert confirmation_from_dict(d) == c
    assert isinstance(verify(confirmation_from_dict(d)), Payment)  # type: ignore[arg-type]
    bads: tuple[object, ...] = (
        None,
        [],
        {**d, "amount_fen": "7600"},
        {**d, "amount_fen": 7600.0},
        {**d, "paid_at": True},
        {k: v for k, v in d.items() if k != "order_id"},
        {**d, "extra": 1},
        {**d, "signature": "!!!"},
    )
    for bad in bads:
        assert rejected(confirmation_from_dict(bad)) is RejectReason.MALFORMED


def test_status_reply() -> None:
    kw = dict(province_public_key=PUB, kiosk_id=KIOSK, order_amounts={ORDER: 7600}, now=NOW)
    assert verify_status_reply(PaymentStatusReply(ORDER, PaymentStatus.NOT_PAID), **kw) is None  # type: ignore[arg-type]
    paid = PaymentStatusReply(ORDER, PaymentStatus.PAID, confirmation())
    assert isinstance(verify_status_reply(paid, **kw), Payment)  # type: ignore[arg-type]
    bare = PaymentStatusReply(ORDER, PaymentStatus.PAID)
    assert rejected(verify_status_reply(bare, **kw)) is RejectReason.MALFORMED  # type: ignore[arg-type]


def test_a_payment_made_before_the_order_existed_is_refused() -> None:
    """An order id of an earlier store life paid long ago cannot pay a new order (store
    integrity): the confirmation's paid_at must not lie before the order's creation."""
    old = confirmation(paid_at=int(NOW) - 3600)
    result = verify_confirmation(
        old,
        province_public_key=PUB,
        kiosk_id=KIOSK,
        order_amounts={ORDER: 7600},
        now=NOW,
        order_created_at=NOW - 60,
    )
    assert rejected(result) is RejectReason.BEFORE_ORDER
    fresh = verify_confirmation(
        confirmation(paid_at=int(NOW) - 100),  # within the skew of the creation time
        province_public_key=PUB,
        kiosk_id=KIOSK,
        order_amounts={ORDER: 7600},
        now=NOW,
        order_created_at=NOW - 60,
    )
    assert isinstance(fresh, Payment)


def test_order_ids_carry_the_store_epoch() -> None:
    from kiosk.core.payment import is_store_epoch, order_epoch, store_epoch_from_int

    oid = make_order_id(KIOSK, 42, "7K2Q")
    assert oid == "AH-340100-0001-7K2Q0001A"
    assert parse_order_id(oid) == (KIOSK, 42) and order_epoch(oid) == "7K2Q"
    assert order_epoch(make_order_id(KIOSK, 42)) == ""  # ids from before store epochs
    assert make_order_id(KIOSK, 42, "7K2Q") != make_order_id(KIOSK, 42, "7K2R")
    assert store_epoch_from_int(0) == "0000" and store_epoch_from_int((1 << 20) - 1) == "ZZZZ"
    assert is_store_epoch("7K2Q") and not is_store_epoch("7K2") and not is_store_epoch("7KIQ")
    for bad in ("AH-340100-0001-7K2Q0001", "AH-340100-0001-7KIQ0001A", "-7K2Q0001A"):
        with pytest.raises(ValueError):
            parse_order_id(bad)
    with pytest.raises(ValueError):
        make_order_id(KIOSK, 1, "bad")
