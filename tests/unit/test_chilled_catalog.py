"""`chilled_max_c` travels in the signed catalog: the province's catalog body (as the province
simulator builds it), signed, encoded, decoded, verified and applied into a store; a bad value
is refused whole (APPLY_FAILED, nothing changed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from kiosk.clock import ManualClock
from kiosk.sim.demo_data import demo_catalog
from kiosk.store import open_store
from kiosk.sync import apply
from kiosk.sync.signing import (
    Keyring,
    TrustError,
    TrustPolicy,
    TrustReason,
    generate_keypair,
    key_id,
    sign_envelope,
)
from kiosk.sync.topics import decode, encode

KIOSK = "AH-341524-0007"


def _body(version: int, chilled: dict[str, Any]) -> dict[str, Any]:
    products = []
    for p in demo_catalog():
        d = {k: (v.value if hasattr(v, "value") else v) for k, v in dataclasses.asdict(p).items()}
        d["image_ref"] = ""
        if p.product_id in chilled:
            d["chilled_max_c"] = chilled[p.product_id]
        products.append(d)
    return {"name": "catalog", "version": version, "products": products}


def test_chilled_max_c_in_the_signed_catalog(tmp_path: Path) -> None:
    priv, pub = generate_keypair()
    store = open_store(tmp_path, ManualClock(1_790_000_000.0))
    try:
        rejected: list[TrustReason] = []
        tp = TrustPolicy(
            Keyring([pub]), store, kiosk_id=KIOSK, on_reject=lambda _w, e: rejected.append(e.reason)
        )
        first = next(iter(demo_catalog())).product_id
        env = sign_envelope(priv, key_id(pub), _body(7, {first: 6}))
        wire = decode("catalog", encode(env))  # canonical JSON on the wire and back
        tp.accept_versioned("catalog", wire, lambda b: apply.apply_catalog(store, b))
        cat = store.catalog.load()
        assert cat[first].chilled_max_c == 6.0
        assert all(p.chilled_max_c is None for p in cat if p.product_id != first)

        bad = sign_envelope(priv, key_id(pub), _body(8, {first: "cold"}))
        try:
            tp.accept_versioned("catalog", bad, lambda b: apply.apply_catalog(store, b))
        except TrustError as e:
            assert e.reason is TrustReason.APPLY_FAILED and "chilled_max_c" in str(e)
        else:
            raise AssertionError("a catalog with a bad chilled_max_c was applied")
        assert store.catalog.load().version == cat.version  # nothing changed
        assert store.catalog.load()[first].chilled_max_c == 6.0
    finally:
        store.close()
