"""Trust for everything the province sends down: signed envelopes, the keyring, the rules.

Owns: the envelope format (`{"v":1, "kid", "body", "sig"}`, Ed25519 over a domain string plus
the canonical JSON of `body`), the keyring of trusted province signing keys (installed at
provisioning, replaced only by a key set signed by the province ROOT key: kiosk.sync.keyset),
and `TrustPolicy`: versioned state (catalog, planogram, prices, config, keys) is applied only
when newer than what is applied and at most MAX_VERSION_STEP ahead of it, atomically with the
version bump; commands only when unexpired and their nonce unseen. The root key signs key sets
and nothing else: an ordinary message under the root's key id is refused (ROOT_KEY_MISUSE).
Never applies anything unsigned; never raises anything but TrustError for bad input.
Every rejection is logged with its reason and passed to `on_reject` (the sync client turns it
into an alarm event).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from kiosk.clock import Clock, SystemClock
from kiosk.log import log_event
from kiosk.store import Store

if TYPE_CHECKING:
    from kiosk.sync.acks import SignedTime

__all__ = [
    "COMMAND_MAX_TTL_S",
    "ENVELOPE_DOMAIN",
    "KEYRING_SETTING",
    "MAX_VERSION",
    "MAX_VERSION_STEP",
    "NONCE_STORE_MAX",
    "VERSIONED_NAMES",
    "Keyring",
    "TrustError",
    "TrustPolicy",
    "TrustReason",
    "canonical_body",
    "check_signature",
    "envelope_parts",
    "generate_keypair",
    "key_id",
    "load_public_key_pem",
    "public_key_pem",
    "sign_envelope",
    "verify_envelope",
]

_log = logging.getLogger("kiosk.sync.trust")

ENVELOPE_DOMAIN = b"kiosk-sync-envelope-v1\n"  # never valid as a payment confirmation
ENVELOPE_VERSION = 1
KEYRING_SETTING = "sync.keyring"
VERSIONED_NAMES = ("catalog", "planogram", "prices", "config", "keys")
PER_KIOSK_NAMES = ("planogram", "prices", "config")
COMMAND_MAX_TTL_S = 24 * 3600.0  # a command may live at most this long (bounds the nonce store)
NONCE_STORE_MAX = 10_000
MAX_NONCE_LEN = 128
# A version may move at most this far ahead of the applied one (a leaked key cannot jump a
# version out of the province's reach), and never past 2^53 - 1 (exact in every JSON parser).
MAX_VERSION_STEP = 1000
MAX_VERSION = 2**53 - 1


class TrustReason(StrEnum):
    MALFORMED = "MALFORMED"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    STALE_VERSION = "STALE_VERSION"
    WRONG_NAME = "WRONG_NAME"
    WRONG_KIOSK = "WRONG_KIOSK"
    EXPIRED = "EXPIRED"
    TOO_LONG_LIVED = "TOO_LONG_LIVED"
    REPLAYED = "REPLAYED"
    NONCE_STORE_FULL = "NONCE_STORE_FULL"
    BAD_ROTATION = "BAD_ROTATION"
    VERSION_JUMP = "VERSION_JUMP"  # more than MAX_VERSION_STEP ahead of the applied version
    NOT_ROOT_SIGNED = "NOT_ROOT_SIGNED"  # a key set signed by anything but the pinned root
    ROOT_KEY_MISUSE = "ROOT_KEY_MISUSE"  # an ordinary message signed by the root key
    NO_ROOT_KEY = "NO_ROOT_KEY"  # no root key pinned: the key set is frozen
    APPLY_FAILED = "APPLY_FAILED"
    STALE_SIGNED_TIME = "STALE_SIGNED_TIME"  # signed before the key's high-water mark (acks.py)


class TrustError(Exception):
    """A downstream message was not trusted or not applied. `reason` is a TrustReason."""

    def __init__(self, reason: TrustReason, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)


# --- keys -------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL_RE = re.compile(r"^[A-Za-z0-9_-]*$")


def _b64url_decode(text: str) -> bytes:
    """Strict base64url without padding (one spelling per byte string): no `=`, no `+` or `/`,
    zero unused trailing bits; anything else is an error (binascii.Error)."""
    if not _B64URL_RE.match(text) or len(text) % 4 == 1:
        raise binascii.Error(f"not unpadded base64url: {text!r}")
    data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii") != text:
        raise binascii.Error(f"non-canonical base64url (unused bits set): {text!r}")
    return data


def generate_keypair() -> tuple[bytes, bytes]:
    """(private key raw 32 bytes, public key raw 32 bytes)."""
    priv = Ed25519PrivateKey.generate()
    raw_priv = priv.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return raw_priv, _raw_public(priv.public_key())


def _raw_public(pub: Ed25519PublicKey) -> bytes:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: bytes) -> str:
    """First 16 hex digits of sha256(raw public key)."""
    if len(public) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(public)}")
    return hashlib.sha256(public).hexdigest()[:16]


def public_key_pem(public: bytes) -> bytes:
    """Raw 32-byte public key -> SubjectPublicKeyInfo PEM."""
    return Ed25519PublicKey.from_public_bytes(public).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key_pem(path: Path | str) -> bytes:
    """Read a PEM Ed25519 public key file; return the raw 32 bytes."""
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return _raw_public(key)


def canonical_body(body: Mapping[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8 (Chinese kept as is), NaN/Infinity refused."""
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sign_envelope(private: bytes, key_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """`{"v":1, "kid", "body", "sig"}`; sig = base64url(Ed25519(DOMAIN + canonical(body)))."""
    priv = Ed25519PrivateKey.from_private_bytes(private)
    sig = priv.sign(ENVELOPE_DOMAIN + canonical_body(body))
    return {"v": ENVELOPE_VERSION, "kid": key_id, "body": dict(body), "sig": _b64url(sig)}


class Keyring:
    """Trusted province public keys by key id. Persisted as JSON in the settings table."""

    def __init__(self, keys: Iterable[bytes] = ()) -> None:
        self._keys: dict[str, bytes] = {}
        for k in keys:
            self.add(k)

    def add(self, public: bytes) -> str:
        Ed25519PublicKey.from_public_bytes(public)  # raises ValueError if not a key
        kid = key_id(public)
        self._keys[kid] = bytes(public)
        return kid

    def retire(self, kid: str) -> None:
        self._keys.pop(kid, None)

    def get(self, kid: str) -> bytes | None:
        return self._keys.get(kid)

    def ids(self) -> list[str]:
        return sorted(self._keys)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def replace_with(self, other: Keyring) -> None:
        """Become `other` in one step (a key set applied): retired keys are gone at once."""
        self._keys = dict(other._keys)

    def copy(self) -> Keyring:
        k = Keyring()
        k._keys = dict(self._keys)
        return k

    def to_json(self) -> dict[str, Any]:
        return {"keys": {kid: _b64url(pub) for kid, pub in sorted(self._keys.items())}}

    @classmethod
    def from_json(cls, data: object) -> Keyring:
        if not isinstance(data, dict) or not isinstance(data.get("keys"), dict):
            raise ValueError("keyring JSON must be {'keys': {kid: base64url public key}}")
        ring = cls()
        for kid, text in data["keys"].items():
            if not isinstance(text, str):
                raise ValueError(f"keyring: key {kid!r} is not a string")
            got = ring.add(_b64url_decode(text))
            if got != kid:
                raise ValueError(f"keyring: key id {kid!r} does not match its key ({got})")
        return ring

    @classmethod
    def load(cls, store: Store) -> Keyring:
        """The persisted keyring (empty if none was installed)."""
        data = store.settings.get_json(KEYRING_SETTING)
        return cls() if data is None else cls.from_json(data)

    def save(self, store: Store) -> None:
        store.settings.set_json(KEYRING_SETTING, self.to_json())


def envelope_parts(env: object) -> tuple[str, dict[str, Any], str]:
    """(kid, body, sig) of a well-formed envelope; TrustError MALFORMED otherwise."""
    if not isinstance(env, Mapping):
        raise TrustError(TrustReason.MALFORMED, "envelope is not an object")
    kid, body, sig = env.get("kid"), env.get("body"), env.get("sig")
    if not isinstance(kid, str) or not isinstance(body, dict) or not isinstance(sig, str):
        raise TrustError(TrustReason.MALFORMED, "envelope needs kid (str), body (obj), sig (str)")
    if env.get("v", ENVELOPE_VERSION) != ENVELOPE_VERSION:
        raise TrustError(TrustReason.MALFORMED, f"envelope v {env.get('v')!r}")
    return kid, body, sig


def check_signature(
    public: bytes, domain: bytes, body: dict[str, Any], sig: str, who: str
) -> dict[str, Any]:
    """`body` if `sig` is `public`'s Ed25519 signature over `domain` + canonical body;
    TrustError MALFORMED / BAD_SIGNATURE (naming `who`) otherwise."""
    try:
        raw_sig = _b64url_decode(sig)
        signed = domain + canonical_body(body)
    except (ValueError, binascii.Error) as e:
        raise TrustError(TrustReason.MALFORMED, f"sig or body not encodable: {e}") from None
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(raw_sig, signed)
    except InvalidSignature:
        raise TrustError(TrustReason.BAD_SIGNATURE, f"signature does not verify ({who})") from None
    return body


def verify_envelope(env: object, keyring: Keyring) -> dict[str, Any]:
    """The envelope's body if it is well formed and signed by a key in `keyring`."""
    kid, body, sig = envelope_parts(env)
    public = keyring.get(kid)
    if public is None:
        raise TrustError(TrustReason.UNKNOWN_KEY, f"kid {kid!r} is not trusted")
    return check_signature(public, ENVELOPE_DOMAIN, body, sig, f"kid {kid}")


# --- the policy -------------------------------------------------------------------------

RejectHook = Callable[[str, TrustError], None]


def _is_time(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


class TrustPolicy:
    """Decides whether a signed message from the province is applied.

    Versioned state bodies carry `name` (catalog/planogram/prices/config/keys) and an integer
    `version`; per-kiosk ones (planogram/prices/config) also `kiosk_id`. Command bodies carry
    `kiosk_id`, `command`, `nonce`, `issued_at`, `expires_at` (province time). State lives in
    the store (tables `sync_applied`, `sync_nonce`, setting `sync.keyring`).
    """

    def __init__(
        self,
        keyring: Keyring,
        store: Store,
        *,
        kiosk_id: str | None = None,
        on_reject: RejectHook | None = None,
        command_max_ttl_s: float = COMMAND_MAX_TTL_S,
        nonce_store_max: int = NONCE_STORE_MAX,
        clock: Clock | None = None,
        root_key: bytes | None = None,
    ) -> None:
        """`root_key`: the province root public key pinned at provisioning (None: not pinned,
        key sets are refused). It verifies key sets only (kiosk.sync.keyset)."""
        self.clock: Clock = clock or SystemClock()
        self.keyring = keyring
        self.root_key = root_key
        self.root_kid = key_id(root_key) if root_key is not None else None
        self.store = store
        self.kiosk_id = kiosk_id
        self.on_reject = on_reject
        self.command_max_ttl_s = command_max_ttl_s
        self.nonce_store_max = nonce_store_max
        # per-key high-water marks of signed time (kiosk.sync.acks); when set, a command
        # signed before a key's mark minus the tolerance is refused (STALE_SIGNED_TIME)
        self.signed_time: SignedTime | None = None

    # -- helpers

    def _reject(self, what: str, err: TrustError) -> TrustError:
        quiet = err.reason is TrustReason.STALE_VERSION  # retained re-deliveries: routine
        log_event(
            _log,
            "trust.ignored" if quiet else "trust.rejected",
            logging.INFO if quiet else logging.WARNING,
            what=what,
            reason=err.reason.value,
            detail=err.detail,
        )
        if not quiet and self.on_reject is not None:
            try:
                self.on_reject(what, err)
            except Exception:  # an alarm that cannot be raised must not crash the kiosk
                _log.exception("trust.on_reject failed")
        return err

    def reject(self, what: str, err: TrustError) -> TrustError:
        """Log and report a rejection (for kiosk.sync.keyset); returns `err` to raise."""
        return self._reject(what, err)

    def _verify(self, what: str, env: object) -> dict[str, Any]:
        try:
            if isinstance(env, Mapping) and env.get("kid", "") == self.root_kid:
                # separation of duties: the root signs key sets, nothing else
                raise TrustError(TrustReason.ROOT_KEY_MISUSE, "the root key signs key sets only")
            return verify_envelope(env, self.keyring)
        except TrustError as e:
            raise self._reject(what, e) from None

    def applied_version(self, name: str) -> int:
        """The version applied for `name`, 0 if none."""
        with self.store.read() as conn:
            row = conn.execute(
                "SELECT version FROM sync_applied WHERE name = ?", (name,)
            ).fetchone()
        return 0 if row is None else int(row[0])

    def applied_versions(self) -> dict[str, int]:
        with self.store.read() as conn:
            rows = conn.execute("SELECT name, version FROM sync_applied ORDER BY name").fetchall()
        return {str(n): int(v) for n, v in rows}

    # -- versioned state

    def accept_versioned(
        self,
        name: str,
        env: object,
        apply: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Verify, check `body["version"]` > the applied version of `name`, then run
        `apply(body)` and record the version in ONE transaction: both happen or neither.

        Returns the body. Raises TrustError: MALFORMED, UNKNOWN_KEY, BAD_SIGNATURE,
        ROOT_KEY_MISUSE, WRONG_NAME, WRONG_KIOSK, STALE_VERSION (equal or older: ignored, logged
        quietly, no alarm), VERSION_JUMP (more than MAX_VERSION_STEP ahead of the applied
        version) or APPLY_FAILED (apply raised; nothing was changed).
        """
        if name not in VERSIONED_NAMES:
            raise ValueError(f"not a versioned name: {name!r}")
        body = self._verify(name, env)
        kid = str(env["kid"]) if isinstance(env, Mapping) else ""
        self.apply_versioned(name, body, kid, apply)
        return body

    def apply_versioned(
        self,
        name: str,
        body: dict[str, Any],
        kid: str,
        apply: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """The version rules and the atomic apply of `accept_versioned`, for a body whose
        signature the caller has verified (kiosk.sync.keyset verifies key sets by the root)."""
        version = body.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise self._reject(name, TrustError(TrustReason.MALFORMED, "version must be int >= 1"))
        if version > MAX_VERSION:
            raise self._reject(
                name, TrustError(TrustReason.VERSION_JUMP, f"version {version} > 2^53 - 1")
            )
        if body.get("name") != name:
            raise self._reject(
                name, TrustError(TrustReason.WRONG_NAME, f"body is for {body.get('name')!r}")
            )
        if (
            name in PER_KIOSK_NAMES
            and self.kiosk_id is not None
            and body.get("kiosk_id") != self.kiosk_id
        ):
            raise self._reject(
                name,
                TrustError(TrustReason.WRONG_KIOSK, f"body is for {body.get('kiosk_id')!r}"),
            )
        try:
            with self.store.transaction() as conn:
                current = self._applied_in(conn, name)
                if version <= current:
                    raise TrustError(
                        TrustReason.STALE_VERSION, f"{name} v{version} <= applied v{current}"
                    )
                if current > 0 and version - current > MAX_VERSION_STEP:
                    raise TrustError(
                        TrustReason.VERSION_JUMP,
                        f"{name} v{version} is more than {MAX_VERSION_STEP} ahead of v{current}",
                    )
                if apply is not None:
                    try:
                        apply(body)
                    except TrustError:
                        raise
                    except Exception as e:
                        raise TrustError(
                            TrustReason.APPLY_FAILED, f"{type(e).__name__}: {e}"
                        ) from e
                conn.execute(
                    "INSERT INTO sync_applied (name, version, applied_at, kid) VALUES (?,?,?,?) "
                    "ON CONFLICT (name) DO UPDATE SET version = excluded.version, "
                    "applied_at = excluded.applied_at, kid = excluded.kid",
                    (name, version, self._now(), kid),
                )
        except TrustError as e:
            raise self._reject(name, e) from None
        log_event(_log, "trust.applied", what=name, version=version, kid=kid)

    @staticmethod
    def _applied_in(conn: sqlite3.Connection, name: str) -> int:
        row = conn.execute("SELECT version FROM sync_applied WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

    def _now(self) -> float:
        return float(self.clock.time())

    # -- key sets

    def accept_keys(self, env: object) -> Keyring:
        """A key set signed by the pinned root key (kiosk.sync.keyset.accept_key_set)."""
        from kiosk.sync.keyset import accept_key_set  # keyset builds on this module

        return accept_key_set(self, env)

    # -- commands

    def accept_command(self, env: object, now: float) -> dict[str, Any]:
        """Verify a command; `now` is the estimated PROVINCE time (ClockOffset.province_now).

        Raises TrustError: MALFORMED, UNKNOWN_KEY, BAD_SIGNATURE, WRONG_KIOSK, EXPIRED,
        TOO_LONG_LIVED, REPLAYED (nonce seen before, even across restarts), NONCE_STORE_FULL.
        The nonce is recorded (durably) before this returns the body.
        """
        what = "command"
        body = self._verify(what, env)
        nonce, expires_at, command = body.get("nonce"), body.get("expires_at"), body.get("command")
        if not isinstance(command, str) or not command:
            raise self._reject(what, TrustError(TrustReason.MALFORMED, "command must be a str"))
        what = f"command:{command}"
        if not isinstance(nonce, str) or not 8 <= len(nonce) <= MAX_NONCE_LEN:
            raise self._reject(what, TrustError(TrustReason.MALFORMED, "nonce: str of 8..128"))
        if not _is_time(expires_at):
            raise self._reject(what, TrustError(TrustReason.MALFORMED, "expires_at: number"))
        assert isinstance(expires_at, int | float)
        if self.kiosk_id is not None and body.get("kiosk_id") != self.kiosk_id:
            raise self._reject(
                what, TrustError(TrustReason.WRONG_KIOSK, f"for {body.get('kiosk_id')!r}")
            )
        kid = str(env["kid"]) if isinstance(env, Mapping) else ""
        issued_at = None
        if self.signed_time is not None:
            try:
                issued_at = self.signed_time.check(kid, body.get("issued_at"))
            except TrustError as e:
                raise self._reject(what, e) from None
        if expires_at <= now:
            raise self._reject(
                what, TrustError(TrustReason.EXPIRED, f"expired {now - expires_at:.0f} s ago")
            )
        if expires_at - now > self.command_max_ttl_s:
            raise self._reject(
                what,
                TrustError(
                    TrustReason.TOO_LONG_LIVED,
                    f"expires in {expires_at - now:.0f} s > {self.command_max_ttl_s:.0f} s",
                ),
            )
        try:
            with self.store.transaction() as conn:
                # Forget a nonce only well after it expired, so that a wrong clock-offset
                # estimate, later corrected, cannot open a window for replays.
                conn.execute(
                    "DELETE FROM sync_nonce WHERE expires_at < ?", (now - self.command_max_ttl_s,)
                )
                seen = conn.execute("SELECT 1 FROM sync_nonce WHERE nonce = ?", (nonce,)).fetchone()
                if seen is not None:
                    raise TrustError(TrustReason.REPLAYED, f"nonce {nonce!r} already used")
                (count,) = conn.execute("SELECT COUNT(*) FROM sync_nonce").fetchone()
                if count >= self.nonce_store_max:
                    raise TrustError(
                        TrustReason.NONCE_STORE_FULL, f"{count} unexpired nonces remembered"
                    )
                conn.execute(
                    "INSERT INTO sync_nonce (nonce, expires_at, seen_at) VALUES (?, ?, ?)",
                    (nonce, float(expires_at), self._now()),
                )
        except TrustError as e:
            raise self._reject(what, e) from None
        if self.signed_time is not None and issued_at is not None:
            self.signed_time.advance(kid, issued_at)
        log_event(_log, "trust.command", command=command, nonce=nonce)
        return body
