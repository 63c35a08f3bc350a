"""Signed ledger heads: the kiosk signs the head of its sale-record chain with its device key.

Owns: the bytes that are signed for a head, signing them with the kiosk's device key (the
private key of its client certificate, ECDSA P-256, `[sync] key_file`), checking such a
signature with the public key of that certificate (the province's side), and the kiosk's
anchor: the head of the last sale record the province acknowledged end to end.

Why: the chain (kiosk.core.ledger) shows that records were not changed one by one, but anyone
holding the disk can edit a record and re-chain everything after it. Two things outside the
kiosk's ledger table catch that:
- the province keeps every head it received, each signed with the device key; a record for a
  sequence number the province holds with another hash (`ledger_conflict`), or a chain that no
  longer links to the held records, is an alarm there; and a sale record whose signature does
  not verify against the kiosk's certificate (injected by someone without the device key, e.g.
  a hostile broker operator) is refused;
- the kiosk keeps the head of the last sale record the province acknowledged (`acked_head`, in
  the same transaction as the ack); `kiosk ledger verify` checks that the ledger still holds
  exactly that record, so a re-chain or truncation of acknowledged records is found locally.

Signed bytes (docs/province-guide.md, with a test vector):
    canonical_json({"kiosk_id": <id>, "record_hash": <hex>, "seq": <int>})
i.e. compact JSON, keys sorted, UTF-8. Signature: ECDSA P-256 with SHA-256, DER-encoded,
base64url without padding, in the sale record's `head_sig` field (not part of `record_hash`).
"""

from __future__ import annotations

import binascii
import json
import sqlite3
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kiosk.core.ledger import canonical_json
from kiosk.sync.signing import _b64url, _b64url_decode

__all__ = [
    "ACKED_HEAD",
    "HEAD_SIG_FIELD",
    "HeadSigner",
    "acked_head",
    "head_bytes",
    "note_acked_sales",
    "verify_head",
]

HEAD_SIG_FIELD = "head_sig"
ACKED_HEAD = "ledger.acked_head"  # settings key: {"seq", "record_hash", "at"} (JSON)


def head_bytes(kiosk_id: str, seq: int, record_hash: str) -> bytes:
    """The bytes signed for the head `seq` / `record_hash` of `kiosk_id`'s chain."""
    return canonical_json({"kiosk_id": kiosk_id, "record_hash": record_hash, "seq": seq})


class HeadSigner:
    """Signs ledger heads with the device key (ECDSA P-256)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, kiosk_id: str) -> None:
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"the device key must be ECDSA P-256, not {key.curve.name}")
        self._key = key
        self.kiosk_id = kiosk_id

    @classmethod
    def from_key_file(cls, path: Path, kiosk_id: str) -> HeadSigner:
        """The device key's PEM file (`[sync] key_file`). Raises ValueError naming the file."""
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as e:
            raise ValueError(f"{path}: not a readable PEM private key ({e})") from e
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path}: the device key must be an EC (P-256) key")
        return cls(key, kiosk_id)

    def sign(self, seq: int, record_hash: str) -> str:
        der = self._key.sign(head_bytes(self.kiosk_id, seq, record_hash), ec.ECDSA(hashes.SHA256()))
        return _b64url(der)

    def signed(self, record: dict[str, Any]) -> dict[str, Any]:
        """`record` (a sale record's wire form) with its `head_sig`."""
        return {**record, HEAD_SIG_FIELD: self.sign(record["seq"], record["record_hash"])}


def verify_head(
    public_key: ec.EllipticCurvePublicKey, kiosk_id: str, record: dict[str, Any]
) -> bool:
    """Does `record["head_sig"]` sign (kiosk_id, seq, record_hash) with `public_key`?"""
    sig, seq, rh = record.get(HEAD_SIG_FIELD), record.get("seq"), record.get("record_hash")
    if not isinstance(sig, str) or not isinstance(rh, str):
        return False
    if not isinstance(seq, int) or isinstance(seq, bool):
        return False
    try:
        der = _b64url_decode(sig)
        public_key.verify(der, head_bytes(kiosk_id, seq, rh), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def note_acked_sales(conn: sqlite3.Connection, payloads: list[bytes], now: float) -> None:
    """In the ack's transaction: keep the head of the newest acknowledged sale record
    (`payloads`: the outbox payloads of the acknowledged `sale` records)."""
    best: tuple[int, str] | None = None
    for payload in payloads:
        try:
            rec = json.loads(payload)["body"]
            seq, rh = rec.get("seq"), rec.get("record_hash")
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        if isinstance(seq, int) and isinstance(rh, str) and (best is None or seq > best[0]):
            best = (seq, rh)
    if best is None:
        return
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (ACKED_HEAD,)).fetchone()
    held = _parse_head(row[0]) if row is not None else None
    if held is not None and held[0] >= best[0]:
        return
    value = json.dumps({"seq": best[0], "record_hash": best[1], "at": now}, sort_keys=True)
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (ACKED_HEAD, value),
    )


def _parse_head(text: str | None) -> tuple[int, str] | None:
    try:
        d = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(d, dict):
        return None
    seq, rh = d.get("seq"), d.get("record_hash")
    return (seq, rh) if isinstance(seq, int) and isinstance(rh, str) else None


def acked_head(settings_value: str | None) -> tuple[int, str] | None:
    """(seq, record_hash) of the last acknowledged sale record, from the settings value."""
    return _parse_head(settings_value)
