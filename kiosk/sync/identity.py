"""Device identity cryptography shared by kiosk-provision and the province CA (simulated).

Owns: the device key (EC P-256, TLS client-certificate friendly), CSRs with CN = kiosk id,
certificate/key fingerprints for people, the sealing of the payment secret to the device key
(ECDH P-256 + HKDF-SHA256 + AES-256-GCM, so the secret never crosses the broker in clear), and
the signature a registered kiosk puts on a renewal request. Pure functions over bytes: never
reads or writes files, never prints key material. It lives in kiosk/sync (it is part of the
registration exchange on the wire) so that provisioning/ and kiosk/sim both import it from the
kiosk package and kiosk never imports provisioning (contract in pyproject.toml).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

__all__ = [
    "SEAL_ALG",
    "CryptoError",
    "canonical",
    "cert_fingerprint",
    "csr_pem",
    "generate_device_key",
    "load_cert",
    "load_private_key",
    "private_key_pem",
    "public_key_fingerprint",
    "seal",
    "sign_request",
    "unseal",
    "verify_request",
]

SEAL_ALG = "ECDH-P256+HKDF-SHA256+AES256GCM"
_INFO = b"kiosk-register-v1 payment secret\n"


class CryptoError(Exception):
    """Bad key, certificate, CSR, seal or signature."""


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _unb64(s: object) -> bytes:
    if not isinstance(s, str):
        raise CryptoError("expected base64 text")
    try:
        return base64.b64decode(s, validate=True)
    except ValueError as e:
        raise CryptoError(f"bad base64: {e}") from None


def generate_device_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise CryptoError(f"not a PEM private key: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CryptoError("the device key must be an EC P-256 key")
    return key


def csr_pem(key: ec.EllipticCurvePrivateKey, kiosk_id: str) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, kiosk_id),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "kiosk"),
                ]
            )
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def load_cert(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as e:
        raise CryptoError(f"not a PEM certificate: {e}") from None


def _colon_hex(digest: bytes) -> str:
    return ":".join(f"{b:02X}" for b in digest)


def cert_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 over the DER certificate, as `openssl x509 -fingerprint -sha256` shows it."""
    return _colon_hex(cert.fingerprint(hashes.SHA256()))


def public_key_fingerprint(der_spki: bytes) -> str:
    """SHA-256 over a SubjectPublicKeyInfo (DER)."""
    return _colon_hex(hashlib.sha256(der_spki).digest())


def cert_cn(cert: x509.Certificate | x509.CertificateSigningRequest) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def not_after(cert: x509.Certificate) -> dt.datetime:
    return cert.not_valid_after_utc


# --- sealing the payment secret to the device key -------------------------------------------


def _kdf(shared: bytes, kiosk_id: str) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=None, info=_INFO + kiosk_id.encode()).derive(shared)


def seal(secret: bytes, recipient: ec.EllipticCurvePublicKey, kiosk_id: str) -> dict[str, str]:
    eph = ec.generate_private_key(ec.SECP256R1())
    key = _kdf(eph.exchange(ec.ECDH(), recipient), kiosk_id)
    nonce = os.urandom(12)
    ct = AESGCM(key).encrypt(nonce, secret, kiosk_id.encode())
    epk = eph.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return {"alg": SEAL_ALG, "epk": _b64(epk), "nonce": _b64(nonce), "ct": _b64(ct)}


def unseal(sealed: Mapping[str, Any], key: ec.EllipticCurvePrivateKey, kiosk_id: str) -> bytes:
    if not isinstance(sealed, Mapping) or sealed.get("alg") != SEAL_ALG:
        raise CryptoError(f"payment secret: unknown sealing (want {SEAL_ALG})")
    try:
        epk = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _unb64(sealed["epk"]))
        k = _kdf(key.exchange(ec.ECDH(), epk), kiosk_id)
        return AESGCM(k).decrypt(_unb64(sealed["nonce"]), _unb64(sealed["ct"]), kiosk_id.encode())
    except CryptoError:
        raise
    except Exception as e:  # InvalidTag, ValueError, KeyError
        raise CryptoError(f"payment secret cannot be opened: {type(e).__name__}") from None


# --- signed renewal requests ----------------------------------------------------------------


def canonical(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_request(body: Mapping[str, Any], key: ec.EllipticCurvePrivateKey) -> str:
    """Signature over the canonical JSON of `body` without its "sig" field."""
    unsigned = {k: v for k, v in body.items() if k != "sig"}
    return _b64(key.sign(canonical(unsigned), ec.ECDSA(hashes.SHA256())))


def verify_request(body: Mapping[str, Any], public: ec.EllipticCurvePublicKey) -> None:
    unsigned = {k: v for k, v in body.items() if k != "sig"}
    try:
        public.verify(_unb64(body.get("sig")), canonical(unsigned), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise CryptoError("renewal signature does not verify") from None
