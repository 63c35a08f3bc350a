"""Trust downstream: envelopes, keyring and rotation, versioned state, commands."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiosk.clock import ManualClock
from kiosk.store import Store, open_store
from kiosk.sync.signing import (
    MAX_VERSION,
    MAX_VERSION_STEP,
    Keyring,
    TrustError,
    TrustPolicy,
    TrustReason,
    generate_keypair,
    key_id,
    load_public_key_pem,
    public_key_pem,
    sign_envelope,
    verify_envelope,
)
from kiosk.sync.topics import decode, encode

KIOSK = "AH-341524-0007"
NOW = 1_790_000_000.0


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture
def keys() -> tuple[bytes, bytes, str]:
    priv, pub = generate_keypair()
    return priv, pub, key_id(pub)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path, ManualClock(NOW))
    yield s
    s.close()


class Rejections:
    def __init__(self) -> None:
        self.seen: list[tuple[str, TrustReason]] = []

    def __call__(self, what: str, err: TrustError) -> None:
        self.seen.append((what, err.reason))


def policy(store: Store, pub: bytes, rej: Rejections | None = None) -> TrustPolicy:
    return TrustPolicy(Keyring([pub]), store, kiosk_id=KIOSK, on_reject=rej, clock=ManualClock(NOW))


def test_sign_verify_and_wire_round_trip(keys: tuple[bytes, bytes, str]) -> None:
    priv, pub, kid = keys
    assert len(priv) == 32 and len(pub) == 32 and len(kid) == 16
    env = sign_envelope(priv, kid, {"name": "prices", "version": 1, "价格": {"A": 1500}})
    wire = decode("desired", encode(env))  # through the topic contract and back
    assert verify_envelope(wire, Keyring([pub]))["价格"] == {"A": 1500}


def test_tampered_unknown_key_and_malformed(keys: tuple[bytes, bytes, str]) -> None:
    priv, pub, kid = keys
    ring = Keyring([pub])
    env = sign_envelope(priv, kid, {"name": "prices", "version": 1, "A": 1500})
    bad = copy.deepcopy(env)
    bad["body"]["A"] = 1
    with pytest.raises(TrustError) as ei:
        verify_envelope(bad, ring)
    assert ei.value.reason is TrustReason.BAD_SIGNATURE
    other_priv, other_pub = generate_keypair()
    forged = sign_envelope(other_priv, key_id(other_pub), env["body"])
    with pytest.raises(TrustError) as ei:
        verify_envelope(forged, ring)
    assert ei.value.reason is TrustReason.UNKNOWN_KEY
    # an unknown key claiming a trusted kid fails on the signature
    with pytest.raises(TrustError) as ei:
        verify_envelope({**forged, "kid": kid}, ring)
    assert ei.value.reason is TrustReason.BAD_SIGNATURE
    junk_list: list[Any] = [
        None,
        [],
        {"kid": kid},
        {**env, "sig": "!!!"},
        {**env, "body": "x"},
        {**env, "v": 9},
    ]
    for junk in junk_list:
        with pytest.raises(TrustError) as ei:
            verify_envelope(junk, ring)
        assert ei.value.reason is TrustReason.MALFORMED, junk


def test_pem_round_trip(tmp_path: Path, keys: tuple[bytes, bytes, str]) -> None:
    _, pub, _ = keys
    p = tmp_path / "province.pub.pem"
    p.write_bytes(public_key_pem(pub))
    assert load_public_key_pem(p) == pub


def test_keyring_persisted(store: Store, keys: tuple[bytes, bytes, str]) -> None:
    _, pub, kid = keys
    assert len(Keyring.load(store)) == 0
    Keyring([pub]).save(store)
    assert Keyring.load(store).ids() == [kid]
    with pytest.raises(ValueError):
        Keyring.from_json({"keys": {"0000000000000000": b64(pub)}})  # kid does not match


def versioned(priv: bytes, kid: str, name: str, version: int, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "version": version, **extra}
    if name in ("planogram", "prices", "config"):
        body.setdefault("kiosk_id", KIOSK)
    return sign_envelope(priv, kid, body)


def test_versioned_newer_applied_equal_or_older_ignored(
    store: Store, keys: tuple[bytes, bytes, str]
) -> None:
    priv, pub, kid = keys
    rej = Rejections()
    tp = policy(store, pub, rej)
    applied: list[int] = []
    tp.accept_versioned("prices", versioned(priv, kid, "prices", 3), lambda b: applied.append(3))
    assert tp.applied_version("prices") == 3 and applied == [3]
    for v in (3, 2):
        with pytest.raises(TrustError) as ei:
            tp.accept_versioned(
                "prices",
                versioned(priv, kid, "prices", v),
                lambda b, v=v: applied.append(v),  # type: ignore[misc]
            )
        assert ei.value.reason is TrustReason.STALE_VERSION
    assert applied == [3] and rej.seen == []  # stale retained re-deliveries raise no alarm
    tp.accept_versioned("prices", versioned(priv, kid, "prices", 4))
    assert tp.applied_versions() == {"prices": 4}
    # persisted: a new policy on a reopened store still knows v4
    assert policy(store, pub).applied_version("prices") == 4


def test_versioned_rejections_and_atomic_apply(
    store: Store, keys: tuple[bytes, bytes, str]
) -> None:
    priv, pub, kid = keys
    rej = Rejections()
    tp = policy(store, pub, rej)
    cases = [
        (versioned(priv, kid, "config", 1, kiosk_id="AH-OTHER"), TrustReason.WRONG_KIOSK),
        (versioned(priv, kid, "prices", 5), TrustReason.WRONG_NAME),  # offered as config
        (sign_envelope(priv, kid, {"name": "config", "kiosk_id": KIOSK}), TrustReason.MALFORMED),
        (
            sign_envelope(priv, kid, {"name": "config", "kiosk_id": KIOSK, "version": True}),
            TrustReason.MALFORMED,
        ),
        ({"kid": kid, "body": {}, "sig": ""}, TrustReason.BAD_SIGNATURE),
    ]
    for env, reason in cases:
        with pytest.raises(TrustError) as ei:
            tp.accept_versioned("config", env)
        assert ei.value.reason is reason
    assert [r for _, r in rej.seen] == [r for _, r in cases]  # every rejection reported

    def half_then_fail(body: dict[str, Any]) -> None:
        store.settings.set("catalog.half", "written")
        raise RuntimeError("bad product row")

    with pytest.raises(TrustError) as ei:
        tp.accept_versioned("catalog", versioned(priv, kid, "catalog", 1), half_then_fail)
    assert ei.value.reason is TrustReason.APPLY_FAILED
    assert store.settings.get("catalog.half") is None  # never half a catalog
    assert tp.applied_version("catalog") == 0
    tp.accept_versioned(
        "catalog", versioned(priv, kid, "catalog", 1), lambda b: store.settings.set("c", "1")
    )
    assert store.settings.get("c") == "1" and tp.applied_version("catalog") == 1


def test_a_broken_alarm_hook_does_not_crash(store: Store, keys: tuple[bytes, bytes, str]) -> None:
    _, pub, _ = keys

    def hook(what: str, err: TrustError) -> None:
        raise OSError("alarm channel broken")

    tp = TrustPolicy(Keyring([pub]), store, on_reject=hook)
    with pytest.raises(TrustError):
        tp.accept_versioned("config", {"nonsense": 1})


def test_an_ordinary_key_cannot_change_the_key_set(
    tmp_path: Path, keys: tuple[bytes, bytes, str]
) -> None:
    """The issue 14 attack: a still-trusted signing key retires every other key and jumps the
    key-set version. Key sets are signed by the root key only (tests/unit/test_keyset.py)."""
    priv, pub, kid = keys
    other_pub = generate_keypair()[1]
    root_pub = generate_keypair()[1]
    store = open_store(tmp_path, ManualClock(NOW))
    Keyring([pub, other_pub]).save(store)
    rej = Rejections()
    tp = TrustPolicy(Keyring.load(store), store, kiosk_id=KIOSK, on_reject=rej, root_key=root_pub)
    for env in (
        versioned(priv, kid, "keys", 2**63 - 1, retire=[key_id(other_pub)]),  # the old format
        versioned(priv, kid, "keys", 2, keys=[b64(pub)]),  # a full set, but not root-signed
    ):
        with pytest.raises(TrustError) as ei:
            tp.accept_keys(env)
        assert ei.value.reason is TrustReason.NOT_ROOT_SIGNED
    assert rej.seen == [("keys", TrustReason.NOT_ROOT_SIGNED)] * 2  # each one an alarm
    assert sorted(Keyring.load(store).ids()) == sorted([kid, key_id(other_pub)])
    assert tp.applied_version("keys") == 0
    store.close()


def test_versions_move_by_bounded_steps(store: Store, keys: tuple[bytes, bytes, str]) -> None:
    priv, pub, kid = keys
    rej = Rejections()
    tp = policy(store, pub, rej)
    tp.accept_versioned("catalog", versioned(priv, kid, "catalog", 5))
    for v in (5 + MAX_VERSION_STEP + 1, 2**63 - 1):
        with pytest.raises(TrustError) as ei:
            tp.accept_versioned("catalog", versioned(priv, kid, "catalog", v))
        assert ei.value.reason is TrustReason.VERSION_JUMP
    assert tp.applied_version("catalog") == 5
    tp.accept_versioned("catalog", versioned(priv, kid, "catalog", 5 + MAX_VERSION_STEP))
    assert tp.applied_version("catalog") == 5 + MAX_VERSION_STEP
    # a first version is free (a kiosk joins a province whose catalog is at v12345), but never
    # past 2^53 - 1
    tp.accept_versioned("prices", versioned(priv, kid, "prices", 12_345))
    with pytest.raises(TrustError) as ei:
        tp.accept_versioned("config", versioned(priv, kid, "config", MAX_VERSION + 1))
    assert ei.value.reason is TrustReason.VERSION_JUMP
    tp.accept_versioned("config", versioned(priv, kid, "config", MAX_VERSION))
    assert [r for _, r in rej.seen] == [TrustReason.VERSION_JUMP] * 3  # each one an alarm


def command(priv: bytes, kid: str, nonce: str, expires_at: float, **extra: Any) -> dict[str, Any]:
    body = {
        "kiosk_id": KIOSK,
        "command": "lock_sales",
        "nonce": nonce,
        "issued_at": expires_at - 60,
        "expires_at": expires_at,
        **extra,
    }
    return sign_envelope(priv, kid, body)


def test_commands_valid_expired_replayed_even_after_reopen(
    tmp_path: Path, keys: tuple[bytes, bytes, str]
) -> None:
    priv, pub, kid = keys
    store = open_store(tmp_path, ManualClock(NOW))
    rej = Rejections()
    tp = policy(store, pub, rej)
    body = tp.accept_command(command(priv, kid, "nonce-0001", NOW + 60), now=NOW)
    assert body["command"] == "lock_sales"
    with pytest.raises(TrustError) as ei:
        tp.accept_command(command(priv, kid, "nonce-0001", NOW + 60), now=NOW + 1)
    assert ei.value.reason is TrustReason.REPLAYED
    with pytest.raises(TrustError) as ei:
        tp.accept_command(command(priv, kid, "nonce-0002", NOW - 1), now=NOW)
    assert ei.value.reason is TrustReason.EXPIRED
    with pytest.raises(TrustError) as ei:
        tp.accept_command(command(priv, kid, "nonce-0003", NOW + 3 * 86400), now=NOW)
    assert ei.value.reason is TrustReason.TOO_LONG_LIVED
    with pytest.raises(TrustError) as ei:
        tp.accept_command(command(priv, kid, "nonce-0004", NOW + 60, kiosk_id="X"), now=NOW)
    assert ei.value.reason is TrustReason.WRONG_KIOSK
    with pytest.raises(TrustError) as ei:
        tp.accept_command(command(priv, kid, "short", NOW + 60), now=NOW)
    assert ei.value.reason is TrustReason.MALFORMED
    assert [r for _, r in rej.seen] == [
        TrustReason.REPLAYED,
        TrustReason.EXPIRED,
        TrustReason.TOO_LONG_LIVED,
        TrustReason.WRONG_KIOSK,
        TrustReason.MALFORMED,
    ]
    store.close()
    store = open_store(tmp_path, ManualClock(NOW))  # a restart does not forget nonces
    tp = policy(store, pub)
    with pytest.raises(TrustError) as ei:
        tp.accept_command(command(priv, kid, "nonce-0001", NOW + 60), now=NOW + 2)
    assert ei.value.reason is TrustReason.REPLAYED
    store.close()


def test_nonce_store_is_bounded(store: Store, keys: tuple[bytes, bytes, str]) -> None:
    priv, pub, kid = keys
    tp = TrustPolicy(Keyring([pub]), store, kiosk_id=KIOSK, nonce_store_max=3)
    for i in range(3):
        tp.accept_command(command(priv, kid, f"nonce-{i:04d}", NOW + 60), now=NOW)
    with pytest.raises(TrustError) as ei:
        tp.accept_command(command(priv, kid, "nonce-0009", NOW + 60), now=NOW)
    assert ei.value.reason is TrustReason.NONCE_STORE_FULL
    # long after they expired (beyond the max TTL margin) old nonces are forgotten
    later = NOW + 3 * 86400
    tp.accept_command(command(priv, kid, "nonce-0009", later + 60), now=later)
    with store.read() as c:
        assert c.execute("SELECT COUNT(*) FROM sync_nonce").fetchone() == (1,)


def test_garbage_never_raises_anything_but_trust_error(
    store: Store, keys: tuple[bytes, bytes, str]
) -> None:
    priv, pub, kid = keys
    tp = policy(store, pub)
    junk: list[Any] = [
        None,
        1,
        "x",
        [],
        {},
        {"kid": 1, "body": {}, "sig": "x"},
        json.loads('{"kid": "k", "body": {"a": [1, 2]}, "sig": "AAAA"}'),
        sign_envelope(priv, kid, {"command": 5}),
        sign_envelope(priv, kid, {"command": "x", "nonce": "n" * 200, "expires_at": NOW + 1}),
        sign_envelope(priv, kid, {"command": "x", "nonce": "n" * 20, "expires_at": "soon"}),
        sign_envelope(priv, kid, {"command": "x", "nonce": "n" * 20, "expires_at": True}),
    ]
    for j in junk:
        with pytest.raises(TrustError):
            tp.accept_command(j, now=NOW)
        with pytest.raises(TrustError):
            tp.accept_versioned("config", j)
