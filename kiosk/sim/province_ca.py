"""The province's registration authority, simulated: a CA that claims kiosks with one-time tokens.

Owns: a CA key and self-signed CA certificate in its directory (key 0600), a SQLite database of
bootstrap tokens (only their SHA-256 is stored; each claims at most one registration) and of
registered kiosks with their payment secrets, CSR checks (EC P-256, CN = the claimed kiosk id),
certificate issue, and the request/reply payloads of the register topics
(`kiosk/v1/register/<kiosk_id>/request` -> `.../reply`, named in kiosk.sync.topics; see
docs/technician-guide.md and provisioning/register.py). `handle_request` is the whole protocol
step, so the province simulator only subscribes and publishes. Renewal needs no token: the
request is signed with the key of the kiosk's current certificate (the last one this CA issued
to it, or one with the same key: a retry after a lost reply), never a superseded or revoked one.
Secret lifecycle (docs/payments.md, "Secret rotation"): every registration and renewal issues a
NEW payment secret; after a renewal the previous one stays valid for pay URLs of orders made
before it (`PREVIOUS_SECRET_OVERLAP_S`), after a re-registration with a token it dies at once.
`revoke()` kills the secret, marks every certificate of the kiosk revoked and `crl_pem()` gives
the CRL the broker loads (kiosk/sim/province_revoke.py carries it out).
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
from collections.abc import Sequence
from dataclasses import dataclass
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
    "PREVIOUS_SECRET_OVERLAP_S",
    "REGISTER_PREFIX",
    "KioskSecrets",
    "ProvisioningCA",
    "RegistrationRefused",
    "register_reply_topic",
    "register_request_filter",
    "register_request_topic",
]

log = logging.getLogger("kiosk.sim.province_ca")

CERT_DAYS = 365
TOKEN_TTL_S = 7 * 86400
# After a renewal the previous payment secret still verifies pay URLs that expire at most this
# long after the rotation: an order shown before it (120 s window + 10 extensions of 60 s, plus
# 5 min of clock skew) can still be paid, a kiosk still signing with the old secret afterwards
# cannot (restart the kiosk after a renewal: docs/payments.md, "Secret rotation").
PREVIOUS_SECRET_OVERLAP_S = 720 + 300

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
-- every certificate this CA issued (registration, renewal, sign-csr): the CRL is built from it
CREATE TABLE IF NOT EXISTS certs (
    serial      TEXT PRIMARY KEY,   -- hex
    kiosk_id    TEXT NOT NULL,
    spki_sha256 TEXT NOT NULL,
    not_after   REAL NOT NULL,
    issued_at   REAL NOT NULL,
    revoked_at  REAL
);
-- decommissioned kiosks (`kiosk province-sim revoke`); a later registration with a token
-- brings the id back (a replacement cabinet)
CREATE TABLE IF NOT EXISTS revoked_kiosks (
    kiosk_id    TEXT PRIMARY KEY,
    revoked_at  REAL NOT NULL
);
-- renewal requests answered: a replayed one must not rotate the secret behind the kiosk's back
CREATE TABLE IF NOT EXISTS renewal_nonces (
    kiosk_id    TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    PRIMARY KEY (kiosk_id, nonce)
);
"""
# columns added to `kiosks` after the first release (ALTER TABLE on an older database)
_KIOSK_COLUMNS = {"prev_secret": "TEXT", "rotated_at": "REAL", "cert_spki": "TEXT"}


@dataclass(frozen=True)
class KioskSecrets:
    """What the province holds for one kiosk's payment secret (file bytes, newline included)."""

    current: bytes | None  # None: unknown to the CA, or revoked
    previous: bytes | None  # valid for pay URLs expiring up to rotated_at + the overlap
    rotated_at: float | None
    revoked_at: float | None


