"""A real PNG decompression bomb: a small file whose pixels, once decoded, fill hundreds of MiB.

Written by hand (signature, IHDR, one IDAT, IEND) so that making it costs no more memory than
the file itself: the zlib stream of `height` all-zero scanlines is produced chunk by chunk.
"""

from __future__ import annotations

import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid 1-bit black-and-white PNG of `width` x `height` black pixels. PIL decodes it
    to one byte per pixel (20000x20000: 400 MB; 1.2 GB once converted to RGB, as the UI does);
    the file is ~50 KiB, well under the 256 KiB image limit."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    z = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte 0 + the packed scanline
    rows_per_piece = max(1, (1 << 22) // len(row))
    piece = row * rows_per_piece
    out = []
    left = height
    while left > 0:
        n = min(left, rows_per_piece)
        out.append(z.compress(piece if n == rows_per_piece else row * n))
        left -= n
    out.append(z.flush())
    idat = b"".join(out)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )
