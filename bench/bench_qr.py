"""Payment QR generation: qrcode (what the kiosk uses) vs segno, same URL, same error level.

python bench/bench_qr.py [--n 300]
"""

from __future__ import annotations

import argparse
import io
import sys
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import best_of, emit, figure

URL = (
    "https://pay.example.invalid/p?k=AH-340100-0001&o=AH-340100-0001-000A7&a=16790"
    "&t=1790000000&s=3f9a1c0b7e2d4a5f"
)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=300)
    a = p.parse_args()
    import qrcode
    import segno

    def with_qrcode() -> None:
        for i in range(a.n):
            q = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
            q.add_data(f"{URL}{i}")
            q.make(fit=True)
            q.get_matrix()

    def with_segno() -> None:
        for i in range(a.n):
            q = segno.make(f"{URL}{i}", error="m", micro=False, boost_error=False)
            list(q.matrix)

    def png_qrcode() -> None:
        for i in range(a.n // 10):
            img = qrcode.make(f"{URL}{i}", box_size=10)
            img.save(io.BytesIO())

    def png_segno() -> None:
        for i in range(a.n // 10):
            segno.make(f"{URL}{i}", error="m").save(io.BytesIO(), kind="png", scale=10)

    t_q = best_of(3, with_qrcode) / a.n * 1000
    t_s = best_of(3, with_segno) / a.n * 1000
    p_q = best_of(3, png_qrcode) / (a.n // 10) * 1000
    p_s = best_of(3, png_segno) / (a.n // 10) * 1000
    print(f"QR matrix for a {len(URL)}-char pay URL, level M (ms per code):")
    print(f"  qrcode {version('qrcode')}: {t_q:.2f}   segno {segno.__version__}: {t_s:.2f}")
    print(f"QR to PNG, 10 px modules (ms per code): qrcode {p_q:.2f}   segno {p_s:.2f}")
    cmd = f"python bench/bench_qr.py --n {a.n}"
    emit(
        [
            figure(
                "qr",
                "payment QR matrix (qrcode, used by the kiosk)",
                round(t_q, 2),
                "ms/code",
                goal="<= 50 (once per order)",
                met=t_q <= 50,
                baseline=round(t_s, 2),
                baseline_name="segno",
                command=cmd,
            ),
            figure(
                "qr",
                "payment QR to PNG (qrcode + Pillow)",
                round(p_q, 2),
                "ms/code",
                goal="<= 100",
                met=p_q <= 100,
                baseline=round(p_s, 2),
                baseline_name="segno PNG",
                command=cmd,
            ),
        ]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
