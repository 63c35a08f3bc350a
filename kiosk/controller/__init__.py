"""The controller: a thin shell around the pure core (`kiosk.core.sale`, `kiosk.core.session`,
`kiosk.core.service`, `kiosk.core.revend`). `Controller` is in `shell`; each job of the shell
has its own module (see `shell`'s docstring and docs/architecture.md). This package re-exports
what the rest of the kiosk uses.
"""

from kiosk.controller.integrity import ACCEPTED_DAMAGE, VERIFIED_THROUGH
from kiosk.controller.monitor import CHECKPOINT_EVERY_S, WAL_HEADROOM_BYTES
from kiosk.controller.persist import ANCHOR, BAD_SLOTS, RecordSink
from kiosk.controller.shell import Controller
from kiosk.controller.technician import SALES_LOCKED
from kiosk.core.service import ServiceFacts, disk_low, out_of_service_reasons

__all__ = [
    "ACCEPTED_DAMAGE",
    "ANCHOR",
    "BAD_SLOTS",
    "CHECKPOINT_EVERY_S",
    "SALES_LOCKED",
    "VERIFIED_THROUGH",
    "WAL_HEADROOM_BYTES",
    "Controller",
    "RecordSink",
    "ServiceFacts",
    "disk_low",
    "out_of_service_reasons",
]
