"""`kiosk screenshot`: render any screen with demo data to a PNG, offscreen.

Owns: the subcommand's arguments. Renders with the SDL dummy driver (no display needed) and
the same code the kiosk runs; exit 2 for a bad argument, 1 when no CJK font is installed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["register"]


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size must be WxH, e.g. 1080x1920, got {text!r}"
        ) from None
    if not (320 <= w <= 7680 and 240 <= h <= 7680):
        raise argparse.ArgumentTypeError(f"size out of range: {text}")
    return w, h


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common_parent: argparse.ArgumentParser,
) -> None:
    from kiosk.ui.app import SCREEN_NAMES

    p = subparsers.add_parser(
        "screenshot", help="render a UI screen with demo data to a PNG", parents=[common_parent]
    )
    p.add_argument(
        "--screen",
        required=True,
        choices=SCREEN_NAMES,
        metavar="NAME",
        help=f"one of: {', '.join(SCREEN_NAMES)}",
    )
    p.add_argument("--size", type=_size, default=(1080, 1920), help="WxH (default 1080x1920)")
    p.add_argument("--lang", choices=("zh", "en"), default="zh")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    p.add_argument("--font", default=None, help="CJK font file (default: found automatically)")
    p.set_defaults(func=cmd_screenshot)


def cmd_screenshot(args: argparse.Namespace) -> int:
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    import pygame

    from kiosk.sim.render import render_once
    from kiosk.ui.fonts import FontMissing

    try:
        surface = render_once(args.screen, args.size, args.lang, font_path=args.font)
    except FontMissing as e:
        print(f"kiosk screenshot: {e}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pygame.image.save(surface, str(args.out))
    print(f"wrote {args.out} ({args.screen}, {args.size[0]}x{args.size[1]}, {args.lang})")
    return 0
