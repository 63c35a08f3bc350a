"""Throughput benchmark for the serial codec (kiosk.hardware.protocol).

Run: .venv/bin/python bench/bench_codec.py [N]
Prints frames/s for encode, decode (FrameDecoder) and decode+decode_message.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import best_of

from kiosk.hardware.protocol import (
    FrameDecoder,
    VendRequest,
    decode_message,
    encode,
)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    msgs = [VendRequest(slot=i % 60, tx=i + 1) for i in range(n)]
    wires: list[bytes] = []

    def do_encode() -> None:
        wires.clear()
        wires.extend(encode(0, i & 0xFF, m) for i, m in enumerate(msgs))

    t_enc = best_of(3, do_encode)
    stream = b"".join(wires)
    chunk = 64  # a typical USB-serial read size
    chunks = [stream[i : i + chunk] for i in range(0, len(stream), chunk)]

    def do_frames() -> None:
        dec = FrameDecoder()
        count = 0
        for c in chunks:
            dec.feed(c)
            for _ in dec.frames():
                count += 1
        assert count == n

    def do_messages() -> None:
        dec = FrameDecoder()
        count = 0
        for c in chunks:
            dec.feed(c)
            for f in dec.frames():
                decode_message(f)
                count += 1
        assert count == n

    t_frames = best_of(3, do_frames)
    t_msgs = best_of(3, do_messages)

    print(f"machine: {platform.platform()} | {platform.machine()} | cpus={os.cpu_count()}")
    print(f"python:  {platform.python_implementation()} {platform.python_version()}")
    print(f"frames:  {n} VEND frames, {len(wires[0])} bytes each, fed in {chunk}-byte chunks")
    print(f"encode (message -> bytes):            {n / t_enc:>12,.0f} frames/s")
    print(f"decode (bytes -> Frame):              {n / t_frames:>12,.0f} frames/s")
    print(f"decode (bytes -> Frame -> message):   {n / t_msgs:>12,.0f} frames/s")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import emit, figure

    emit(
        [
            figure("codec", "encode VEND message -> bytes", round(n / t_enc), "frames/s"),
            figure("codec", "decode bytes -> Frame", round(n / t_frames), "frames/s"),
            figure("codec", "decode bytes -> Frame -> message", round(n / t_msgs), "frames/s"),
        ]
    )


if __name__ == "__main__":
    main()
