"""systemd integration: the sd_notify protocol and a health-gated watchdog.

Owns: READY=1 / STATUS= / STOPPING=1 / WATCHDOG=1 datagrams to $NOTIFY_SOCKET (path or
abstract-namespace "@name"), and `Watchdog`, which pets systemd at half of $WATCHDOG_USEC only
while every health check it was given says healthy. Never decides what "healthy" means (callers
pass the checks: UI loop heartbeat fresh, board link online, store writable) and never raises
when systemd is absent: without $NOTIFY_SOCKET every call is a no-op that returns False.
No dependency beyond the standard library.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping

from kiosk.log import log_event

__all__ = [
    "HealthCheck",
    "Watchdog",
    "notify",
    "notify_ready",
    "notify_status",
    "notify_stopping",
    "notify_watchdog",
    "watchdog_interval",
]

log = logging.getLogger("kiosk.systemd")

HealthCheck = Callable[[], bool]


def _address(env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    addr = env.get("NOTIFY_SOCKET", "")
    if not addr or not (addr.startswith("/") or addr.startswith("@")):
        return None
    return "\0" + addr[1:] if addr.startswith("@") else addr


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send one sd_notify datagram; True when sent, False when there is no systemd to tell."""
    addr = _address(env)
    if addr is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(message.encode("utf-8"))
    except OSError as e:
        log_event(log, "sd_notify_failed", _level=logging.WARNING, error=str(e))
        return False
    return True


def notify_ready(status: str | None = None) -> bool:
    """Tell systemd start-up is complete (Type=notify units are "active" only after this)."""
    return notify("READY=1" + (f"\nSTATUS={status}" if status else ""))


def notify_status(text: str) -> bool:
    """A one-line status shown by `systemctl status kiosk`."""
    return notify(f"STATUS={text}")


def notify_stopping() -> bool:
    return notify("STOPPING=1")


def notify_watchdog() -> bool:
    return notify("WATCHDOG=1")


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pets (half of $WATCHDOG_USEC), None when the watchdog is off or not ours."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    return usec / 2 / 1_000_000 if usec > 0 else None


class Watchdog:
    """Pets systemd's watchdog only while all named health checks return True.

    `checks` maps a name to a callable; a check that raises counts as unhealthy. When a check
    fails, no WATCHDOG=1 is sent, so systemd restarts the service after WatchdogSec
    (Restart=on-failure). `tick()` is the pure step (usable from any loop); `start()` runs it on
    a daemon thread every `interval` seconds (default: half of $WATCHDOG_USEC; no thread when the
    watchdog is off).
    """

    def __init__(
        self,
        checks: Mapping[str, HealthCheck],
        interval: float | None = None,
        *,
        send: Callable[[], bool] = notify_watchdog,
    ) -> None:
        self.checks = dict(checks)
        self.interval = watchdog_interval() if interval is None else interval
        self._send = send
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_unhealthy: list[str] = []
        self.pets = 0

    def add(self, name: str, check: HealthCheck) -> None:
        self.checks[name] = check

    def unhealthy(self) -> list[str]:
        bad = []
        for name, check in self.checks.items():
            try:
                ok = bool(check())
            except Exception:
                ok = False
            if not ok:
                bad.append(name)
        return bad

    def tick(self) -> bool:
        """Run the checks; send WATCHDOG=1 if all pass. True when a pet was sent."""
        bad = self.unhealthy()
        if bad != self.last_unhealthy:
            if bad:
                log_event(log, "watchdog_withheld", _level=logging.ERROR, unhealthy=",".join(bad))
                notify_status("unhealthy: " + ", ".join(bad))
            else:
                log_event(log, "watchdog_healthy")
            self.last_unhealthy = bad
        if bad:
            return False
        sent = self._send()
        if sent:
            self.pets += 1
        return sent

    def start(self) -> Watchdog:
        if self.interval is None or self.interval <= 0 or self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self.interval is not None
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
