"""Service PIN: PBKDF2 hashes, constant-time check, 5 wrong PINs lock for 5 minutes."""

from __future__ import annotations

import pytest

from kiosk.config import RULES
from kiosk.core.pin import LOCKOUT_S, MAX_FAILURES, PinLockout, hash_pin, verify_pin


def test_hash_format_and_verify() -> None:
    h = hash_pin("4321", iterations=1000)
    algo, iters, salt, digest = h.split("$")
    assert (algo, iters) == ("pbkdf2_sha256", "1000")
    assert len(bytes.fromhex(salt)) == 16 and len(bytes.fromhex(digest)) == 32
    assert RULES["ui.service_pin_hash"](h) is None  # the config accepts it
    assert verify_pin("4321", h)
    assert not verify_pin("4322", h)
    assert hash_pin("4321", iterations=1000) != h  # random salt


@pytest.mark.parametrize(
    "bad", ["", "plain", "pbkdf2_sha256$x$00$00", "md5$1$00$00", "pbkdf2_sha256$0$00$00"]
)
def test_malformed_hash_never_matches(bad: str) -> None:
    assert not verify_pin("1234", bad)


def test_bad_pins_rejected() -> None:
    for pin in ("12", "abcd", "1234567890123"):
        with pytest.raises(ValueError):
            hash_pin(pin)


def test_lockout_after_five_wrong() -> None:
    lock = PinLockout()
    t = 1000.0
    for i in range(MAX_FAILURES - 1):
        lock = lock.record(False, t + i)
        assert not lock.locked(t + i)
        assert lock.tries_left(t + i) == MAX_FAILURES - 1 - i
    lock = lock.record(False, t + 10)
    assert lock.locked(t + 10)
    assert lock.remaining_s(t + 10) == LOCKOUT_S == 300
    # while locked, even the right PIN does not unlock
    assert lock.record(True, t + 100).locked(t + 100)
    assert lock.locked(t + 10 + LOCKOUT_S - 0.1)
    assert not lock.locked(t + 10 + LOCKOUT_S)
    assert lock.tries_left(t + 10 + LOCKOUT_S) == MAX_FAILURES


def test_success_resets_failures() -> None:
    lock = PinLockout().record(False, 0).record(False, 1).record(True, 2)
    assert lock == PinLockout()
