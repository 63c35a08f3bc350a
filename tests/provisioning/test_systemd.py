"""kiosk.systemd: sd_notify over a real AF_UNIX datagram socket, and the health-gated watchdog."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk import systemd


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    d = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")  # AF_UNIX paths must be short
    path = os.path.join(d, "notify")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield s
    s.close()
    Path(path).unlink()
    os.rmdir(d)


def _drain(s: socket.socket, window: float) -> list[str]:
    got: list[str] = []
    s.settimeout(0.02)
    end = time.monotonic() + window
    while time.monotonic() < end:
        with contextlib.suppress(TimeoutError):
            got.append(s.recv(4096).decode())
    return got


def test_ready_status_watchdog(notify_socket: socket.socket) -> None:
    assert systemd.notify_ready("selling")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=selling"
    assert systemd.notify_watchdog()
    assert notify_socket.recv(4096) == b"WATCHDOG=1"
    assert systemd.notify_status("board offline")
    assert notify_socket.recv(4096) == b"STATUS=board offline"


def test_abstract_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"kiosk-test-{os.getpid()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(2)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify_ready()
        assert s.recv(4096) == b"READY=1"
    finally:
        s.close()


def test_no_systemd_is_a_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify_ready() is False
    assert systemd.watchdog_interval({}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None


def test_watchdog_stops_being_fed_when_the_board_link_is_dead(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "40000")  # pet every 20 ms
    health = {"ui": True, "board": True, "store": True}
    checks: dict[str, systemd.HealthCheck] = {
        k: functools.partial(health.__getitem__, k) for k in health
    }
    wd = systemd.Watchdog(checks).start()
    try:
        assert wd.interval == pytest.approx(0.02)
        healthy = _drain(notify_socket, 0.2)
        assert healthy.count("WATCHDOG=1") >= 3
        health["board"] = False
        time.sleep(0.05)  # a pet may be in flight
        _drain(notify_socket, 0.02)
        dead = _drain(notify_socket, 0.3)
        assert "WATCHDOG=1" not in dead
        assert wd.last_unhealthy == ["board"]
        health["board"] = True
        assert "WATCHDOG=1" in _drain(notify_socket, 0.2)
    finally:
        wd.stop()


def test_raising_check_counts_as_unhealthy() -> None:
    sent: list[int] = []

    def boom() -> bool:
        raise OSError("disk gone")

    def send() -> bool:
        sent.append(1)
        return True

    wd = systemd.Watchdog({"store": boom}, interval=1, send=send)
    assert wd.tick() is False and sent == []
    wd.checks["store"] = lambda: True
    assert wd.tick() is True and sent == [1]
