"""The technician PIN: PBKDF2-SHA256 hashes, the demo PIN, and the lockout after wrong PINs.

Owns: the hash format `pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>` (what
`[[service.technicians]] pin_hash` and the older `ui.service_pin_hash` hold), the PIN length
rule (6 to 12 digits), constant-time verification, the published demo PIN and its hash (refused
by a field config), and the pure lockout rule with time passed in: the first `FREE_FAILURES - 1`
wrong PINs in a row cost nothing, the `FREE_FAILURES`-th locks the menu for `FIRST_DELAY_S`, each
further one doubles the delay up to `MAX_DELAY_S`; only a right PIN starts the count again.
Never stores or logs a PIN, never reads a clock. Shared by the service menu (kiosk/ui), the
controller (which keeps the lockout in the store), the config (the demo PIN check) and
kiosk-provision; the only thing it takes from the OS is a random salt when none is given.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "DEFAULT_ITERATIONS",
    "DEMO_PIN",
    "DEMO_PIN_HASH",
    "FIRST_DELAY_S",
    "FREE_FAILURES",
    "MAX_DELAY_S",
    "MAX_PIN_DIGITS",
    "MIN_PIN_DIGITS",
    "PinLockout",
    "delay_after",
    "hash_pin",
    "is_demo_pin_hash",
    "pin_problem",
    "verify_pin",
]

DEFAULT_ITERATIONS = 200_000
MIN_PIN_DIGITS = 6
MAX_PIN_DIGITS = 12
FREE_FAILURES = 3  # the 3rd wrong PIN in a row starts the first delay
FIRST_DELAY_S = 30.0
MAX_DELAY_S = 900.0  # 15 minutes
_FORMAT = re.compile(r"^pbkdf2_sha256\$(\d+)\$([0-9a-f]+)\$([0-9a-f]+)$")

#: The demo and test PIN: published in the docs, so a field (mqtts://) config refuses it.
DEMO_PIN = "246813"
#: `hash_pin(DEMO_PIN, iterations=1000, salt=b"kiosk-demo")`: the demo config's technician.
DEMO_PIN_HASH = (
    "pbkdf2_sha256$1000$6b696f736b2d64656d6f$"
    "6a8a472237bed55f376814b9f5803322c144d0d864ae2a08636603aec5591c91"
)


def pin_problem(pin: str) -> str | None:
    """Why `pin` cannot be a service PIN (None: it can)."""
    if not pin.isascii() or not pin.isdigit():
        return f"a service PIN is {MIN_PIN_DIGITS} to {MAX_PIN_DIGITS} digits (0-9 only)"
    if not MIN_PIN_DIGITS <= len(pin) <= MAX_PIN_DIGITS:
        return f"a service PIN is {MIN_PIN_DIGITS} to {MAX_PIN_DIGITS} digits, not {len(pin)}"
    return None


def hash_pin(pin: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None) -> str:
    problem = pin_problem(pin)
    if problem is not None:
        raise ValueError(problem)
    if iterations < 1:
        raise ValueError("iterations must be positive")
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode("ascii"), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def _matches(pin: str, encoded: str) -> bool:
    m = _FORMAT.match(encoded)
    if m is None:
        return False
    iterations, salt, want = int(m[1]), bytes.fromhex(m[2]), bytes.fromhex(m[3])
    if iterations < 1 or not want:
        return False
    got = hashlib.pbkdf2_hmac("sha256", pin.encode("utf-8"), salt, iterations, dklen=len(want))
    return hmac.compare_digest(got, want)


def verify_pin(pin: str, encoded: str) -> bool:
    """True when `pin` matches; a malformed hash never matches, nor a PIN shorter than
    MIN_PIN_DIGITS (a hash made from a 4-digit PIN by an older version no longer opens the
    menu: the technician sets a new PIN with `kiosk-provision pin`)."""
    return pin_problem(pin) is None and _matches(pin, encoded)


def is_demo_pin_hash(encoded: str) -> bool:
    """Is this the hash of the published demo PIN (whatever its salt and iteration count)?
    One PBKDF2 run at the hash's own cost. (The older 4-digit demo PIN needs no check: no PIN
    under 6 digits opens the menu.)"""
    return _matches(DEMO_PIN, encoded)


def delay_after(failures: int) -> float:
    """The lock after `failures` wrong PINs in a row: 0, then 30 s, doubling, at most 15 min."""
    if failures < FREE_FAILURES:
        return 0.0
    return min(MAX_DELAY_S, FIRST_DELAY_S * 2.0 ** min(failures - FREE_FAILURES, 16))


@dataclass(frozen=True, slots=True)
class PinLockout:
    """Wrong PINs in a row and, once they cost a delay, when it ends (kiosk seconds, the
    controller's wall clock: the lockout survives a restart)."""

    failures: int = 0
    locked_until: float | None = None

    def locked(self, now: float) -> bool:
        return self.remaining_s(now) > 0.0

    def remaining_s(self, now: float) -> float:
        """Seconds left, never more than the delay itself (a clock set back cannot lengthen
        the lock beyond it)."""
        if self.locked_until is None:
            return 0.0
        return max(0.0, min(self.locked_until - now, delay_after(self.failures)))

    def tries_left(self, now: float) -> int:
        """Wrong PINs still free of a delay (0 while locked)."""
        return 0 if self.locked(now) else max(0, FREE_FAILURES - 1 - self.failures)

    def failed(self, now: float) -> PinLockout:
        """After a wrong PIN checked at `now`. One reported while locked (it cannot be, but
        two attempts may cross) still counts."""
        failures = self.failures + 1
        delay = delay_after(failures)
        if delay <= 0.0:
            return PinLockout(failures=failures)
        until = now + delay
        if self.locked(now) and self.locked_until is not None:
            until = max(until, self.locked_until)
        return PinLockout(failures=failures, locked_until=until)

    def succeeded(self) -> PinLockout:
        return PinLockout()

    def normalized(self, now: float) -> PinLockout:
        """The same lock with its end no later than `now` + its delay (after a clock jump)."""
        if self.locked_until is None:
            return self
        return PinLockout(self.failures, min(self.locked_until, now + delay_after(self.failures)))

    def to_json(self) -> dict[str, float | int | None]:
        return {"failures": self.failures, "locked_until": self.locked_until}

    @classmethod
    def from_json(cls, obj: object) -> PinLockout | None:
        """Read back `to_json`; None when `obj` is not one."""
        if not isinstance(obj, Mapping):
            return None
        failures, until = obj.get("failures"), obj.get("locked_until")
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
            return None
        if until is not None and (isinstance(until, bool) or not isinstance(until, int | float)):
            return None
        return cls(failures, None if until is None else float(until))
