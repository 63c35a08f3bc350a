"""kiosk.sync.ledger_head: signing heads with the device key, and the acknowledged anchor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from kiosk.sim.certs import private_key_pem
from kiosk.store import open_store
from kiosk.sync.ledger_head import (
    ACKED_HEAD,
    HeadSigner,
    acked_head,
    note_acked_sales,
    verify_head,
)

KIOSK = "AH-340100-0001"
H1, H2 = "a" * 64, "b" * 64


def _payload(seq: int, rh: str) -> bytes:
    return json.dumps({"kind": "sale", "body": {"seq": seq, "record_hash": rh}}).encode()


def test_sign_and_verify_bind_kiosk_seq_and_hash(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "device.key"
    path.write_bytes(private_key_pem(key))
    signer = HeadSigner.from_key_file(path, KIOSK)
    rec = signer.signed({"seq": 7, "record_hash": H1, "order_id": "x"})
    assert rec["order_id"] == "x" and verify_head(key.public_key(), KIOSK, rec)
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert not verify_head(other, KIOSK, rec)
    for bad in (
        {"seq": 8},
        {"record_hash": H2},
        {"seq": True},
        {"head_sig": "!!"},
        {"head_sig": 5},
    ):
        assert not verify_head(key.public_key(), KIOSK, {**rec, **bad}), bad
    assert not verify_head(key.public_key(), "AH-340100-0002", rec)


def test_unusable_device_keys_are_refused_naming_the_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.key"
    junk.write_text("not a key")
    with pytest.raises(ValueError, match=r"junk\.key"):
        HeadSigner.from_key_file(junk, KIOSK)
    with pytest.raises(ValueError, match=r"missing\.key"):
        HeadSigner.from_key_file(tmp_path / "missing.key", KIOSK)
    with pytest.raises(ValueError, match="P-256"):
        HeadSigner(ec.generate_private_key(ec.SECP384R1()), KIOSK)
    ed = tmp_path / "ed.key"
    from cryptography.hazmat.primitives import serialization

    ed.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ValueError, match="EC"):
        HeadSigner.from_key_file(ed, KIOSK)


def test_the_anchor_keeps_the_newest_acknowledged_head(tmp_path: Path) -> None:
    store = open_store(tmp_path / "data")
    try:
        assert acked_head(store.settings.get(ACKED_HEAD)) is None
        with store.transaction() as c:
            note_acked_sales(c, [_payload(2, H2), _payload(1, H1), b"not json"], 10.0)
        assert acked_head(store.settings.get(ACKED_HEAD)) == (2, H2)
        with store.transaction() as c:  # a late ack of an older record does not move it back
            note_acked_sales(c, [_payload(1, H1)], 11.0)
        assert acked_head(store.settings.get(ACKED_HEAD)) == (2, H2)
        with store.transaction() as c:
            note_acked_sales(c, [_payload(3, H1)], 12.0)
        assert acked_head(store.settings.get(ACKED_HEAD)) == (3, H1)
    finally:
        store.close()
    assert acked_head("garbage") is None and acked_head('{"seq": "1"}') is None
