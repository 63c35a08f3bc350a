"""How many TLS handshakes per second the broker sustains (bench/bench_fleet.py).

`handshake_rate(port, certs, ca_file, seconds, mode)` runs `procs` spawn processes x `threads`
threads, each looping on one client certificate: TCP connect, TLS 1.2+ handshake with mutual
authentication against the kiosk listener, then with `mode="mqtt"` an MQTT 3.1.1 CONNECT, the
CONNACK, DISCONNECT (what a reconnecting kiosk costs the broker), with `mode="tls"` a close right
after the handshake (the bare TLS connect loop, the baseline). Each thread has its own
certificate, so no connection takes over another's session. Returns completed loops per second
(failures counted apart); the caller reads the broker's CPU over the same window.
"""

from __future__ import annotations

import multiprocessing
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HandshakeRun", "handshake_rate"]

# MQTT 3.1.1 CONNECT: protocol "MQTT" level 4, clean session, keepalive 60 s, empty client id
# (the broker uses the certificate CN: use_identity_as_username + use_username_as_clientid).
_CONNECT = bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 60, 0, 0])
_DISCONNECT = bytes([0xE0, 0])


@dataclass(frozen=True)
class HandshakeRun:
    mode: str
    seconds: float
    done: int
    failed: int
    broker_cpu_pct: float = 0.0  # of one core, over the same window

    @property
    def broker_ms_per_handshake(self) -> float:
        return 10 * self.broker_cpu_pct * self.seconds / self.done if self.done else 0.0

    @property
    def per_s(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


def _loop(
    port: int,
    cert: tuple[str, str],
    ca: str,
    mode: str,
    window: tuple[float, float],
    out: list[int],
) -> None:
    start, until = window
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert[0], cert[1])
    done = failed = 0
    time.sleep(max(0.0, start - time.monotonic()))
    while time.monotonic() < until:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                ctx.wrap_socket(raw, server_hostname="localhost") as s,
            ):
                if mode == "mqtt":
                    s.sendall(_CONNECT)
                    ack = s.recv(4)
                    if len(ack) < 4 or ack[0] != 0x20 or ack[3] != 0:
                        raise OSError(f"bad CONNACK {ack!r}")
                    s.sendall(_DISCONNECT)
            done += 1
        except OSError:
            failed += 1
    out[0] += done
    out[1] += failed


def _proc(
    port: int,
    certs: list[tuple[str, str]],
    ca: str,
    mode: str,
    window: tuple[float, float],
    q: object,
) -> None:
    out = [0, 0]
    threads = [threading.Thread(target=_loop, args=(port, c, ca, mode, window, out)) for c in certs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    q.put(tuple(out))  # type: ignore[attr-defined]


def handshake_rate(
    port: int,
    certs: list[tuple[Path, Path]],
    ca_file: Path,
    seconds: float,
    mode: str = "mqtt",
    procs: int = 2,
    broker_pid: int | None = None,
) -> HandshakeRun:
    """Loop for `seconds` over `certs` (one thread each, split over `procs` processes)."""
    if mode not in ("mqtt", "tls"):
        raise ValueError(f"mode must be mqtt or tls, got {mode!r}")
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    pairs = [(str(c), str(k)) for c, k in certs]
    start_in = 2.0  # let the processes start before the window opens
    start = time.monotonic() + start_in  # CLOCK_MONOTONIC is system-wide on Linux
    window = (start, start + seconds)
    ps = [
        ctx.Process(target=_proc, args=(port, pairs[i::procs], str(ca_file), mode, window, q))
        for i in range(procs)
    ]
    for p in ps:
        p.start()
    cpu = 0.0
    if broker_pid is not None:
        from kiosk.sim.fleet_world import proc_cpu_s

        time.sleep(max(0.0, start - time.monotonic()))
        c0 = proc_cpu_s(broker_pid)
        time.sleep(max(0.0, start + seconds - time.monotonic()))
        cpu = 100 * (proc_cpu_s(broker_pid) - c0) / seconds
    done = failed = 0
    for _ in ps:
        d, f = q.get(timeout=seconds + 120)
        done += d
        failed += f
    for p in ps:
        p.join(10)
    return HandshakeRun(mode, seconds, done, failed, cpu)
