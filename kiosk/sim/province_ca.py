"""The province's registration authority, simulated: a CA that claims kiosks with one-time tokens.

Owns: a CA key and self-signed CA certificate in its directory (key 0600), a SQLite database of
bootstrap tokens (only their SHA-256 is stored; each claims at most one registration) and of
registered kiosks with their payment secrets, CSR checks (EC P-256, CN = the claimed kiosk id),
certificate issue, and the request/reply payloads of the register topics
(`kiosk/v1/register/<kiosk_id>/request` -> `.../reply`, named in kiosk.sync.topics; see
docs/technician-guide.md and provisioning/register.py). `handle_request` is the whole protocol
step, so the province simulator only subscribes and publishes. Renewal needs no token: the
request is signed with the key of a still-valid certificate this CA issued to the same kiosk.
Never sends the payment secret in clear (sealed to the CSR's key) and never logs a token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import secrets
import sqlite3
import threading
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kiosk.clock import Clock, SystemClock
from kiosk.config import KIOSK_ID_RE
from kiosk.log import log_event
from kiosk.sim.certs import private_key_pem, self_signed_ca
from kiosk.sync.identity import CryptoError, cert_cn, load_cert, seal, verify_request
from kiosk.sync.topics import (
    REGISTER_PREFIX,
    REGISTER_REQUESTS,
    parse_topic,
    register_reply,
    register_request,
)

__all__ = [
    "REGISTER_PREFIX",
    "ProvisioningCA",
    "RegistrationRefused",
    "register_reply_topic",
    "register_request_filter",
    "register_request_topic",
]

log = logging.getLogger("kiosk.sim.province_ca")

CERT_DAYS = 365
TOKEN_TTL_S = 7 * 86400

# Kept for existing callers; the names live in kiosk.sync.topics.
register_request_topic = register_request
register_reply_topic = register_reply
register_request_filter = REGISTER_REQUESTS

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    token_sha256 TEXT PRIMARY KEY,
    kiosk_id     TEXT,              -- NULL: any kiosk may claim it
    expires_at   REAL NOT NULL,
    used_at      REAL,
    used_by      TEXT
);
CREATE TABLE IF NOT EXISTS kiosks (
    kiosk_id       TEXT PRIMARY KEY,
    payment_secret TEXT NOT NULL,   -- hex
    cert_serial    TEXT NOT NULL,
    not_after      REAL NOT NULL,
    registered_at  REAL NOT NULL
);
"""


