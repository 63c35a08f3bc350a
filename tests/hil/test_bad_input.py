"""Bad input end to end: a raw pty peer between the kiosk and the emulator process puts garbage
on the board->kiosk line (noise, false sync bytes with absurd lengths, partial frames, well-formed
frames from an unknown address, with request codes, with unexpected SEQs, undecodable events)
while the link idles and while a vend runs. The link must neither crash nor wedge (requests keep
working, the vend is delivered exactly once) and its counters must show what it threw away.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

from kiosk.hardware.protocol import SYNC, Command, Frame, Outcome, encode_frame
from tests.support.hil import EmulatorProcess, PtyRelay, open_kiosk, vend_until_known


def garbage(rng: random.Random) -> list[bytes]:
    """One round of everything a broken or confused board could send."""
    return [
        rng.randbytes(rng.randrange(1, 200)),  # line noise
        bytes([SYNC, 0x00, 0xF5, 0x01, 0xC1]),  # LEN 245 > 240: oversize
        bytes([SYNC, 0x00, 0x30, 0x02, 0x80]) + rng.randbytes(5),  # partial frame, then silence
        encode_frame(Frame(9, 1, Command.DOOR, b"\x01\x00\x01")),  # unknown board address
        encode_frame(Frame(0, rng.randrange(256), Command.STATUS, b"")),  # a request code
        encode_frame(Frame(0, rng.randrange(256), Command.OUTCOME_REPLY, bytes(7))),  # stray SEQ
        encode_frame(Frame(0, rng.randrange(256), Command.VEND_RESULT, b"\x01")),  # bad length
        encode_frame(Frame(0, rng.randrange(256), 0xDE, b"")),  # an event code nobody knows
        bytes([SYNC]) * 20,  # a run of sync bytes
    ]


def test_garbage_from_the_board_never_crashes_or_wedges_the_link(short_dir: Path) -> None:
    emu = EmulatorProcess(short_dir, time_scale=0.01).start()
    relay = PtyRelay(emu.pty, short_dir / "noisy", bytewise=False).start()
    kiosk = open_kiosk(str(relay.path))
    rng = random.Random(7)
    stop = threading.Event()
    injected = 0

    def spray() -> None:
        nonlocal injected
        while not stop.is_set():
            for chunk in garbage(rng):
                if relay.inject(chunk):
                    injected += len(chunk)
                time.sleep(rng.uniform(0.0, 0.03))  # sometimes > 20 ms: partial frames expire

    sprayer = threading.Thread(target=spray, daemon=True)
    try:
        before = kiosk.counters()
        sprayer.start()
        time.sleep(2.0)  # the link idles (polling) in the noise
        results = [vend_until_known(kiosk.board, 20 + i, 700 + i) for i in range(5)]
        status = kiosk.board.status()
        stop.set()
        sprayer.join(5)
        after = kiosk.counters()

        # Not crashed: the link's threads are alive; not wedged: it still answers, quickly.
        alive = {t.name for t in threading.enumerate()}
        assert {"kiosk-link-rx", "kiosk-link-poll", "kiosk-link-cb"} <= alive
        started = time.monotonic()
        kiosk.board.identify()
        assert time.monotonic() - started < 2.0
        assert kiosk.link.online
    finally:
        stop.set()
        kiosk.link.close()
        relay.close()
        assert emu.stop() == 0

    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 5
    assert not status.busy
    runs = emu.runs()
    assert all(len(runs[700 + i]) == 1 for i in range(5)), runs
    # The counters show it, each kind of garbage in its own counter.
    delta = {k: after[k] - before[k] for k in after if k not in ("rto_ms", "srtt_ms")}
    print(f"\ninjected {injected} bytes of garbage; link counters moved by {delta}")
    assert injected > 1000
    assert delta["bytes_discarded"] > 500
    assert delta["resyncs"] > 0 and delta["oversize"] > 0 and delta["crc_errors"] >= 0
    assert delta["protocol_violations"] > 0  # unknown address, request code, undecodable event
