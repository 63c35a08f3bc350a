"""`kiosk screenshot` writes a PNG of the asked size."""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from kiosk.sim.cli_screenshot import register


def test_screenshot_writes_png(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    common = argparse.ArgumentParser(add_help=False)
    register(parser.add_subparsers(dest="command"), common)
    out = tmp_path / "cart.png"
    args = parser.parse_args(
        ["screenshot", "--screen", "cart", "--size", "800x480", "--lang", "en", "--out", str(out)]
    )
    assert args.func(args) == 0
    with Image.open(out) as im:
        assert im.size == (800, 480)
