"""Several links under one cabinet, seen as one: a protocol per board (`[[board]]` in the
config, docs/configuration.md), for example a VMC on one port, our boards on a second and Modbus
lock boards on a third.

Owns: starting, closing and watching the links together, with the interface the composition
root, the watchdog and telemetry use on a single link (``kiosk.hardware.board.BoardLink``):
online only while every link is online (each link carries a part of the planogram, and a part
that cannot sell takes the kiosk out of service just as one silent board does), one state
change per change of that whole, and the counters of all links added up.

Must never: know a protocol, or route anything to a board (``Cabinet`` does).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping

from kiosk.hardware.board import BoardLink
from kiosk.log import log_event

__all__ = ["LinkGroup"]

log = logging.getLogger("kiosk.hardware.links")


class LinkGroup:
    """The links of one cabinet by name (the port), started, watched and closed as one."""

    def __init__(self, links: Mapping[str, BoardLink]) -> None:
        if not links:
            raise ValueError("a link group needs at least one link")
        self.links: dict[str, BoardLink] = dict(links)
        self._lock = threading.Lock()
        self._states = dict.fromkeys(self.links, False)
        self._reasons = dict.fromkeys(self.links, "not started")
        self._reported: bool | None = None
        self._listeners: list[Callable[[bool, str], None]] = []
        for name, link in self.links.items():
            link.add_state_listener(self._watcher(name))

    def start(self) -> None:
        for link in self.links.values():
            link.start()

    def close(self) -> None:
        """Close every link, even when one of them fails to close."""
        for name, link in self.links.items():
            try:
                link.close()
            except Exception as e:  # the other links must close all the same
                log_event(log, "links.close_failed", logging.WARNING, port=name, error=repr(e))

    @property
    def online(self) -> bool:
        return all(link.online for link in self.links.values())

    def add_state_listener(self, fn: Callable[[bool, str], None]) -> None:
        self._listeners.append(fn)

    def counters(self) -> dict[str, int]:
        """Every link's counters added up by name (times in ms: the largest)."""
        out: dict[str, int] = {}
        for link in self.links.values():
            with contextlib.suppress(Exception):
                for key, value in link.counters().items():
                    if key.endswith("_ms"):
                        out[key] = max(out.get(key, 0), int(value))
                    else:
                        out[key] = out.get(key, 0) + int(value)
        return out

    def _watcher(self, name: str) -> Callable[[bool, str], None]:
        def changed(online: bool, reason: str) -> None:
            with self._lock:
                self._states[name] = online
                self._reasons[name] = "" if online else reason or "offline"
                whole = all(self._states.values())
                if whole == self._reported:
                    return
                self._reported = whole
                why = "; ".join(
                    f"{n}: {self._reasons[n]}" for n, up in self._states.items() if not up
                )
                for fn in self._listeners:  # under the lock: in the order of the changes
                    fn(whole, why)

        return changed
