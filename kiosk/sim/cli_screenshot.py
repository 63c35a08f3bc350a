"""`kiosk screenshot`: render any screen with demo data to a PNG, offscreen; or, with
`--docs DIR`, the whole set docs/ui.md shows (`DOCS_SET`, and `DOCS_SET_LARGE` in large-text
mode; scaled down and palette-compressed).

Owns: the subcommand's arguments and the docs set. Renders with the SDL dummy driver (no display
needed) and the same code the kiosk runs; exit 2 for a bad argument, 1 when no CJK font is
installed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["DOCS_SET", "DOCS_SET_LARGE", "docs_name", "register"]

_PORTRAIT = (
    "attract",
    "catalog",
    "product",
    "cart",
    "payment",
    "payment_offline",
    "payment_cancel",
    "offline_code",
    "dispensing_locker",
    "done",
    "problem",
    "out_of_service",
    "idle_prompt",
    "service_menu",
    "service_restock",
    "service_count",
    "service_board",
)
_SMALL = (
    "attract",
    "catalog",
    "product",
    "cart",
    "payment",
    "payment_offline",
    "offline_code",
    "done",
    "problem",
    "service_restock",
)
#: (screen, size, scale) of every docs/ui.md screenshot, each in zh and en:
#: `<screen>-<W>x<H>-<lang>.png` (`kiosk screenshot --docs docs/ui`)
DOCS_SET: tuple[tuple[str, tuple[int, int], float], ...] = (
    *((name, (1080, 1920), 0.5) for name in _PORTRAIT),
    *((name, (800, 480), 0.75) for name in _SMALL),
)
_LARGE = ("attract", "catalog", "product", "cart", "payment", "done")
#: The same in large-text mode: `<screen>-<W>x<H>-<lang>-large.png`
_LARGE_MORE = ("payment_offline", "offline_code", "problem")
DOCS_SET_LARGE: tuple[tuple[str, tuple[int, int], float], ...] = (
    *((name, (1080, 1920), 0.5) for name in (*_LARGE, *_LARGE_MORE)),
    *((name, (800, 480), 0.75) for name in (*_LARGE[1:], *_LARGE_MORE)),
)


def docs_name(screen: str, size: tuple[int, int], lang: str, large: bool = False) -> str:
    """The file name of one docs screenshot."""
    return f"{screen}-{size[0]}x{size[1]}-{lang}{'-large' if large else ''}.png"


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
        choices=SCREEN_NAMES,
        metavar="NAME",
        help=f"one of: {', '.join(SCREEN_NAMES)}",
    )
    p.add_argument("--size", type=_size, default=(1080, 1920), help="WxH (default 1080x1920)")
    p.add_argument("--lang", choices=("zh", "en"), default="zh")
    p.add_argument("--large", action="store_true", help="in large-text mode (大字模式)")
    p.add_argument("--out", type=Path, help="PNG file to write (with --screen)")
    p.add_argument(
        "--docs",
        type=Path,
        metavar="DIR",
        help="write the whole docs/ui.md set into DIR instead (both languages, scaled down)",
    )
    p.add_argument("--font", default=None, help="CJK font file (default: found automatically)")
    p.set_defaults(func=cmd_screenshot)


def cmd_screenshot(args: argparse.Namespace) -> int:
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    from kiosk.ui.fonts import FontMissing

    if args.docs is None and (args.screen is None or args.out is None):
        print("kiosk screenshot: give --screen NAME and --out FILE, or --docs DIR", file=sys.stderr)
        return 2
    try:
        if args.docs is not None:
            for large, docs_set in ((False, DOCS_SET), (True, DOCS_SET_LARGE)):
                for screen, size, scale in docs_set:
                    for lang in ("zh", "en"):
                        out = args.docs / docs_name(screen, size, lang, large)
                        _write(screen, size, lang, out, args.font, scale, large)
            return 0
        _write(args.screen, args.size, args.lang, args.out, args.font, 1.0, args.large)
    except FontMissing as e:
        print(f"kiosk screenshot: {e}", file=sys.stderr)
        return 1
    return 0


def _write(
    screen: str,
    size: tuple[int, int],
    lang: str,
    out: Path,
    font: str | None,
    scale: float,
    large: bool = False,
) -> None:
    """One screenshot; a scaled one (the docs) is smoothed and stored with a 256-colour
    palette, which keeps the repository small."""
    import pygame

    from kiosk.sim.render import render_once

    surface = render_once(screen, size, lang, font_path=font, large=large)
    out.parent.mkdir(parents=True, exist_ok=True)
    if scale == 1.0:
        pygame.image.save(surface, str(out))
    else:
        from PIL import Image

        small = pygame.transform.smoothscale(
            surface, (round(size[0] * scale), round(size[1] * scale))
        )
        raw = pygame.image.tobytes(small, "RGB")
        image = Image.frombytes("RGB", small.get_size(), raw)
        image.quantize(256, dither=Image.Dither.NONE).save(out, optimize=True)
    mode = ", large text" if large else ""
    print(f"wrote {out} ({screen}, {size[0]}x{size[1]}, {lang}{mode})")
