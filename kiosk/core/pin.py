"""The technician PIN: PBKDF2-SHA256 hashes and the lockout after repeated wrong PINs.

Owns: the hash format `pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>` (what ui.service_pin_hash
holds), constant-time verification, and the pure lockout rule (5 wrong -> locked 5 minutes),
with time passed in. Never stores or logs a PIN, never reads a clock. Shared by the service
menu (kiosk/ui) and kiosk-provision (provisioning/init.py), so it lives in the core, not the UI;
the only thing it takes from the OS is a random salt when none is given.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass

__all__ = [
    "DEFAULT_ITERATIONS",
    "LOCKOUT_S",
    "MAX_FAILURES",
    "PinLockout",
    "hash_pin",
    "verify_pin",
]

DEFAULT_ITERATIONS = 200_000
MAX_FAILURES = 5
LOCKOUT_S = 300.0
_FORMAT = re.compile(r"^pbkdf2_sha256\$(\d+)\$([0-9a-f]+)\$([0-9a-f]+)$")


def hash_pin(pin: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None) -> str:
    if not pin.isdigit() or not 4 <= len(pin) <= 12:
        raise ValueError("a service PIN is 4 to 12 digits")
    if iterations < 1:
        raise ValueError("iterations must be positive")
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode("ascii"), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def verify_pin(pin: str, encoded: str) -> bool:
    """True when `pin` matches; a malformed hash never matches."""
    m = _FORMAT.match(encoded)
    if m is None:
        return False
    iterations, salt, want = int(m[1]), bytes.fromhex(m[2]), bytes.fromhex(m[3])
    if iterations < 1 or not want:
        return False
    got = hashlib.pbkdf2_hmac("sha256", pin.encode("utf-8"), salt, iterations, dklen=len(want))
    return hmac.compare_digest(got, want)


@dataclass(frozen=True, slots=True)
class PinLockout:
    """Consecutive wrong PINs and, once there are MAX_FAILURES, when the lock ends."""

    failures: int = 0
    locked_until: float | None = None  # monotonic seconds

    def locked(self, now: float) -> bool:
        return self.locked_until is not None and now < self.locked_until

    def remaining_s(self, now: float) -> float:
        return max(0.0, (self.locked_until or now) - now)

    def tries_left(self, now: float) -> int:
        return 0 if self.locked(now) else MAX_FAILURES - self.failures

    def record(self, ok: bool, now: float) -> PinLockout:
        """The state after an attempt at `now` (attempts while locked change nothing)."""
        if self.locked(now):
            return self
        if ok:
            return PinLockout()
        failures = (0 if self.locked_until is not None else self.failures) + 1
        if failures >= MAX_FAILURES:
            return PinLockout(failures=0, locked_until=now + LOCKOUT_S)
        return PinLockout(failures=failures)
