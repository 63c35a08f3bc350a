"""Look and size: colours and every dimension, derived from the screen's size and density.

Owns: the palette (high contrast, checked by a test against WCAG 4.5:1) and `Metrics`, which turns
millimetres into pixels so a 7" 800x480 panel and a 21.5" 1080x1920 one both get >= 9 mm touch
targets and >= 4.8 mm text. Never draws and never reads config files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "LARGE_SCALE",
    "THEME",
    "Colors",
    "Metrics",
    "contrast_ratio",
    "estimate_diagonal_in",
    "metrics_for",
]

RGB = tuple[int, int, int]

MIN_TOUCH_MM = 9.0
MIN_TEXT_MM = 4.8
MIN_TOUCH_PX = 48  # never smaller, whatever the density estimate says
#: Large-text mode (大字模式, for older shoppers): every text size times this; touch targets
#: grow with the text; the floor (`Metrics.floor`, 4.8 mm) stays, so a label where room is
#: short shrinks towards the normal size before anything is cut.
LARGE_SCALE = 1.35


@dataclass(frozen=True)
class Colors:
    bg: RGB = (250, 247, 240)  # warm paper white
    surface: RGB = (255, 255, 255)
    text: RGB = (26, 26, 26)
    muted: RGB = (80, 80, 80)  # secondary text, still >= 7:1 on bg
    primary: RGB = (176, 26, 26)  # deep red: the programme's colour
    on_primary: RGB = (255, 255, 255)
    secondary: RGB = (33, 33, 33)
    on_secondary: RGB = (255, 255, 255)
    outline: RGB = (110, 110, 110)
    price: RGB = (176, 26, 26)
    badge: RGB = (176, 26, 26)
    on_badge: RGB = (255, 255, 255)
    ok: RGB = (20, 110, 50)
    warn: RGB = (150, 80, 0)
    error: RGB = (176, 26, 26)
    disabled: RGB = (190, 190, 190)
    on_disabled: RGB = (60, 60, 60)
    header: RGB = (176, 26, 26)
    on_header: RGB = (255, 255, 255)
    sold_out_veil: RGB = (255, 255, 255)
    dark_bg: RGB = (12, 12, 12)  # attract screen
    on_dark: RGB = (245, 245, 245)
    on_dark_accent: RGB = (255, 210, 120)
    on_dark_dim: RGB = (96, 96, 96)  # the dimmed attract hint: low light on purpose
    scrim: RGB = (0, 0, 0)
    banner: RGB = (255, 240, 214)  # a notice the shopper must read (kiosk offline): warn text
    wechat: RGB = (16, 122, 64)  # the payment marks: drawn, not the brands' logos
    alipay: RGB = (0, 94, 200)
    ok_on_dark: RGB = (120, 220, 140)  # a tick on the dark toast


THEME = Colors()

# Diagonals we assume for the resolutions kiosks ship with (inches).
_KNOWN_DIAGONALS: dict[tuple[int, int], float] = {
    (1080, 1920): 21.5,
    (1920, 1080): 21.5,
    (1024, 600): 7.0,
    (600, 1024): 7.0,
    (800, 480): 7.0,
    (480, 800): 7.0,
}


def estimate_diagonal_in(width: int, height: int) -> float:
    """Known kiosk panels by resolution; otherwise small panels are 7", large ones 21.5"."""
    known = _KNOWN_DIAGONALS.get((width, height))
    if known is not None:
        return known
    return 7.0 if max(width, height) <= 1280 else 21.5


@dataclass(frozen=True)
class Metrics:
    """All sizes in px for one screen. `u` is 1% of the short side (for proportions)."""

    width: int
    height: int
    dpi: float
    touch: int  # minimum touch target side
    text: int  # body text size (em, px)
    small: int  # smallest text allowed (= the 4.8 mm floor)
    title: int
    huge: int  # amounts, headline
    pad: int  # inner padding
    gap: int  # space between widgets
    radius: int
    large: bool = False  # large-text mode: fewer, bigger catalog tiles too
    floor: int = 0  # no text smaller (4.8 mm): `small` in normal mode, below it in large

    @property
    def portrait(self) -> bool:
        return self.height > self.width

    @property
    def u(self) -> float:
        return min(self.width, self.height) / 100

    def mm(self, mm: float) -> int:
        return math.ceil(mm * self.dpi / 25.4)

    @property
    def line(self) -> int:
        return round(self.text * 1.3)


def metrics_for(
    width: int, height: int, diagonal_in: float | None = None, *, large: bool = False
) -> Metrics:
    """Sizes for a `width` x `height` screen; `large`: the large-text mode (LARGE_SCALE)."""
    diag = diagonal_in or estimate_diagonal_in(width, height)
    dpi = math.hypot(width, height) / diag

    def mm(v: float) -> int:
        return math.ceil(v * dpi / 25.4)

    u = min(width, height) / 100
    k = LARGE_SCALE if large else 1.0
    # the floor stays the legal 4.8 mm: where room is short, large text shrinks towards it
    floor = max(mm(MIN_TEXT_MM), round(2.6 * u))
    small = round(k * floor)
    text = round(k * max(floor, round(3.1 * u)))
    touch = max(MIN_TOUCH_PX, mm(MIN_TOUCH_MM), round(7.5 * u), round(text * 1.9))
    return Metrics(
        width=width,
        height=height,
        dpi=dpi,
        touch=touch,
        text=text,
        small=small,
        title=round(text * 1.35),
        huge=round(text * 1.9),
        pad=max(6, round(1.4 * u)),
        gap=max(6, round(1.2 * u)),
        radius=max(4, round(1.2 * u)),
        large=large,
        floor=floor,
    )


def _lum(c: RGB) -> float:
    def ch(v: int) -> float:
        s = v / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (ch(v) for v in c)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: RGB, b: RGB) -> float:
    la, lb = sorted((_lum(a), _lum(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)
