"""Vend round trip over a real pty against the wire-time floor (docs/performance.md).

Starts `python -m kiosk.cli emulator --pty ... --baud B --time-scale 0.0001` (the motor takes
~0.2 ms, so motor time is ~0), opens it with the real SerialLink + SerialBoard (polling off, so
only the measured exchanges are on the wire) and measures, at 115200 and 9600 baud:

* STATUS -> STATUS_REPLY and OUTCOME -> OUTCOME_REPLY request/response round trips,
* the VEND -> TX_REPLY part of a vend (a VEND request sent through the link, fresh tx each time),
* a whole vend, `SerialBoard.vend()` from the call to its final outcome with polling on (as the
  kiosk runs it): VEND -> TX_REPLY, then POLL -> VEND_RESULT. Its floor is those four frames'
  bytes; its second baseline is the same exchanges written and read with bare pyserial over the
  same pty and emulator (what the pty and the emulator process cost any host).

Floor = (request bytes + response bytes) x 10 / baud: the time the bytes need on an 8N1 wire.
Goal: median <= 1.5 x the floor. Everything above the floor is the host, the pty and the
emulator process (it paces bytes at the baud rate in ~1 ms chunks, like a UART would).

Run: .venv/bin/python bench/bench_vend_roundtrip.py [N]   (N round trips per figure, 200)
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import serial

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kiosk.hardware.board import SerialBoard  # noqa: E402
from kiosk.hardware.link import SerialLink  # noqa: E402
from kiosk.hardware.protocol import (  # noqa: E402
    PROTOCOL_VERSION,
    Command,
    Frame,
    FrameDecoder,
    Identify,
    Message,
    Outcome,
    OutcomeQuery,
    OutcomeReply,
    Poll,
    Status,
    StatusReply,
    TxReply,
    VendRequest,
    VendResult,
    encode,
)

GOAL_RATIO = 1.5


def start_emulator(directory: Path, baud: int) -> tuple[subprocess.Popen[bytes], Path]:
    pty = directory / f"board{baud}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kiosk.cli",
            "emulator",
            "--pty",
            str(pty),
            "--baud",
            str(baud),
            "--time-scale",
            "0.0001",
            "--stock",
            "200",
            "--seed",
            "1",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60  # generous: a loaded machine starts Python slowly
    while not pty.is_symlink():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("emulator did not start")
        time.sleep(0.01)
    return proc, pty


def measure(n: int, ask: Callable[[int], Message]) -> list[float]:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        ask(i)
        times.append(time.perf_counter() - t0)
    return times


def row(name: str, times: list[float], wire_bytes: int, baud: int) -> tuple[str, bool]:
    floor = wire_bytes * 10 / baud
    med = statistics.median(times)
    p95 = sorted(times)[int(len(times) * 0.95) - 1]
    ratio = med / floor
    ok = ratio <= GOAL_RATIO
    return (
        f"{baud:>6} baud  {name:<22} median {med * 1000:7.2f} ms  p95 {p95 * 1000:7.2f} ms  "
        f"floor {floor * 1000:6.2f} ms ({wire_bytes} B)  ratio {ratio:4.2f}x  "
        f"goal <= {GOAL_RATIO}x: {'met' if ok else 'MISSED'}",
        ok,
    )


def bench_baud(directory: Path, baud: int, n: int) -> list[tuple[str, bool]]:
    proc, pty = start_emulator(directory, baud)
    link = SerialLink(str(pty), baud, poll_events=False)
    board = SerialBoard(link, 0)
    link.start()
    try:
        if not link.wait_online(0.1):
            board.identify()  # polling is off: our first request brings the link up
        for _ in range(10):  # warm up: SRTT, caches, the emulator's first frames
            link.request(0, Status())
        out = []

        def status(_: int) -> Message:
            r = link.request(0, Status())
            assert isinstance(r, StatusReply)
            return r

        sample = status(0)
        nbytes = len(encode(0, 0, Status())) + len(encode(0, 0, sample))
        out.append(row("STATUS round trip", measure(n, status), nbytes, baud))

        def outcome(i: int) -> Message:
            r = link.request(0, OutcomeQuery(1 + i))
            assert isinstance(r, OutcomeReply)
            return r

        nbytes = len(encode(0, 0, OutcomeQuery(1))) + len(
            encode(0, 0, OutcomeReply(1, 0xFFFF, Outcome.UNKNOWN_TX))
        )
        out.append(row("OUTCOME round trip", measure(n, outcome), nbytes, baud))

        base = int(time.time()) & 0xFFFFFF

        def vend(i: int) -> Message:
            r = link.request(0, VendRequest(i % 60, base + i + 1))
            assert isinstance(r, TxReply) and r.outcome is Outcome.ACCEPTED, r
            return r

        times = []
        for i in range(n):
            t0 = time.perf_counter()
            vend(i)
            times.append(time.perf_counter() - t0)
            tx = base + i + 1
            while not board.outcome(tx).is_final:  # motor ~0: let it finish untimed
                time.sleep(0.0005)
        nbytes = len(encode(0, 0, VendRequest(1, 1))) + len(
            encode(0, 0, TxReply(1, 1, Outcome.ACCEPTED))
        )
        out.append(row("VEND -> TX_REPLY", times, nbytes, baud))
        c = link.counters()
        out.append(
            (
                f"{baud:>6} baud  link counters: retransmits {c['retransmits']}, "
                f"timeouts {c['timeouts']}, srtt {c['srtt_ms']} ms",
                True,
            )
        )
        return out
    finally:
        link.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def bench_full_vend(directory: Path, baud: int, n: int) -> list[tuple[str, bool]]:
    """``SerialBoard.vend()`` from the call to its final outcome, polling on (as the kiosk runs):
    VEND -> TX_REPLY, then POLL -> VEND_RESULT. Floor: those four frames' bytes on the wire."""
    directory = directory / "full"
    directory.mkdir(exist_ok=True)
    proc, pty = start_emulator(directory, baud)
    link = SerialLink(str(pty), baud)
    board = SerialBoard(link, 0)
    link.start()
    try:
        if not link.wait_online(15):
            raise RuntimeError("emulator did not answer")
        board.identify()
        base = (int(time.time()) & 0xFFFFFF) + 0x1000000
        for i in range(10):  # warm up: SRTT, caches, the emulator's first frames
            board.vend(i % 60, base + i + 1)
        polls_before = link.counters()["polls"]
        times = []
        sources: dict[str, int] = {}
        for i in range(n):
            tx = base + 100 + i
            # A vend starts on a quiet bus, as at a kiosk (seconds between vends): let the
            # previous vend's last POLL finish first (untimed).
            time.sleep(0.02)
            t0 = time.perf_counter()
            r = board.vend(i % 60, tx)
            times.append(time.perf_counter() - t0)
            assert r.outcome is Outcome.DELIVERED, r
            sources[r.source] = sources.get(r.source, 0) + 1
        nbytes = sum(
            len(encode(0, 0, m))
            for m in (
                VendRequest(1, 1),
                TxReply(1, 1, Outcome.ACCEPTED),
                Poll(),
                VendResult(1, 1, Outcome.DELIVERED),
            )
        )
        c = link.counters()
        extra = (
            f"{baud:>6} baud  vend() counters: {c['polls'] - polls_before} POLLs for {n} vends "
            f"(incl. idle polls), retransmits {c['retransmits']}, outcome from "
            + ", ".join(f"{k} {v}" for k, v in sorted(sources.items()))
        )
        link.close()
        try:
            bare_med = statistics.median(bare_vends(pty, baud, n, base + 100 + n))
            bare = (
                f"{baud:>6} baud  same exchanges, bare pyserial (no kiosk link): median "
                f"{bare_med * 1000:7.2f} ms = {bare_med / (nbytes * 10 / baud):4.2f}x floor "
                "(what the pty + emulator process cost any host)"
            )
        except (RuntimeError, serial.SerialException) as e:
            bare = f"{baud:>6} baud  bare pyserial baseline failed: {e}"
        return [row("VEND -> final outcome", times, nbytes, baud), (extra, True), (bare, True)]
    finally:
        link.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def bare_vends(pty: Path, baud: int, n: int, first_tx: int) -> list[float]:
    """Baseline: the same VEND / TX_REPLY / POLL / VEND_RESULT exchanges written and read with
    bare pyserial on the same pty and emulator (no threads, no retransmits, no listeners)."""
    port = serial.serial_for_url(str(pty), baudrate=baud, timeout=2)
    decoder = FrameDecoder()
    seq = 0

    def ask(msg: Message) -> Frame:
        nonlocal seq
        seq = (seq + 1) & 0xFF
        port.write(encode(0, seq, msg))
        give_up = time.monotonic() + 5
        while True:
            if time.monotonic() > give_up:
                raise RuntimeError(f"bare pyserial: no answer to {type(msg).__name__}")
            decoder.feed(port.read(max(1, port.in_waiting)))
            for frame in decoder.frames():
                if frame.seq == seq:
                    return frame

    try:
        ask(Identify(PROTOCOL_VERSION))
        times = []
        for i in range(n):
            time.sleep(0.02)
            t0 = time.perf_counter()
            reply = ask(VendRequest(i % 60, first_tx + i))
            assert reply.command == Command.TX_REPLY, reply
            while ask(Poll()).command != Command.VEND_RESULT:
                pass
            times.append(time.perf_counter() - t0)
        return times
    finally:
        port.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    directory = Path(tempfile.mkdtemp(prefix="kbench-", dir="/tmp"))
    try:
        lines = bench_baud(directory, 115200, n) + bench_baud(directory, 9600, n)
        lines += bench_full_vend(directory, 115200, n) + bench_full_vend(directory, 9600, n)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print("vend round trip over a pty (kiosk.cli emulator process, real SerialLink/pyserial)")
    print(f"machine: {platform.platform()} | {platform.machine()} | cpus={os.cpu_count()}")
    print(f"python:  {platform.python_implementation()} {platform.python_version()}")
    print(f"load:    {' '.join(f'{x:.1f}' for x in os.getloadavg())} (1/5/15 min, at the end)")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"samples: {n} per figure; baseline = wire-time floor (bytes x 10 / baud)")
    for line, _ in lines:
        print(line)


if __name__ == "__main__":
    main()
