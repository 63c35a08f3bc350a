"""Run the UI on the fake controller: `python -m kiosk.sim.ui_demo --size 800x480 --windowed`.

Owns: nothing but wiring for demos and the X11 end-to-end test. With --trace it prints
`screen=<name>` on stdout each time the top screen changes. Not for production: the fake
controller sells nothing and its payment is simulated (--auto-pay pays 3 s after checkout).
"""

from __future__ import annotations

import argparse
import sys
import threading
from dataclasses import replace

from kiosk.clock import SystemClock
from kiosk.config import UiConfig
from kiosk.sim.fake_controller import DEMO_PIN_HASH, FakeController
from kiosk.ui.app import run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kiosk.sim.ui_demo")
    p.add_argument("--size", default="800x480", help="WxH (default 800x480)")
    p.add_argument("--lang", choices=("zh", "en"), default="zh")
    p.add_argument("--windowed", action="store_true", help="a window, QUIT allowed")
    p.add_argument("--trace", action="store_true", help="print screen=<name> on changes")
    p.add_argument("--auto-pay", type=float, default=3.0, help="seconds to simulated payment")
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    cfg = replace(
        UiConfig(),
        width=w,
        height=h,
        language=args.lang,
        orientation="portrait" if h >= w else "landscape",
        fullscreen=not args.windowed,
        service_pin_hash=DEMO_PIN_HASH,
    )
    clock = SystemClock()
    fc = FakeController(clock)
    fc.start()
    paying: dict[str, threading.Timer] = {}

    def on_screen(name: str) -> None:
        if args.trace:
            print(f"screen={name}", flush=True)
        if name == "payment" and args.auto_pay >= 0 and "t" not in paying:
            paying["t"] = threading.Timer(args.auto_pay, fc.simulate_payment)
            paying["t"].daemon = True
            paying["t"].start()
        elif name != "payment":
            paying.pop("t", None)

    try:
        run(fc, cfg, clock, kiosk_mode=not args.windowed, on_screen=on_screen)
    finally:
        fc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
