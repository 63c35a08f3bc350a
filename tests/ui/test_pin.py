"""Service PIN: PBKDF2 hashes, 6 to 12 digits, constant-time check, the demo PIN, and the
lockout: 2 wrong PINs free, then 30 s doubling up to 15 min, kept across a restart."""

from __future__ import annotations

import pytest

from kiosk.config import RULES
from kiosk.core.pin import (
    DEMO_PIN,
    DEMO_PIN_HASH,
    FIRST_DELAY_S,
    MAX_DELAY_S,
    PinLockout,
    delay_after,
    hash_pin,
    is_demo_pin_hash,
    verify_pin,
)


def test_hash_format_and_verify() -> None:
    h = hash_pin("432198", iterations=1000)
    algo, iters, salt, digest = h.split("$")
    assert (algo, iters) == ("pbkdf2_sha256", "1000")
    assert len(bytes.fromhex(salt)) == 16 and len(bytes.fromhex(digest)) == 32
    assert RULES["ui.service_pin_hash"](h) is None  # the config accepts it
    assert verify_pin("432198", h)
    assert not verify_pin("432199", h)
    assert hash_pin("432198", iterations=1000) != h  # random salt


@pytest.mark.parametrize(
    "bad", ["", "plain", "pbkdf2_sha256$x$00$00", "md5$1$00$00", "pbkdf2_sha256$0$00$00"]
)
def test_malformed_hash_never_matches(bad: str) -> None:
    assert not verify_pin("123456", bad)


@pytest.mark.parametrize("pin", ["12", "1234", "12345", "abcdef", "1234567890123", "１２３４５６"])
def test_pins_shorter_than_six_digits_are_refused(pin: str) -> None:
    with pytest.raises(ValueError, match="6 to 12 digits"):
        hash_pin(pin)


def test_a_hash_of_a_four_digit_pin_no_longer_opens_the_menu() -> None:
    """Made by an older version: the kiosk cannot tell from the hash, so the keypad refuses
    every PIN under 6 digits."""
    import hashlib

    old = "pbkdf2_sha256$1000$00$" + hashlib.pbkdf2_hmac("sha256", b"2468", b"\0", 1000).hex()
    assert not verify_pin("2468", old)


def test_demo_pin() -> None:
    assert len(DEMO_PIN) >= 6 and verify_pin(DEMO_PIN, DEMO_PIN_HASH)
    assert is_demo_pin_hash(DEMO_PIN_HASH)
    assert is_demo_pin_hash(hash_pin(DEMO_PIN, iterations=2000))  # any salt
    assert not is_demo_pin_hash(hash_pin("864209", iterations=1000))


def test_delays_grow_and_are_capped() -> None:
    assert [delay_after(n) for n in range(1, 9)] == [0, 0, 30, 60, 120, 240, 480, 900]
    assert delay_after(10_000) == MAX_DELAY_S == 900


def test_lockout_after_wrong_pins() -> None:
    lock, t = PinLockout(), 1000.0
    lock = lock.failed(t).failed(t + 1)
    assert not lock.locked(t + 1) and lock.tries_left(t + 1) == 0
    lock = lock.failed(t + 2)
    assert lock.locked(t + 2) and lock.remaining_s(t + 2) == FIRST_DELAY_S
    assert not lock.locked(t + 2 + FIRST_DELAY_S)
    lock = lock.failed(t + 40)
    assert lock.remaining_s(t + 40) == 2 * FIRST_DELAY_S
    assert lock.succeeded() == PinLockout()


def test_a_wrong_pin_reported_while_locked_still_counts() -> None:
    lock = PinLockout(failures=5, locked_until=1000.0)
    after = lock.failed(900.0)
    assert after.failures == 6 and after.locked_until == 900.0 + delay_after(6)


def test_clock_set_back_cannot_lengthen_the_lock() -> None:
    lock = PinLockout(failures=3, locked_until=10_000_000.0)  # written before the clock jumped
    assert lock.remaining_s(0.0) == 30.0
    assert lock.normalized(0.0) == PinLockout(3, 30.0)


def test_json_round_trip_and_garbage() -> None:
    lock = PinLockout(4, 123.5)
    assert PinLockout.from_json(lock.to_json()) == lock
    for bad in (
        None,
        [],
        {"failures": "3"},
        {"failures": -1},
        {"failures": 1, "locked_until": "x"},
    ):
        assert PinLockout.from_json(bad) is None