class RegistrationRefused(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class ProvisioningCA:
    """CA + token book in `directory` (created if needed). Thread-safe."""

    def __init__(
        self,
        directory: Path,
        clock: Clock | None = None,
        *,
        name: str = "Anhui Kiosk Province CA (simulated)",
        cert_days: int = CERT_DAYS,
        ca_key: ec.EllipticCurvePrivateKey | None = None,
        ca_cert: x509.Certificate | None = None,
    ) -> None:
        """`ca_key` + `ca_cert`: sign with an existing CA (e.g. the province simulator's
        `ProvinceCA.key` / `.cert`, whose certificate the broker trusts for client certs);
        otherwise a CA is created in (or loaded from) `directory`."""
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.clock: Clock = clock or SystemClock()
        self.cert_days = cert_days
        self._lock = threading.Lock()
        self.key_path = self.directory / "ca-key.pem"
        self.cert_path = self.directory / "ca-cert.pem"
        if ca_key is not None and ca_cert is not None:
            self.key, self.cert = ca_key, ca_cert
        elif self.key_path.exists() and self.cert_path.exists():
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            self.key = key
            self.cert = load_cert(self.cert_path.read_bytes())
        else:
            self.key, self.cert = self._create_ca(name)
        self._db = sqlite3.connect(
            self.directory / "registrations.db", check_same_thread=False, isolation_level=None
        )
        self._db.executescript(_SCHEMA)

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock.time(), dt.UTC)

    def _create_ca(self, name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        now = self._now()
        key, cert = self_signed_ca(name, now, days=3650)
        pem = private_key_pem(key)
        fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return key, cert

    @property
    def ca_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    # --- tokens ----------------------------------------------------------------------------

    def issue_token(self, kiosk_id: str | None = None, ttl_s: float = TOKEN_TTL_S) -> str:
        """A new one-time bootstrap token (shown once; only its hash is kept): 120 random bits
        as six groups of four Crockford base32 characters (`7K2Q-...`), easy to type and never
        starting with "-" (a token that did was read as an option by `--token TOKEN`)."""
        alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
        n = int.from_bytes(secrets.token_bytes(15), "big")
        chars = "".join(alphabet[(n >> (5 * i)) & 31] for i in range(24))
        token = "-".join(chars[i : i + 4] for i in range(0, 24, 4))
        with self._lock:
            self._db.execute(
                "INSERT INTO tokens (token_sha256, kiosk_id, expires_at) VALUES (?, ?, ?)",
                (_sha(token), kiosk_id, self.clock.time() + ttl_s),
            )
        log_event(log, "register_token_issued", kiosk_id=kiosk_id or "*")
        return token

    def _claim_token(self, token: str, kiosk_id: str) -> None:
        """Mark the token used by `kiosk_id` (atomically), or raise RegistrationRefused."""
        now = self.clock.time()
        cur = self._db.execute(
            "UPDATE tokens SET used_at = ?, used_by = ? WHERE token_sha256 = ? AND used_at IS NULL"
            " AND expires_at > ? AND (kiosk_id IS NULL OR kiosk_id = ?)",
            (now, kiosk_id, _sha(token), now, kiosk_id),
        )
        if cur.rowcount == 1:
            return
        row = self._db.execute(
            "SELECT kiosk_id, expires_at, used_at FROM tokens WHERE token_sha256 = ?",
            (_sha(token),),
        ).fetchone()
        if row is None:
            raise RegistrationRefused("token_unknown", "this bootstrap token is not known")
        if row[2] is not None:
            raise RegistrationRefused("token_used", "this bootstrap token was already used")
        if row[1] <= now:
            raise RegistrationRefused("token_expired", "this bootstrap token has expired")
        raise RegistrationRefused("token_other_kiosk", "this token was issued for another kiosk")

    # --- secrets and certificates ----------------------------------------------------------

    def payment_secret(self, kiosk_id: str) -> bytes | None:
        """The kiosk's payment signing secret, as its device secret file holds it."""
        row = self._db.execute(
            "SELECT payment_secret FROM kiosks WHERE kiosk_id = ?", (kiosk_id,)
        ).fetchone()
        return None if row is None else (row[0] + "\n").encode()

    def registered_secrets(self) -> dict[str, bytes]:
        """Every registered kiosk's payment secret (the province needs them to confirm payments)."""
        with self._lock:
            rows = self._db.execute("SELECT kiosk_id, payment_secret FROM kiosks").fetchall()
        return {kid: (hexs + "\n").encode() for kid, hexs in rows}

    def sign_csr(self, csr: x509.CertificateSigningRequest, kiosk_id: str) -> x509.Certificate:
        now = self._now()
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, kiosk_id)]))
            .issuer_name(self.cert.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=self.cert_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def _check_csr(self, pem: object, kiosk_id: str) -> x509.CertificateSigningRequest:
        if not isinstance(pem, str):
            raise RegistrationRefused("bad_request", "csr must be a PEM string")
        try:
            csr = x509.load_pem_x509_csr(pem.encode())
        except ValueError:
            raise RegistrationRefused("bad_csr", "csr is not a PEM CSR") from None
        if not csr.is_signature_valid:
            raise RegistrationRefused("bad_csr", "csr signature does not verify")
        pub = csr.public_key()
        if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.curve.name != "secp256r1":
            raise RegistrationRefused("bad_csr", "csr key must be EC P-256")
        if cert_cn(csr) != kiosk_id:
            raise RegistrationRefused("bad_csr", f"csr CN {cert_cn(csr)!r} is not {kiosk_id!r}")
        return csr

    def _check_renewal(self, req: dict[str, Any], kiosk_id: str) -> None:
        try:
            cert = load_cert(str(req.get("cert", "")).encode())
        except CryptoError:
            raise RegistrationRefused("bad_request", "renewal needs the current cert") from None
        try:
            pub = self.cert.public_key()
            assert isinstance(pub, ec.EllipticCurvePublicKey)
            cert.verify_directly_issued_by(self.cert)
        except Exception:
            raise RegistrationRefused("not_ours", "the current cert was not issued by us") from None
        now = self._now()
        if not (cert.not_valid_before_utc <= now < cert.not_valid_after_utc):
            raise RegistrationRefused("cert_expired", "the current cert is expired: use a token")
        if cert_cn(cert) != kiosk_id:
            raise RegistrationRefused("not_ours", "the current cert names another kiosk")
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise RegistrationRefused("bad_request", "the current cert has no EC key")
        try:
            verify_request(req, key)
        except CryptoError as e:
            raise RegistrationRefused("bad_signature", str(e)) from None

    def register(self, req: dict[str, Any]) -> dict[str, Any]:
        """Check one request and return the reply body (raises RegistrationRefused)."""
        kiosk_id = req.get("kiosk_id")
        if not isinstance(kiosk_id, str) or not KIOSK_ID_RE.match(kiosk_id):
            raise RegistrationRefused("bad_request", "kiosk_id missing or malformed")
        csr = self._check_csr(req.get("csr"), kiosk_id)
        token = req.get("token")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if isinstance(token, str) and token:
                    self._claim_token(token, kiosk_id)
                    how = "token"
                elif "sig" in req:
                    self._check_renewal(req, kiosk_id)
                    how = "renewal"
                else:
                    raise RegistrationRefused("bad_request", "a token (or a renewal sig) is needed")
                cert = self.sign_csr(csr, kiosk_id)
                row = self._db.execute(
                    "SELECT payment_secret FROM kiosks WHERE kiosk_id = ?", (kiosk_id,)
                ).fetchone()
                secret_hex = row[0] if row else secrets.token_hex(32)
                self._db.execute(
                    "INSERT INTO kiosks (kiosk_id, payment_secret, cert_serial, not_after,"
                    " registered_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (kiosk_id) DO UPDATE SET"
                    " cert_serial = excluded.cert_serial, not_after = excluded.not_after,"
                    " registered_at = excluded.registered_at",
                    (
                        kiosk_id,
                        secret_hex,
                        format(cert.serial_number, "x"),
                        cert.not_valid_after_utc.timestamp(),
                        self.clock.time(),
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        pub = csr.public_key()
        assert isinstance(pub, ec.EllipticCurvePublicKey)
        log_event(log, "kiosk_registered", kiosk_id=kiosk_id, how=how)
        return {
            "v": 1,
            "ok": True,
            "kiosk_id": kiosk_id,
            "nonce": req.get("nonce", ""),
            "certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
            "ca": self.ca_pem.decode(),
            "not_after": int(cert.not_valid_after_utc.timestamp()),
            "payment_secret": seal((secret_hex + "\n").encode(), pub, kiosk_id),
        }

    def handle_request(self, topic: str, payload: bytes) -> tuple[str, bytes] | None:
        """One MQTT message on `kiosk/v1/register/<id>/request` -> (reply topic, payload);
        None when the topic is not a register request (nothing to answer)."""
        parsed = parse_topic(topic)
        if parsed is None or parsed.message_kind != "register_request" or not parsed.kiosk_id:
            return None
        topic_id = parsed.kiosk_id
        nonce: object = ""
        try:
            req = json.loads(payload)
            if not isinstance(req, dict):
                raise RegistrationRefused("bad_request", "payload must be a JSON object")
            nonce = req.get("nonce", "")
            if req.get("kiosk_id") != topic_id:
                raise RegistrationRefused("bad_request", "kiosk_id differs from the topic")
            reply = self.register(req)
        except (ValueError, UnicodeDecodeError):
            reply = {"v": 1, "ok": False, "nonce": "", "error": "bad_request", "detail": "not JSON"}
        except RegistrationRefused as e:
            log_event(
                log, "register_refused", _level=logging.WARNING, kiosk_id=topic_id, code=e.code
            )
            reply = {"v": 1, "ok": False, "nonce": nonce, "error": e.code, "detail": e.detail}
        body = json.dumps(reply, sort_keys=True, separators=(",", ":")).encode()
        return register_reply(topic_id), body

    def close(self) -> None:
        self._db.close()
