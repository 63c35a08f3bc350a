"""The province's check of the signed ledger heads on sale records (kiosk.sync.ledger_head).

A sale record of a kiosk whose certificate the province knows must carry a `head_sig` made
with that certificate's key: one that does not (forged by someone without the device key, e.g.
a hostile broker operator publishing on the kiosk's topic) is refused (not stored, not acked)
and raises the province alarm `bad_head_signature`. Every accepted sale record is a head the
province keeps (the events table): a later record for a sequence number it holds with another
hash is `ledger_conflict` (kiosk/sim/province.py), and a chain that does not link to the held
records shows in the chain report.

A kiosk whose certificate the province does not know (a test kiosk without one): records are
accepted unverified, and the first is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from kiosk.log import log_event
from kiosk.sync.ledger_head import HEAD_SIG_FIELD, verify_head

__all__ = ["DeviceKeyLookup", "HeadCheck"]

log = logging.getLogger("kiosk.sim.province")

DeviceKeyLookup = Callable[[str], ec.EllipticCurvePublicKey | None]


class HeadCheck:
    """`device_key(kiosk_id)`: the public key of the kiosk's current certificate, or None."""

    def __init__(self, device_key: DeviceKeyLookup | None) -> None:
        self.device_key = device_key
        self._unknown_logged: set[str] = set()

    def problem(self, kiosk_id: str, record: Mapping[str, Any]) -> str | None:
        """Why this sale record (the outbox record's `body`) must be refused, or None."""
        key = self.device_key(kiosk_id) if self.device_key is not None else None
        if key is None:
            if kiosk_id not in self._unknown_logged:
                self._unknown_logged.add(kiosk_id)
                log_event(log, "province.head_unverified", kiosk=kiosk_id)
            return None
        if HEAD_SIG_FIELD not in record:
            return "sale record without head_sig from a kiosk with a known device key"
        if not verify_head(key, kiosk_id, dict(record)):
            return "head_sig does not verify with the kiosk's certificate"
        return None
