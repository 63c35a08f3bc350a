"""Payment codes: order ids, the signed pay URL, province confirmations, the offline code.

Owns: every byte-level rule about payments (canonical strings, HMAC and Ed25519 checks, the
offline-code derivation) so the kiosk and the province simulator compute exactly the same thing.
Pure: secrets and keys come in as bytes, time comes in as `now`; nothing here reads a clock,
a file or the network. The device secret is the secret file's bytes exactly as stored (trailing
newline included, docs/payments.md); the shells read it (kiosk.app.load_device_secret for the
kiosk, kiosk.sim.province.load_device_secret for the simulator). Never compares secrets or codes
with `==` (constant time only).

See docs/payments.md for the scheme and its reasoning.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from urllib.parse import parse_qsl, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

__all__ = [
    "CONFIRMATION_DOMAIN",
    "OFFLINE_CODE_DIGITS",
    "ORDER_SEQ_MAX",
    "STORE_EPOCH_DIGITS",
    "ConfirmationRejected",
    "PayUrlParams",
    "Payment",
    "PaymentConfirmation",
    "PaymentMethod",
    "PaymentStatus",
    "PaymentStatusQuery",
    "PaymentStatusReply",
    "RejectReason",
    "confirmation_from_dict",
    "confirmation_signing_bytes",
    "confirmation_to_dict",
    "is_store_epoch",
    "make_order_id",
    "offline_code",
    "offline_code_matches",
    "order_epoch",
    "parse_order_id",
    "parse_pay_url",
    "pay_url",
    "sign_confirmation",
    "store_epoch_from_int",
    "url_signature",
    "verify_confirmation",
    "verify_status_reply",
]

# --- payments -------------------------------------------------------------------------------


class PaymentMethod(StrEnum):
    WECHAT = "wechat"
    ALIPAY = "alipay"
    UNIONPAY = "unionpay"
    OFFLINE_CODE = "offline-code"  # verified on the kiosk from the 8-digit code; synced later


@dataclass(frozen=True, slots=True)
class Payment:
    """A verified payment for one order. Built only by `verify_confirmation` (province
    confirmation) or by the sale machine after a correct offline code."""

    method: PaymentMethod
    provider_ref: str  # WeChat/Alipay transaction id; "" for an offline code not yet synced
    amount_fen: int
    confirmed_at: float  # kiosk wall-clock time the payment was accepted


# --- order ids ------------------------------------------------------------------------------

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_INDEX = {c: i for i, c in enumerate(_CROCKFORD)}
ORDER_SEQ_DIGITS = 5  # 5 base32 digits = 25 bits
ORDER_SEQ_MAX = (1 << 24) - 1  # the tx scheme in core.sale keeps 24 bits of the sequence
_KIOSK_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,31}$")


STORE_EPOCH_DIGITS = 4  # 4 base32 digits = 20 bits, random per store (docs/sales.md)


def is_store_epoch(text: str) -> bool:
    """Four Crockford base32 digits (`0-9A-Z` without I, L, O, U)."""
    return len(text) == STORE_EPOCH_DIGITS and all(c in _CROCKFORD_INDEX for c in text)


def _base32(n: int, digits: int) -> str:
    out = []
    for _ in range(digits):
        n, r = divmod(n, 32)
        out.append(_CROCKFORD[r])
    return "".join(reversed(out))


def store_epoch_from_int(n: int) -> str:
    """20 random bits (chosen by the store at creation) -> the 4-digit store epoch."""
    if not 0 <= n < 1 << (5 * STORE_EPOCH_DIGITS):
        raise ValueError(f"store epoch number out of range: {n}")
    return _base32(n, STORE_EPOCH_DIGITS)


def make_order_id(kiosk_id: str, order_seq: int, epoch: str = "") -> str:
    """`("AH-340100-0001", 42, "7K2Q")` -> `"AH-340100-0001-7K2Q0001A"`.

    The kiosk id makes it unique across kiosks; `epoch` (random per store, see docs/sales.md)
    makes it unique across the stores a kiosk has had, so a store rebuilt after corruption
    never repeats an id the province or the board has seen; `order_seq` is a per-store counter
    the store persists in the same transaction as the order. Without an epoch (records written
    before store epochs existed) the last part is the 5 sequence digits alone.
    """
    if not _KIOSK_ID_RE.match(kiosk_id):
        raise ValueError(f"kiosk id must be 1-32 letters, digits or '-', got {kiosk_id!r}")
    if not isinstance(order_seq, int) or not 1 <= order_seq <= ORDER_SEQ_MAX:
        raise ValueError(f"order_seq must be 1..{ORDER_SEQ_MAX}, got {order_seq!r}")
    if epoch and not is_store_epoch(epoch):
        raise ValueError(f"store epoch must be {STORE_EPOCH_DIGITS} base32 digits, got {epoch!r}")
    return f"{kiosk_id}-{epoch}{_base32(order_seq, ORDER_SEQ_DIGITS)}"


def _split_order_id(order_id: str) -> tuple[str, str, int]:
    kiosk_id, sep, tail = order_id.rpartition("-")
    n_epoch = len(tail) - ORDER_SEQ_DIGITS
    if not sep or n_epoch not in (0, STORE_EPOCH_DIGITS) or not _KIOSK_ID_RE.match(kiosk_id):
        raise ValueError(f"not an order id: {order_id!r}")
    seq = 0
    for ch in tail:
        if ch not in _CROCKFORD_INDEX:
            raise ValueError(f"not an order id: {order_id!r}")
    for ch in tail[n_epoch:]:
        seq = seq * 32 + _CROCKFORD_INDEX[ch]
    if not 1 <= seq <= ORDER_SEQ_MAX:
        raise ValueError(f"order id sequence out of range: {order_id!r}")
    return kiosk_id, tail[:n_epoch], seq


def parse_order_id(order_id: str) -> tuple[str, int]:
    """Inverse of `make_order_id` -> (kiosk id, order seq); raises ValueError on anything
    else."""
    kiosk_id, _epoch, seq = _split_order_id(order_id)
    return kiosk_id, seq


def order_epoch(order_id: str) -> str:
    """The store epoch an order id was made in ("" for an id from before store epochs)."""
    return _split_order_id(order_id)[1]


# --- the pay URL ----------------------------------------------------------------------------

URL_DOMAIN = "kiosk-pay-url-v1"
URL_SIG_BYTES = 12  # 96 bits -> 16 base64url characters


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL_RE = re.compile(r"^[A-Za-z0-9_-]*$")


def _b64url_decode(text: str) -> bytes:
    """Strict base64url without padding: only `A-Z a-z 0-9 - _`, no `=`, no `+` or `/`, a length
    that is not 1 mod 4, and zero unused trailing bits (one spelling per byte string); anything
    else is an error (binascii.Error)."""
    if not _B64URL_RE.match(text) or len(text) % 4 == 1:
        raise binascii.Error(f"not unpadded base64url: {text!r}")
    data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    if _b64url(data) != text:
        raise binascii.Error(f"non-canonical base64url (unused bits set): {text!r}")
    return data


def _url_canonical(kiosk_id: str, order_id: str, amount_fen: int, expires_at: int) -> bytes:
    return f"{URL_DOMAIN}|{kiosk_id}|{order_id}|{amount_fen}|{expires_at}".encode("ascii")


def url_signature(
    secret: bytes, kiosk_id: str, order_id: str, amount_fen: int, expires_at: float
) -> str:
    """Truncated HMAC-SHA256 (96 bits, base64url) over the canonical pay-URL string."""
    mac = hmac.new(
        secret, _url_canonical(kiosk_id, order_id, amount_fen, int(expires_at)), hashlib.sha256
    )
    return _b64url(mac.digest()[:URL_SIG_BYTES])


def pay_url(
    base: str, kiosk_id: str, order_id: str, amount_fen: int, expires_at: float, secret: bytes
) -> str:
    """`{base}?o=<order id>&a=<fen>&e=<unix s>&s=<sig>`; the kiosk id is part of the order id."""
    if parse_order_id(order_id)[0] != kiosk_id:
        raise ValueError(f"order {order_id!r} does not belong to kiosk {kiosk_id!r}")
    if not isinstance(amount_fen, int) or isinstance(amount_fen, bool) or amount_fen <= 0:
        raise ValueError(f"amount_fen must be a positive int, got {amount_fen!r}")
    exp = int(expires_at)
    sig = url_signature(secret, kiosk_id, order_id, amount_fen, exp)
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}o={order_id}&a={amount_fen}&e={exp}&s={sig}"


@dataclass(frozen=True, slots=True)
class PayUrlParams:
    kiosk_id: str
    order_id: str
    amount_fen: int
    expires_at: int


_URL_PARAMS = ("o", "a", "e", "s")
_DECIMAL_RE = re.compile(r"^[1-9][0-9]*\Z", re.ASCII)


def parse_pay_url(url: str, secret_for_kiosk: Mapping[str, bytes]) -> PayUrlParams | None:
    """What the province does with a scanned URL: parse, look up the device secret, check the
    signature (constant time). Returns None for anything not signed by that kiosk."""
    try:
        pairs = parse_qsl(urlsplit(url).query, strict_parsing=True, separator="&")
        names = [n for n, _ in pairs if n in _URL_PARAMS]
        if sorted(names) != sorted(_URL_PARAMS):  # each exactly once, also a repeated same value
            return None
        q = {n: v for n, v in pairs if n in _URL_PARAMS}
        order_id, sig = q["o"], q["s"]
        if not (_DECIMAL_RE.match(q["a"]) and _DECIMAL_RE.match(q["e"])):
            return None  # one spelling only: no sign, space, "_", leading zero or other digits
        amount, exp = int(q["a"]), int(q["e"])
        kiosk_id, _ = parse_order_id(order_id)
    except (KeyError, ValueError):
        return None
    secret = secret_for_kiosk.get(kiosk_id)
    if secret is None:
        return None
    good = url_signature(secret, kiosk_id, order_id, amount, exp)
    if not hmac.compare_digest(good.encode("ascii"), sig.encode("ascii", "replace")):
        return None
    return PayUrlParams(kiosk_id, order_id, amount, exp)


# --- offline confirmation code --------------------------------------------------------------

OFFLINE_DOMAIN = "kiosk-offline-code-v1"
OFFLINE_CODE_DIGITS = 8


def offline_code(secret: bytes, order_id: str, amount_fen: int) -> str:
    """8 decimal digits: HOTP dynamic truncation (RFC 4226 §5.3) of HMAC-SHA256 over
    `kiosk-offline-code-v1|<order id>|<amount fen>`."""
    msg = f"{OFFLINE_DOMAIN}|{order_id}|{amount_fen}".encode("ascii")
    mac = hmac.new(secret, msg, hashlib.sha256).digest()
    offset = mac[-1] & 0x0F
    value = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFF_FFFF
    return f"{value % 10**OFFLINE_CODE_DIGITS:0{OFFLINE_CODE_DIGITS}d}"


def offline_code_matches(secret: bytes, order_id: str, amount_fen: int, entered: str) -> bool:
    """Constant-time check of a typed code; spaces are ignored, anything else must be digits."""
    typed = "".join(entered.split())
    good = offline_code(secret, order_id, amount_fen)
    # compare_digest on bytes of possibly different length is still safe (returns False)
    return hmac.compare_digest(good.encode("ascii"), typed.encode("utf-8"))


# --- province confirmations -----------------------------------------------------------------

CONFIRMATION_DOMAIN = b"kiosk-payment-confirmation-v1\n"


class RejectReason(StrEnum):
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    WRONG_KIOSK = "wrong_kiosk"
    UNKNOWN_ORDER = "unknown_order"
    WRONG_AMOUNT = "wrong_amount"
    STALE = "stale"
    BEFORE_ORDER = "paid_before_order"  # paid before this order existed: another order's payment


@dataclass(frozen=True, slots=True)
class ConfirmationRejected:
    reason: RejectReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PaymentConfirmation:
    """What the province publishes when a provider says an order was paid (Ed25519 signed)."""

    kiosk_id: str
    order_id: str
    amount_fen: int
    method: str  # a PaymentMethod value other than offline-code
    provider_ref: str
    paid_at: int  # unix seconds, province clock
    event_id: str  # unique per confirmation message (the provider retries; we dedupe by ref)
    signature: bytes = b""


def _confirmation_fields(c: PaymentConfirmation) -> dict[str, str | int]:
    return {
        "kiosk_id": c.kiosk_id,
        "order_id": c.order_id,
        "amount_fen": c.amount_fen,
        "method": c.method,
        "provider_ref": c.provider_ref,
        "paid_at": c.paid_at,
        "event_id": c.event_id,
    }


def confirmation_signing_bytes(c: PaymentConfirmation) -> bytes:
    """Domain string + canonical JSON (sorted keys, no spaces, UTF-8) of all fields but the
    signature."""
    body = json.dumps(
        _confirmation_fields(c), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return CONFIRMATION_DOMAIN + body.encode("utf-8")


def sign_confirmation(private_key: bytes, c: PaymentConfirmation) -> PaymentConfirmation:
    """Province side (and the province simulator): return `c` with its Ed25519 signature."""
    key = Ed25519PrivateKey.from_private_bytes(private_key)
    return replace(c, signature=key.sign(confirmation_signing_bytes(c)))


def confirmation_to_dict(c: PaymentConfirmation) -> dict[str, str | int]:
    d = _confirmation_fields(c)
    d["signature"] = _b64url(c.signature)
    return d


def confirmation_from_dict(d: object) -> PaymentConfirmation | ConfirmationRejected:
    """Parse the wire form; every field is required and strictly typed."""
    if not isinstance(d, Mapping):
        return ConfirmationRejected(RejectReason.MALFORMED, "not an object")
    str_fields = ("kiosk_id", "order_id", "method", "provider_ref", "event_id", "signature")
    int_fields = ("amount_fen", "paid_at")
    for name in str_fields:
        if not isinstance(d.get(name), str):
            return ConfirmationRejected(RejectReason.MALFORMED, f"{name} must be a string")
    for name in int_fields:
        v = d.get(name)
        if not isinstance(v, int) or isinstance(v, bool):
            return ConfirmationRejected(RejectReason.MALFORMED, f"{name} must be an integer")
    extra = set(d) - set(str_fields) - set(int_fields)
    if extra:
        return ConfirmationRejected(RejectReason.MALFORMED, f"unknown fields {sorted(extra)}")
    try:
        sig = _b64url_decode(d["signature"])
    except ValueError:
        return ConfirmationRejected(RejectReason.MALFORMED, "signature is not base64url")
    return PaymentConfirmation(
        kiosk_id=d["kiosk_id"],
        order_id=d["order_id"],
        amount_fen=d["amount_fen"],
        method=d["method"],
        provider_ref=d["provider_ref"],
        paid_at=d["paid_at"],
        event_id=d["event_id"],
        signature=sig,
    )


_ONLINE_METHODS = {m.value for m in PaymentMethod if m is not PaymentMethod.OFFLINE_CODE}


def verify_confirmation(
    c: PaymentConfirmation,
    *,
    province_public_key: bytes,
    kiosk_id: str,
    order_amounts: Mapping[str, int],
    now: float,
    max_age_s: float = 48 * 3600,
    max_skew_s: float = 300,
    order_created_at: float | None = None,
) -> Payment | ConfirmationRejected:
    """Check a confirmation: shape, Ed25519 signature, kiosk, order, exact amount, freshness.

    `order_amounts` maps every order id this kiosk still knows (open, closed or cancelled: a
    payment for a cancelled order must still become a refund record) to its amount in fen.
    Freshness: `paid_at` no more than `max_skew_s` in the future and `max_age_s` in the past, so
    clocks a few minutes apart and a kiosk offline for a day still agree, while an old captured
    message cannot be replayed forever. Duplicates inside the window are the sale machine's job
    (it ignores a provider reference it already has).
    """
    if (
        not c.provider_ref
        or len(c.provider_ref) > 64
        or not c.event_id
        or c.method not in _ONLINE_METHODS
        or not isinstance(c.amount_fen, int)
        or c.amount_fen <= 0
        or len(c.signature) != 64
    ):
        return ConfirmationRejected(RejectReason.MALFORMED, "field out of range")
    try:
        Ed25519PublicKey.from_public_bytes(province_public_key).verify(
            c.signature, confirmation_signing_bytes(c)
        )
    except (InvalidSignature, ValueError):
        return ConfirmationRejected(RejectReason.BAD_SIGNATURE)
    if c.kiosk_id != kiosk_id:
        return ConfirmationRejected(RejectReason.WRONG_KIOSK, c.kiosk_id)
    expected = order_amounts.get(c.order_id)
    if expected is None:
        return ConfirmationRejected(RejectReason.UNKNOWN_ORDER, c.order_id)
    if c.amount_fen != expected:
        return ConfirmationRejected(
            RejectReason.WRONG_AMOUNT, f"paid {c.amount_fen} fen, order is {expected} fen"
        )
    if not math.isfinite(now) or not now - max_age_s <= c.paid_at <= now + max_skew_s:
        return ConfirmationRejected(RejectReason.STALE, f"paid_at {c.paid_at}, now {int(now)}")
    if order_created_at is not None and c.paid_at < order_created_at - max_skew_s:
        return ConfirmationRejected(
            RejectReason.BEFORE_ORDER,
            f"paid_at {c.paid_at}, order created {int(order_created_at)}",
        )
    return Payment(PaymentMethod(c.method), c.provider_ref, c.amount_fen, now)


# --- order status query (when no confirmation arrives) --------------------------------------


class PaymentStatus(StrEnum):
    PAID = "paid"  # reply carries the signed confirmation
    NOT_PAID = "not_paid"  # the provider has no payment (yet)
    CLOSED = "closed"  # the province closed the provider order: no payment will come


@dataclass(frozen=True, slots=True)
class PaymentStatusQuery:
    """Kiosk -> province: 'has order X been paid?' (sent on `QueryPaymentStatus`)."""

    kiosk_id: str
    order_id: str
    asked_at: int


@dataclass(frozen=True, slots=True)
class PaymentStatusReply:
    """Province -> kiosk. A PAID reply is only believed through its signed confirmation."""

    order_id: str
    status: PaymentStatus
    confirmation: PaymentConfirmation | None = None


def verify_status_reply(
    reply: PaymentStatusReply,
    *,
    province_public_key: bytes,
    kiosk_id: str,
    order_amounts: Mapping[str, int],
    now: float,
    max_age_s: float = 48 * 3600,
    max_skew_s: float = 300,
    order_created_at: float | None = None,
) -> Payment | ConfirmationRejected | None:
    """A verified Payment for PAID, None for NOT_PAID / CLOSED, a rejection otherwise."""
    if reply.status is not PaymentStatus.PAID:
        return None
    c = reply.confirmation
    if c is None or c.order_id != reply.order_id:
        return ConfirmationRejected(RejectReason.MALFORMED, "PAID without its confirmation")
    return verify_confirmation(
        c,
        province_public_key=province_public_key,
        kiosk_id=kiosk_id,
        order_amounts=order_amounts,
        now=now,
        max_age_s=max_age_s,
        max_skew_s=max_skew_s,
        order_created_at=order_created_at,
    )