class RegistrationRefused(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _spki_sha256(public_key: Any) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


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
        have = {r[1] for r in self._db.execute("PRAGMA table_info(kiosks)")}
        for col, kind in _KIOSK_COLUMNS.items():
            if col not in have:
                self._db.execute(f"ALTER TABLE kiosks ADD COLUMN {col} {kind}")

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
        """The kiosk's current payment signing secret, as its device secret file holds it; None
        when the kiosk is not registered here or is revoked."""
        return self.secrets_of(kiosk_id).current

    def registered_secrets(self) -> dict[str, bytes]:
        """Every registered, not revoked kiosk's current payment secret."""
        with self._lock:
            rows = self._db.execute(
                "SELECT kiosk_id, payment_secret FROM kiosks WHERE kiosk_id NOT IN "
                "(SELECT kiosk_id FROM revoked_kiosks)"
            ).fetchall()
        return {kid: (hexs + "\n").encode() for kid, hexs in rows}

    def secrets_of(self, kiosk_id: str) -> KioskSecrets:
        """Current and previous secret of `kiosk_id`, read from the database each time, so a
        running province sees a rotation or a revocation made by another process at once."""
        with self._lock:
            row = self._db.execute(
                "SELECT payment_secret, prev_secret, rotated_at FROM kiosks WHERE kiosk_id = ?",
                (kiosk_id,),
            ).fetchone()
            rev = self._db.execute(
                "SELECT revoked_at FROM revoked_kiosks WHERE kiosk_id = ?", (kiosk_id,)
            ).fetchone()
        revoked_at = None if rev is None else float(rev[0])
        if row is None or revoked_at is not None:
            return KioskSecrets(None, None, None, revoked_at)
        cur, prev, rotated = row
        return KioskSecrets(
            (cur + "\n").encode(), (prev + "\n").encode() if prev else None, rotated, None
        )

    def revoked_kiosks(self) -> dict[str, float]:
        """kiosk id -> when it was revoked."""
        with self._lock:
            rows = self._db.execute("SELECT kiosk_id, revoked_at FROM revoked_kiosks").fetchall()
        return {k: float(t) for k, t in rows}

    def record_cert(self, cert: x509.Certificate, kiosk_id: str) -> None:
        """Remember a certificate issued to `kiosk_id` (so a revocation can list it)."""
        with self._lock:
            self._insert_cert(cert, kiosk_id)

    def _insert_cert(self, cert: x509.Certificate, kiosk_id: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO certs (serial, kiosk_id, spki_sha256, not_after, issued_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                format(cert.serial_number, "x"),
                kiosk_id,
                _spki_sha256(cert.public_key()),
                cert.not_valid_after_utc.timestamp(),
                self.clock.time(),
            ),
        )

    def revoke(self, kiosk_id: str, extra_certs: Sequence[x509.Certificate] = ()) -> list[str]:
        """Decommission `kiosk_id`: its payment secret dies (current and previous), every
        certificate issued to it (and `extra_certs`, e.g. issued outside this CA's book) is
        revoked. Returns the serials now revoked for it (hex). Idempotent."""
        now = self.clock.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for c in extra_certs:
                    if cert_cn(c) != kiosk_id:
                        raise ValueError(f"certificate names {cert_cn(c)!r}, not {kiosk_id!r}")
                    self._insert_cert(c, kiosk_id)
                self._db.execute(
                    "INSERT INTO revoked_kiosks (kiosk_id, revoked_at) VALUES (?, ?) "
                    "ON CONFLICT (kiosk_id) DO NOTHING",
                    (kiosk_id, now),
                )
                self._db.execute(
                    "UPDATE kiosks SET prev_secret = NULL, rotated_at = NULL WHERE kiosk_id = ?",
                    (kiosk_id,),
                )
                self._db.execute(
                    "UPDATE certs SET revoked_at = ? WHERE kiosk_id = ? AND revoked_at IS NULL",
                    (now, kiosk_id),
                )
                serials = [
                    r[0]
                    for r in self._db.execute(
                        "SELECT serial FROM certs WHERE kiosk_id = ? ORDER BY issued_at",
                        (kiosk_id,),
                    )
                ]
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        log_event(
            log, "kiosk_revoked", _level=logging.WARNING, kiosk_id=kiosk_id, certs=len(serials)
        )
        return serials

    def crl_pem(self, next_update_days: int = 30) -> bytes:
        """The CA's CRL (PEM) with every revoked certificate that has not expired yet."""
        now = self._now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + dt.timedelta(days=next_update_days))
        )
        with self._lock:
            rows = self._db.execute(
                "SELECT serial, revoked_at FROM certs WHERE revoked_at IS NOT NULL AND "
                "not_after > ? ORDER BY serial",
                (now.timestamp(),),
            ).fetchall()
        for serial, at in rows:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(int(serial, 16))
                .revocation_date(dt.datetime.fromtimestamp(at, dt.UTC) - dt.timedelta(seconds=1))
                .build()
            )
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

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
        self._check_current(cert, kiosk_id, str(req.get("nonce", "")))

    def _check_current(self, cert: x509.Certificate, kiosk_id: str, nonce: str) -> None:
        """Renewal needs the kiosk's current certificate: the last one issued to it, or one
        with the same key (the kiosk retrying after the reply to its last renewal was lost).
        A certificate of an earlier key (superseded by a re-registration) or of a revoked
        kiosk is refused, and so is a replayed request (its nonce was answered already)."""
        if self._db.execute(
            "SELECT 1 FROM revoked_kiosks WHERE kiosk_id = ?", (kiosk_id,)
        ).fetchone():
            raise RegistrationRefused("revoked", "this kiosk was revoked: register with a token")
        row = self._db.execute(
            "SELECT cert_serial, cert_spki FROM kiosks WHERE kiosk_id = ?", (kiosk_id,)
        ).fetchone()
        serial, spki = format(cert.serial_number, "x"), _spki_sha256(cert.public_key())
        if row is None or (serial != row[0] and spki != row[1]):
            raise RegistrationRefused(
                "cert_superseded", "not the kiosk's current certificate: register with a token"
            )
        if (
            not nonce
            or self._db.execute(
                "INSERT INTO renewal_nonces (kiosk_id, nonce) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (kiosk_id, nonce),
            ).rowcount
            != 1
        ):
            raise RegistrationRefused("replayed", "this renewal request was answered already")

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
                secret_hex = self._rotate(kiosk_id, cert, renewal=how == "renewal")
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

    def _rotate(self, kiosk_id: str, cert: x509.Certificate, *, renewal: bool) -> str:
        """Record `cert` as the kiosk's current certificate with a NEW payment secret (hex).
        A renewal keeps the old secret as `prev_secret` for the overlap; a registration with a
        token (a new cabinet, a new disk, or after a suspected theft) kills it at once and
        lifts a revocation. Runs inside register()'s transaction."""
        now = self.clock.time()
        old = self._db.execute(
            "SELECT payment_secret FROM kiosks WHERE kiosk_id = ?", (kiosk_id,)
        ).fetchone()
        secret_hex = secrets.token_hex(32)
        prev = old[0] if old is not None and renewal else None
        self._db.execute(
            "INSERT INTO kiosks (kiosk_id, payment_secret, cert_serial, not_after,"
            " registered_at, prev_secret, rotated_at, cert_spki) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (kiosk_id) DO UPDATE SET payment_secret = excluded.payment_secret,"
            " cert_serial = excluded.cert_serial, not_after = excluded.not_after,"
            " registered_at = excluded.registered_at, prev_secret = excluded.prev_secret,"
            " rotated_at = excluded.rotated_at, cert_spki = excluded.cert_spki",
            (
                kiosk_id,
                secret_hex,
                format(cert.serial_number, "x"),
                cert.not_valid_after_utc.timestamp(),
                now,
                prev,
                now if old is not None else None,
                _spki_sha256(cert.public_key()),
            ),
        )
        self._insert_cert(cert, kiosk_id)
        if not renewal:
            self._db.execute("DELETE FROM revoked_kiosks WHERE kiosk_id = ?", (kiosk_id,))
        return secret_hex

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
