"""Helpers shared by the kiosk-provision tests: the kiosk id, `kiosk-provision init` arguments
(the service PIN goes in a file, `--pin-file`: a PIN is never a flag value)."""

from __future__ import annotations

from pathlib import Path

KIOSK_ID = "AH-340102-0007"
TECHNICIAN = "T0042"
PIN = "802461"


def base_args(tmp: Path, **over: str) -> list[str]:
    values = {
        "kiosk_id": KIOSK_ID,
        "site_name": "合肥站 候车厅",
        "site_type": "station",
        "address": "安徽省合肥市站前路1号",
        "gps": "31.880,117.310",
        "cabinet": "spiral",
        "boards": "0",
        "rows": "1",
        "cols": "4",
        "capacity": "10",
        "port": "emu://unused",
        "baud": "115200",
        "broker_url": "mqtt://127.0.0.1:1",
        "allow_plaintext": "yes",
        "pay_url": "https://pay.example.invalid/p",
        "language": "zh",
        "screen": "1080x1920",
        "data_dir": str(tmp / "data"),
        "technician": TECHNICIAN,
        "pin": PIN,
    }
    values.update(over)
    out: list[str] = []
    for k, v in values.items():
        if k == "pin":
            pin_file = tmp / "pin.txt"
            pin_file.write_text(v + "\n", encoding="utf-8")
            out += ["--pin-file", str(pin_file)]
            continue
        out += ["--" + k.replace("_", "-"), v]
    return out
