"""What the sync bridge needs from the kiosk it serves: the `KioskPort` protocol.

Owns: the shape of that dependency, nothing else. The sync layer sits below the composition
root (kiosk/app.py), the controller and the hardware (import-linter contract `layers`), so it
names what it uses here instead of importing them; `kiosk.app.App` is the one implementation.
Every member is read when a message arrives or a report is due, never at construction, so the
app may build its controller after the bridge (the controller's hooks are the bridge's methods).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from kiosk.clock import Clock
from kiosk.config import KioskConfig
from kiosk.contract import Intent, ViewState
from kiosk.core.payment import PaymentConfirmation, PaymentStatusReply
from kiosk.store import Store
from kiosk.sync.outbox import Outbox

__all__ = ["CabinetPort", "ControllerPort", "KioskPort", "LinkPort"]


class ControllerPort(Protocol):
    """The controller, as the province link drives it (all of it queued to its inbox)."""

    def submit_confirmation(self, c: PaymentConfirmation | Mapping[str, Any]) -> None: ...

    def submit_status_reply(self, reply: PaymentStatusReply) -> None: ...

    def reload(self) -> None: ...

    def post(self, intent: Intent) -> None: ...

    def view(self) -> ViewState: ...


class LinkPort(Protocol):
    """The serial link, as reported state and telemetry show it."""

    @property
    def online(self) -> bool: ...

    def counters(self) -> Mapping[str, int]: ...


class CabinetPort(Protocol):
    """The cabinet's slot routing, which follows an applied planogram."""

    def set_slot_map(self, slot_map: Mapping[int, tuple[int, int]]) -> None: ...


class KioskPort(Protocol):
    """The running kiosk (kiosk.app.App)."""

    @property
    def config(self) -> KioskConfig: ...

    @property
    def store(self) -> Store: ...

    @property
    def outbox(self) -> Outbox: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def controller(self) -> ControllerPort: ...

    @property
    def link(self) -> LinkPort: ...

    @property
    def board(self) -> CabinetPort: ...

    def update_report(self) -> Mapping[str, Any]:
        """The software update state for `reported`: running, pending, phase, last result."""
        ...

    def install_release(self, url: str) -> None:
        """Fetch, verify, install and stage the release at `url` in the background (an
        `install_release` command); the outcome shows as update steps."""
        ...

    def request_exit(self, code: int) -> None:
        """Leave the kiosk's run with `code` (a `restart_app` command)."""
        ...
