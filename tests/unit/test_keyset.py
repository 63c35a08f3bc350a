"""Key sets signed by the province root key (kiosk.sync.keyset): the rules, one by one."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiosk.clock import ManualClock
from kiosk.store import Store, open_store
from kiosk.sync.acks import AckVerifier, SignedTime, sign_ack
from kiosk.sync.keyset import (
    KEYSET_DOMAIN,
    MAX_KEYS,
    key_set_body,
    sign_key_set,
)
from kiosk.sync.signing import (
    ENVELOPE_DOMAIN,
    MAX_VERSION_STEP,
    Keyring,
    TrustError,
    TrustPolicy,
    TrustReason,
    generate_keypair,
    key_id,
    sign_envelope,
)

NOW = 1_790_000_000.0
KIOSK = "AH-341524-0007"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Pair:
    def __init__(self) -> None:
        self.priv, self.pub = generate_keypair()
        self.kid = key_id(self.pub)


class World:
    """A store whose keyring holds `old`, a pinned `root`, and the rejections seen."""

    def __init__(self, path: Path, *, pinned: bool = True) -> None:
        self.path = path
        self.root, self.old, self.new = Pair(), Pair(), Pair()
        self.store = open_store(path, ManualClock(NOW))
        Keyring([self.old.pub]).save(self.store)
        self.rejected: list[tuple[str, TrustReason]] = []
        self.pinned = pinned
        self.policy = self.reopen_policy()

    def reopen_policy(self) -> TrustPolicy:
        return TrustPolicy(
            Keyring.load(self.store),
            self.store,
            kiosk_id=KIOSK,
            on_reject=lambda what, e: self.rejected.append((what, e.reason)),
            clock=ManualClock(NOW),
            root_key=self.root.pub if self.pinned else None,
        )

    def key_set(self, version: int, *keys: Pair, signer: Pair | None = None) -> dict[str, Any]:
        body = key_set_body(version, [k.pub for k in keys], int(NOW))
        return sign_key_set((signer or self.root).priv, body)

    def refused(self, env: object) -> TrustReason:
        with pytest.raises(TrustError) as ei:
            self.policy.accept_keys(env)
        return ei.value.reason

    def catalog(self, signer: Pair, version: int) -> dict[str, Any]:
        return sign_envelope(signer.priv, signer.kid, {"name": "catalog", "version": version})


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.store.close()


def test_a_root_signed_set_replaces_the_keyring_and_the_old_key_is_dead_at_once(
    world: World,
) -> None:
    w = world
    w.policy.accept_versioned("catalog", w.catalog(w.old, 1))
    ring = w.policy.accept_keys(w.key_set(1, w.new))
    assert ring.ids() == [w.new.kid] and w.policy.keyring.ids() == [w.new.kid]
    with pytest.raises(TrustError) as ei:  # the retired key signs nothing any more
        w.policy.accept_versioned("catalog", w.catalog(w.old, 2))
    assert ei.value.reason is TrustReason.UNKNOWN_KEY
    # and it cannot bring itself back: only the root signs key sets
    assert w.refused(w.key_set(2, w.old, signer=w.old)) is TrustReason.NOT_ROOT_SIGNED
    w.policy.accept_versioned("catalog", w.catalog(w.new, 2))
    # persisted with its version, in the same store: a restart keeps it
    w.store.close()
    w.store = open_store(w.path, ManualClock(NOW))
    tp = w.reopen_policy()
    assert tp.keyring.ids() == [w.new.kid] and tp.applied_version("keys") == 1


def test_acks_are_verified_with_the_key_set_in_force(world: World) -> None:
    """The ack verifier reads the policy's keyring at each ack (as SyncBridge wires it): once
    a root-signed set is applied, the new key's acks verify and the retired key's do not."""
    w = world
    acks = AckVerifier(KIOSK, lambda: w.policy.keyring, SignedTime(w.store))
    assert acks.verify(sign_ack(w.old.priv, w.old.kid, KIOSK, [("e1", 1)], int(NOW))).records
    with pytest.raises(TrustError) as ei:  # not yet trusted
        acks.verify(sign_ack(w.new.priv, w.new.kid, KIOSK, [("e2", 2)], int(NOW)))
    assert ei.value.reason is TrustReason.UNKNOWN_KEY
    w.policy.accept_keys(w.key_set(1, w.new))
    got = acks.verify(sign_ack(w.new.priv, w.new.kid, KIOSK, [("e2", 2)], int(NOW) + 1))
    assert got.records == [("e2", 2)] and got.kid == w.new.kid
    with pytest.raises(TrustError) as ei:
        acks.verify(sign_ack(w.old.priv, w.old.kid, KIOSK, [("e3", 3)], int(NOW) + 2))
    assert ei.value.reason is TrustReason.UNKNOWN_KEY


def test_two_step_rotation_has_no_window_for_the_old_key(world: World) -> None:
    w = world
    w.policy.accept_keys(w.key_set(1, w.old, w.new))  # step 1: both valid
    assert w.policy.keyring.ids() == sorted([w.old.kid, w.new.kid])
    # between the steps the old key is still a signing key, yet it cannot retire the new one,
    # nor raise the key-set version
    assert w.refused(w.key_set(2, w.old, signer=w.old)) is TrustReason.NOT_ROOT_SIGNED
    forged = w.key_set(2, w.old, signer=w.old)
    forged["kid"] = w.root.kid  # claiming the root's key id does not help
    assert w.refused(forged) is TrustReason.BAD_SIGNATURE
    w.policy.accept_keys(w.key_set(2, w.new))  # step 2: the old key is gone
    assert w.policy.keyring.ids() == [w.new.kid]
    # the retained step-1 set, delivered again, is stale and changes nothing
    assert w.refused(w.key_set(1, w.old, w.new)) is TrustReason.STALE_VERSION
    assert w.policy.keyring.ids() == [w.new.kid]
    assert ("keys", TrustReason.STALE_VERSION) not in w.rejected  # routine: no alarm
    assert w.rejected == [
        ("keys", TrustReason.NOT_ROOT_SIGNED),
        ("keys", TrustReason.BAD_SIGNATURE),
    ]


def test_root_and_signing_keys_have_separate_duties(world: World) -> None:
    w = world
    # the root's signature on an ordinary message: refused, even though it verifies
    with pytest.raises(TrustError) as ei:
        w.policy.accept_versioned("catalog", w.catalog(w.root, 1))
    assert ei.value.reason is TrustReason.ROOT_KEY_MISUSE
    with pytest.raises(TrustError) as ei:
        w.policy.accept_command(
            sign_envelope(
                w.root.priv,
                w.root.kid,
                {
                    "kiosk_id": KIOSK,
                    "command": "open_door",
                    "nonce": "n" * 16,
                    "issued_at": NOW,
                    "expires_at": NOW + 60,
                },
            ),
            NOW,
        )
    assert ei.value.reason is TrustReason.ROOT_KEY_MISUSE
    # the root's key under the ordinary envelope domain does not make a key set
    body = key_set_body(1, [w.new.pub], int(NOW))
    assert w.refused(sign_envelope(w.root.priv, w.root.kid, body)) is TrustReason.BAD_SIGNATURE
    assert KEYSET_DOMAIN != ENVELOPE_DOMAIN
    # a set may not make the root a signing key
    assert w.refused(w.key_set(1, w.new, w.root)) is TrustReason.BAD_ROTATION
    assert w.policy.keyring.ids() == [w.old.kid] and w.policy.applied_version("keys") == 0


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"add": ["x"], "retire": []}, "deltas"),
        ({"retire": ["0" * 16]}, "deltas"),
        ({"keys": []}, "empty"),
        ({"keys": "abc"}, "not a list"),
        ({"keys": [1]}, "not strings"),
        ({"keys": ["not base64!"]}, "bad key"),
        ({"keys": [b64(b"\x01" * 31)]}, "31 bytes"),
        ({"keys": [b64(generate_keypair()[1]) for _ in range(MAX_KEYS + 1)]}, "too many"),
    ],
)
def test_malformed_sets_are_refused_and_change_nothing(
    world: World, body: dict[str, Any], why: str
) -> None:
    w = world
    env = sign_key_set(w.root.priv, {"name": "keys", "version": 1, **body})
    assert w.refused(env) is TrustReason.BAD_ROTATION, why
    assert w.policy.keyring.ids() == [w.old.kid] and Keyring.load(w.store).ids() == [w.old.kid]
    assert w.policy.applied_version("keys") == 0


def test_a_key_named_twice_and_a_wrong_name_are_refused(world: World) -> None:
    w = world
    assert w.refused(w.key_set(1, w.new, w.new)) is TrustReason.BAD_ROTATION
    wrong = sign_key_set(w.root.priv, {**key_set_body(1, [w.new.pub], 0), "name": "catalog"})
    assert w.refused(wrong) is TrustReason.WRONG_NAME
    assert w.refused({"kid": w.root.kid, "body": []}) is TrustReason.MALFORMED


def test_key_set_versions_move_by_bounded_steps(world: World) -> None:
    w = world
    w.policy.accept_keys(w.key_set(7, w.old, w.new))
    too_far = w.key_set(7 + MAX_VERSION_STEP + 1, w.new)
    assert w.refused(too_far) is TrustReason.VERSION_JUMP
    assert w.refused(w.key_set(2**63 - 1, w.new)) is TrustReason.VERSION_JUMP
    assert w.policy.keyring.ids() == sorted([w.old.kid, w.new.kid])
    w.policy.accept_keys(w.key_set(7 + MAX_VERSION_STEP, w.new))
    assert w.policy.applied_version("keys") == 7 + MAX_VERSION_STEP


def test_without_a_pinned_root_the_key_set_is_frozen(tmp_path: Path) -> None:
    w = World(tmp_path, pinned=False)
    try:
        assert w.refused(w.key_set(1, w.new)) is TrustReason.NO_ROOT_KEY
        assert w.refused(w.key_set(1, w.new, signer=w.old)) is TrustReason.NO_ROOT_KEY
        assert w.rejected == [("keys", TrustReason.NO_ROOT_KEY)] * 2  # an alarm each time
        assert w.policy.keyring.ids() == [w.old.kid]  # the provisioned key keeps working
        w.policy.accept_versioned("catalog", w.catalog(w.old, 1))
    finally:
        w.store.close()


def test_a_failing_store_write_leaves_the_old_keyring(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world

    def broken_save(self: Keyring, store: Store) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Keyring, "save", broken_save)
    assert w.refused(w.key_set(1, w.new)) is TrustReason.APPLY_FAILED
    assert w.policy.keyring.ids() == [w.old.kid] and w.policy.applied_version("keys") == 0
