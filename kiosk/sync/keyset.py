"""Key sets: which province keys may sign, decided by the province ROOT key alone.

Owns: the key-set message (`kiosk/v1/province/keys`, retained) and its rules. The province
root key is an Ed25519 key pinned at provisioning (`sync.province_root_key`, a PEM file),
separate from the day-to-day signing keys in the keyring (kiosk.sync.signing):

- a key set states the FULL set of valid signing keys: body `{"name": "keys", "version": n,
  "keys": [base64url raw public key, ...], "issued_at": t}`; no deltas (a body with `add` or
  `retire` is refused), 1..MAX_KEYS distinct keys, never the root key itself;
- it is signed by the root key, in the usual envelope `{"v":1,"kid","body","sig"}` but under
  its own domain (`KEYSET_DOMAIN`), so no ordinary signature is ever a key-set signature and
  the reverse; a key set signed by any other key is refused (`NOT_ROOT_SIGNED`), and the root's
  signature on anything else is refused by TrustPolicy (`ROOT_KEY_MISUSE`);
- its version follows TrustPolicy's rules (higher than the applied one, at most
  MAX_VERSION_STEP ahead); the new keyring and the version are stored in one transaction and
  the keyring in memory is swapped after the commit: a key left out is dead from that moment;
- a kiosk with no pinned root (provisioned before root keys existed) refuses every key set
  (`NO_ROOT_KEY`, an alarm each time): its keyring stays frozen until it is provisioned with
  a root key.
"""

from __future__ import annotations

import binascii
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
)

from kiosk.log import log_event
from kiosk.sync.signing import (
    ENVELOPE_VERSION,
    Keyring,
    TrustError,
    TrustPolicy,
    TrustReason,
    _b64url,
    _b64url_decode,
    canonical_body,
    check_signature,
    envelope_parts,
    key_id,
)

__all__ = [
    "KEYSET_DOMAIN",
    "MAX_KEYS",
    "accept_key_set",
    "key_set_body",
    "parse_key_set",
    "sign_key_set",
    "verify_key_set",
]

KEYSET_DOMAIN = b"kiosk-sync-keyset-v1\n"  # never valid as an envelope or a confirmation
MAX_KEYS = 16
_WHAT = "keys"

_log = logging.getLogger("kiosk.sync.trust")


def key_set_body(version: int, keys: Iterable[bytes], issued_at: int) -> dict[str, Any]:
    """The body of a key set naming exactly `keys` (raw 32-byte public keys)."""
    return {
        "name": "keys",
        "version": version,
        "keys": [_b64url(k) for k in keys],
        "issued_at": issued_at,
    }


def sign_key_set(root_private: bytes, body: Mapping[str, Any]) -> dict[str, Any]:
    """`{"v":1, "kid": root kid, "body", "sig"}`, sig = Ed25519(KEYSET_DOMAIN + canonical)."""
    priv = Ed25519PrivateKey.from_private_bytes(root_private)
    public = priv.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    sig = priv.sign(KEYSET_DOMAIN + canonical_body(body))
    return {"v": ENVELOPE_VERSION, "kid": key_id(public), "body": dict(body), "sig": _b64url(sig)}


def verify_key_set(env: object, root_public: bytes | None, keyring: Keyring) -> dict[str, Any]:
    """The body of a key set signed by `root_public`; TrustError otherwise (MALFORMED,
    NO_ROOT_KEY, NOT_ROOT_SIGNED, BAD_SIGNATURE)."""
    kid, body, sig = envelope_parts(env)
    if root_public is None:
        raise TrustError(
            TrustReason.NO_ROOT_KEY,
            "no province root key pinned (sync.province_root_key): key set frozen",
        )
    root_kid = key_id(root_public)
    if kid != root_kid:
        role = "an ordinary signing key" if kid in keyring else "an unknown key"
        raise TrustError(
            TrustReason.NOT_ROOT_SIGNED, f"signed by {role} ({kid}), not the root ({root_kid})"
        )
    return check_signature(root_public, KEYSET_DOMAIN, body, sig, f"root {kid}")


def parse_key_set(body: Mapping[str, Any], root_public: bytes) -> Keyring:
    """The keyring a verified key-set body names; TrustError BAD_ROTATION if it is not a full,
    valid set of 1..MAX_KEYS distinct keys without the root."""
    if "add" in body or "retire" in body:
        raise TrustError(
            TrustReason.BAD_ROTATION, "add/retire deltas are refused: state the full set in keys"
        )
    keys = body.get("keys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise TrustError(TrustReason.BAD_ROTATION, "keys must be a list of base64url strings")
    if not 1 <= len(keys) <= MAX_KEYS:
        raise TrustError(TrustReason.BAD_ROTATION, f"keys must name 1..{MAX_KEYS} keys")
    if len(set(keys)) != len(keys):
        raise TrustError(TrustReason.BAD_ROTATION, "a key is named twice")
    ring = Keyring()
    for text in keys:
        try:
            raw = _b64url_decode(text)
            ring.add(raw)
        except (ValueError, binascii.Error) as e:
            raise TrustError(TrustReason.BAD_ROTATION, f"bad public key {text!r}: {e}") from None
        if raw == root_public:
            raise TrustError(TrustReason.BAD_ROTATION, "the root key cannot be a signing key")
    return ring


def accept_key_set(policy: TrustPolicy, env: object) -> Keyring:
    """Verify a key set by `policy.root_key`, then replace the keyring and record the version
    in ONE transaction (TrustPolicy.apply_versioned: stale, jumped and failed sets change
    nothing). The keyring in memory is swapped after the commit. Returns it."""
    try:
        body = verify_key_set(env, policy.root_key, policy.keyring)
    except TrustError as e:
        raise policy.reject(_WHAT, e) from None
    if body.get("name") != _WHAT:
        raise policy.reject(
            _WHAT, TrustError(TrustReason.WRONG_NAME, f"body is for {body.get('name')!r}")
        )
    assert policy.root_key is not None  # verify_key_set refused it otherwise
    root = policy.root_key
    new_ring = Keyring()

    def apply(b: dict[str, Any]) -> None:
        new_ring.replace_with(parse_key_set(b, root))
        new_ring.save(policy.store)  # same transaction as the version bump

    policy.apply_versioned(_WHAT, body, key_id(root), apply)
    retired = sorted(set(policy.keyring.ids()) - set(new_ring.ids()))
    policy.keyring.replace_with(new_ring)  # only after the commit
    log_event(
        _log,
        "trust.keys_rotated",
        version=body["version"],
        keys=",".join(new_ring.ids()),
        retired=",".join(retired),
    )
    return policy.keyring
