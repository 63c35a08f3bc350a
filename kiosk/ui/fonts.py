"""The CJK font: find it, load it, prove it covers what we show.

Owns: font discovery (config path, then well-known system paths, then fc-match), loading with
pygame.freetype, and glyph-coverage checks. Runs at start-up only: it may read the disk and run
fc-match, so it must never be called from the UI loop after the first frame.
Without a CJK font the kiosk refuses to start (`FontMissing` names the package to install):
a Chinese-only shopper facing boxes of tofu is worse than a kiosk that is out of service.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pygame
import pygame.freetype

__all__ = [
    "CANDIDATES",
    "FONT_PACKAGE",
    "FontMissing",
    "find_cjk_font",
    "load_font",
    "missing_glyphs",
]

FONT_PACKAGE = "fonts-wqy-microhei"
#: Well-known places of a Simplified Chinese font on Debian/Ubuntu/Raspberry Pi OS and Fedora.
CANDIDATES: tuple[str, ...] = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/wqy-microhei/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)
#: Characters every usable font must have: common Chinese, digits, the yuan sign.
PROBE = "扶贫产品价格购物车请扫码支付谢谢¥0123456789"


class FontMissing(RuntimeError):
    """No usable CJK font; the message says what to install or configure."""


def _init() -> None:
    if not pygame.freetype.get_init():
        pygame.freetype.init()


def missing_glyphs(font: pygame.freetype.Font, text: str) -> set[str]:
    """Characters of `text` the font has no glyph for (whitespace ignored)."""
    chars = sorted({c for c in text if not c.isspace()})
    if not chars:
        return set()
    metrics = font.get_metrics("".join(chars), size=16)
    return {c for c, m in zip(chars, metrics, strict=True) if m is None}


def _usable(path: Path) -> bool:
    try:
        font = pygame.freetype.Font(str(path), 16)
    except (OSError, pygame.error):
        return False
    return not missing_glyphs(font, PROBE)


def _fc_match() -> Path | None:
    exe = shutil.which("fc-match")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "-f", "%{file}", ":lang=zh-cn"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out) if out else None


def find_cjk_font(configured: Path | None = None, candidates: Iterable[str] = CANDIDATES) -> Path:
    """The configured font if usable, else the first usable well-known one, else fc-match's."""
    _init()
    if configured is not None:
        if not configured.is_file():
            raise FontMissing(f"ui.font_path {configured} does not exist")
        if not _usable(configured):
            raise FontMissing(
                f"ui.font_path {configured} has no Chinese glyphs; "
                f"install {FONT_PACKAGE} or point ui.font_path at a CJK font"
            )
        return configured
    for c in candidates:
        p = Path(c)
        if p.is_file() and _usable(p):
            return p
    matched = _fc_match()
    if matched is not None and matched.is_file() and _usable(matched):
        return matched
    raise FontMissing(
        "no Chinese (CJK) font found; the kiosk cannot show its screens. "
        f"Install one: sudo apt-get install {FONT_PACKAGE} "
        "(or fonts-noto-cjk), or set ui.font_path in the config"
    )


def load_font(path: Path) -> pygame.freetype.Font:
    """A freetype font drawing from the baseline, sized per call."""
    _init()
    font = pygame.freetype.Font(str(path), 16)
    font.origin = True
    font.pad = False
    font.antialiased = True
    return font
