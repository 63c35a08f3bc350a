"""The service PIN hash for kiosk-provision: re-exports kiosk.ui.pin (one format, one owner).

Owns nothing itself: `pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>` is defined by
kiosk.ui.pin, which the service menu verifies against. Never stores or prints a PIN.
"""

from __future__ import annotations

from kiosk.ui.pin import DEFAULT_ITERATIONS, hash_pin, verify_pin

__all__ = ["DEFAULT_ITERATIONS", "hash_pin", "verify_pin"]
