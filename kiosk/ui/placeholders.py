"""Placeholder product pictures: a square tile drawn for the product, no files.

Each product the kiosk knows a drawing for (kiosk.ui.product_art, by product id) gets that
drawing; any other product gets its category's drawing (the icons here) as the fallback.

Owns: `render_product_image`, the picture the live kiosk shows for a product whose image file is
missing or not yet downloaded (kiosk/ui/images.py), and the one the demo data writes as its
product images (kiosk/sim/demo_data.py). Pure drawing with Pillow: never reads or writes a file,
never needs a font (no text). Production code, so the kiosk never imports the simulator for it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw

from kiosk.core.catalog import Category, Product

__all__ = ["render_category_image", "render_product_image"]


_RGB = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class _Palette:
    light: _RGB  # background, top of the gradient
    base: _RGB  # background, bottom
    main: _RGB  # icon body
    dark: _RGB  # icon outline and details
    accent: _RGB  # highlights, second colour


def _hex(code: str) -> _RGB:
    v = int(code.lstrip("#"), 16)
    return (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF


_PALETTES: dict[Category, _Palette] = {
    Category.TEA: _Palette(_hex("#C9E7C0"), _hex("#5FA36A"), _hex("#3E8C4A"), _hex("#245A2E"),
                           _hex("#9ED28F")),
    Category.FRUIT: _Palette(_hex("#FFF1BF"), _hex("#F0B43C"), _hex("#C6D454"), _hex("#6B4A2B"),
                             _hex("#EEF2A2")),
    Category.NUTS: _Palette(_hex("#F2DEC2"), _hex("#B98455"), _hex("#8A5A34"), _hex("#5A3A20"),
                            _hex("#C99A6B")),
    Category.DRIED: _Palette(_hex("#F1E8C8"), _hex("#A99A5E"), _hex("#D7B971"), _hex("#7A5F2C"),
                             _hex("#EEDCA6")),
    Category.GRAIN_OIL: _Palette(_hex("#FDF0C9"), _hex("#D9A23C"), _hex("#2F6FA8"),
                                 _hex("#1F4C75"), _hex("#FFFFFF")),
    Category.HONEY: _Palette(_hex("#FFE7B0"), _hex("#E58E26"), _hex("#F3A829"), _hex("#8A4B12"),
                             _hex("#FFF6E0")),
    Category.SNACKS: _Palette(_hex("#FFD9CB"), _hex("#E0694F"), _hex("#FFFFFF"), _hex("#B3432D"),
                              _hex("#F7B23B")),
    Category.CRAFTS: _Palette(_hex("#CDEBE7"), _hex("#3D8C88"), _hex("#D09A5C"), _hex("#7E5228"),
                              _hex("#EDC690")),
    Category.HEALTH: _Palette(_hex("#EBDDF3"), _hex("#8F62AE"), _hex("#F6E6FA"), _hex("#5E8F3E"),
                              _hex("#E8BC3A")),
}  # fmt: skip

_SUPERSAMPLE = 3

_Pt = tuple[float, float]


class _Pen:
    """Draws in unit coordinates (0..1 across the tile) on a supersampled RGBA canvas."""

    def __init__(self, image: Image.Image) -> None:
        self.image = image
        self.side = image.width
        self.draw = ImageDraw.Draw(image)

    def px(self, v: float) -> float:
        return v * self.side

    def pts(self, points: Sequence[_Pt]) -> list[tuple[float, float]]:
        return [(x * self.side, y * self.side) for x, y in points]

    def ellipse(
        self,
        cx: float,
        cy: float,
        rx: float,
        ry: float,
        fill: _RGB,
        outline: _RGB | None = None,
        width: float = 0.0,
    ) -> None:
        box = (self.px(cx - rx), self.px(cy - ry), self.px(cx + rx), self.px(cy + ry))
        self.draw.ellipse(box, fill=fill, outline=outline, width=max(0, round(self.px(width))))

    def polygon(
        self, points: Sequence[_Pt], fill: _RGB, outline: _RGB | None = None, width: float = 0.0
    ) -> None:
        self.draw.polygon(
            self.pts(points), fill=fill, outline=outline, width=max(1, round(self.px(width)))
        )

    def line(self, points: Sequence[_Pt], fill: _RGB, width: float) -> None:
        w = max(1, round(self.px(width)))
        self.draw.line(self.pts(points), fill=fill, width=w, joint="curve")
        r = w / 2  # round caps
        for x, y in self.pts([points[0], points[-1]]):
            self.draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)

    def rounded(
        self,
        x0: float,
        y0: float,
        x1: float,
        y1: float,
        radius: float,
        fill: _RGB,
        outline: _RGB | None = None,
        width: float = 0.0,
    ) -> None:
        self.draw.rounded_rectangle(
            (self.px(x0), self.px(y0), self.px(x1), self.px(y1)),
            radius=self.px(radius),
            fill=fill,
            outline=outline,
            width=max(0, round(self.px(width))),
        )

    def arc(
        self,
        cx: float,
        cy: float,
        rx: float,
        ry: float,
        start: float,
        end: float,
        fill: _RGB,
        width: float,
    ) -> None:
        box = (self.px(cx - rx), self.px(cy - ry), self.px(cx + rx), self.px(cy + ry))
        self.draw.arc(box, start, end, fill=fill, width=max(1, round(self.px(width))))


def _rotated_ellipse(cx: float, cy: float, rx: float, ry: float, angle_deg: float) -> list[_Pt]:
    a = math.radians(angle_deg)
    ca, sa = math.cos(a), math.sin(a)
    out: list[_Pt] = []
    for i in range(64):
        t = 2 * math.pi * i / 64
        x, y = rx * math.cos(t), ry * math.sin(t)
        out.append((cx + x * ca - y * sa, cy + x * sa + y * ca))
    return out


def _leaf(
    pen: _Pen, base: _Pt, length: float, width: float, angle_deg: float, fill: _RGB, vein: _RGB
) -> None:
    """A pointed leaf from `base` towards `angle_deg` (0 = right, 90 = down), with a midrib."""
    a = math.radians(angle_deg)
    ca, sa = math.cos(a), math.sin(a)

    def at(u: float, v: float) -> _Pt:
        return base[0] + u * ca - v * sa, base[1] + u * sa + v * ca

    n = 24
    upper = [at(length * i / n, width * math.sin(math.pi * i / n) ** 0.8) for i in range(n + 1)]
    lower = [
        at(length * i / n, -width * 0.9 * math.sin(math.pi * i / n) ** 0.8)
        for i in range(n, -1, -1)
    ]
    pen.polygon(upper + lower, fill)
    pen.line([at(length * 0.05, 0), at(length * 0.85, 0)], vein, width * 0.12)
    for u in (0.3, 0.5, 0.7):
        pen.line([at(length * u, 0), at(length * (u + 0.15), width * 0.55)], vein, width * 0.07)
        pen.line([at(length * u, 0), at(length * (u + 0.15), -width * 0.5)], vein, width * 0.07)


def _icon_tea(pen: _Pen, p: _Palette) -> None:
    pen.line([(0.5, 0.80), (0.5, 0.46), (0.53, 0.30)], p.dark, 0.022)
    _leaf(pen, (0.5, 0.62), 0.28, 0.09, -150, p.main, p.dark)
    _leaf(pen, (0.5, 0.52), 0.30, 0.10, -30, p.main, p.dark)
    _leaf(pen, (0.53, 0.33), 0.16, 0.05, -80, p.accent, p.dark)  # the bud


def _icon_fruit(pen: _Pen, p: _Palette) -> None:
    outline, w = p.dark, 0.012
    # pear: a small upper bulb merged into a large lower one
    pen.ellipse(0.5, 0.63, 0.20, 0.19, p.main, outline, w)
    pen.ellipse(0.5, 0.41, 0.115, 0.13, p.main, outline, w)
    pen.polygon([(0.40, 0.44), (0.60, 0.44), (0.68, 0.58), (0.32, 0.58)], p.main)
    pen.ellipse(0.43, 0.58, 0.05, 0.08, p.accent)  # highlight
    pen.line([(0.5, 0.29), (0.52, 0.20)], outline, 0.02)
    _leaf(pen, (0.52, 0.23), 0.15, 0.05, -25, _hex("#5FA03A"), _hex("#3E6E23"))


def _icon_nuts(pen: _Pen, p: _Palette) -> None:
    for cx, cy, scale in ((0.40, 0.58, 0.9), (0.60, 0.52, 1.0)):
        rx, ry = 0.13 * scale, 0.16 * scale
        pen.ellipse(cx, cy, rx, ry, p.main, p.dark, 0.012)
        pen.polygon(
            [
                (cx - 0.04 * scale, cy - ry * 0.9),
                (cx, cy - ry - 0.05 * scale),
                (cx + 0.04 * scale, cy - ry * 0.9),
            ],
            p.main,
        )
        pen.line([(cx, cy - ry - 0.03 * scale), (cx, cy + ry * 0.9)], p.dark, 0.012)
        for dy in (-0.06, 0.0, 0.06):  # shell texture
            pen.arc(
                cx - 0.045 * scale,
                cy + dy * scale,
                0.04 * scale,
                0.03 * scale,
                100,
                260,
                p.accent,
                0.008,
            )
            pen.arc(
                cx + 0.045 * scale,
                cy + dy * scale,
                0.04 * scale,
                0.03 * scale,
                -80,
                80,
                p.accent,
                0.008,
            )


def _icon_dried(pen: _Pen, p: _Palette) -> None:
    # two bamboo shoots: cones with husk bands
    for cx, base_y, h, half in ((0.40, 0.80, 0.46, 0.12), (0.61, 0.78, 0.40, 0.11)):
        tip = (cx + 0.02, base_y - h)
        pen.polygon([(cx - half, base_y), tip, (cx + half, base_y)], p.main, p.dark, 0.010)
        pen.ellipse(cx, base_y, half, 0.03, p.main, p.dark, 0.010)
        for k in (0.25, 0.5, 0.72):
            y = base_y - h * k
            hw = half * (1 - k)
            pen.line(
                [(cx - hw, y + 0.015), (cx + 0.01, y - 0.012), (cx + hw, y + 0.015)], p.dark, 0.008
            )
        pen.line(
            [(cx - half * 0.5, base_y - 0.05), (cx - half * 0.2, base_y - h * 0.6)], p.accent, 0.012
        )


def _icon_grain_oil(pen: _Pen, p: _Palette) -> None:
    white, blue, dark = (255, 255, 255), p.main, p.dark
    # bowl of rice
    pen.ellipse(0.5, 0.52, 0.22, 0.11, white, _hex("#D9D2C0"), 0.006)
    for i in range(9):  # grains on the mound
        gx = 0.36 + 0.035 * i
        gy = 0.49 + 0.025 * math.sin(i * 1.7)
        pen.polygon(_rotated_ellipse(gx, gy, 0.018, 0.008, 30 + 40 * i), _hex("#E7E0CC"))
    pen.draw.pieslice(
        (pen.px(0.26), pen.px(0.38), pen.px(0.74), pen.px(0.80)),
        0,
        180,
        fill=blue,
        outline=dark,
        width=round(pen.px(0.01)),
    )
    pen.line([(0.29, 0.59), (0.71, 0.59)], dark, 0.012)
    pen.line([(0.38, 0.67), (0.62, 0.67)], p.accent, 0.012)  # rim pattern
    pen.rounded(0.42, 0.78, 0.58, 0.82, 0.01, dark)  # foot
    # ears of grain rising behind
    for side in (-1, 1):
        x0 = 0.5 + side * 0.02
        pen.line([(x0, 0.42), (x0 + side * 0.06, 0.20)], _hex("#B07A1E"), 0.010)
        for k in range(4):
            t = 0.25 + 0.2 * k
            kx, ky = x0 + side * 0.06 * t, 0.42 - 0.22 * t
            pen.polygon(
                _rotated_ellipse(kx + side * 0.018, ky, 0.02, 0.01, side * -40), _hex("#D9A441")
            )


def _icon_honey(pen: _Pen, p: _Palette) -> None:
    # glass jar with honey, lid, and a honeycomb label
    pen.rounded(0.30, 0.34, 0.70, 0.80, 0.07, p.accent, p.dark, 0.012)
    pen.rounded(0.315, 0.46, 0.685, 0.785, 0.06, p.main)
    pen.rounded(0.33, 0.24, 0.67, 0.34, 0.025, p.dark)
    pen.line([(0.35, 0.29), (0.65, 0.29)], _hex("#B06A2A"), 0.01)
    pen.line([(0.37, 0.36), (0.37, 0.58)], (255, 255, 255), 0.02)  # glass shine
    for hx, hy in ((0.5, 0.60), (0.555, 0.632), (0.445, 0.632), (0.5, 0.664)):
        angles = [math.pi / 3 * i + math.pi / 6 for i in range(6)]
        hexagon = [(hx + 0.032 * math.cos(a), hy + 0.032 * math.sin(a)) for a in angles]
        pen.polygon(hexagon, _hex("#FFD24A"), p.dark, 0.006)
    # a drip running over the lid
    pen.line([(0.60, 0.34), (0.60, 0.41)], p.main, 0.03)
    pen.ellipse(0.60, 0.42, 0.022, 0.026, p.main)


def _icon_snacks(pen: _Pen, p: _Palette) -> None:
    # a snack bag with crimped top and bottom edges and a window
    left, right, top, bottom = 0.31, 0.69, 0.24, 0.80
    n = 8
    top_edge = [(left + (right - left) * i / n, top + (0.02 if i % 2 else 0)) for i in range(n + 1)]
    bottom_edge = [
        (right - (right - left) * i / n, bottom - (0.02 if i % 2 else 0)) for i in range(n + 1)
    ]
    side_r = [(right + 0.02, 0.4), (right + 0.025, 0.52), (right + 0.02, 0.64)]
    side_l = [(left - 0.02, 0.64), (left - 0.025, 0.52), (left - 0.02, 0.4)]
    pen.polygon(top_edge + side_r + bottom_edge + side_l, p.main, p.dark, 0.010)
    pen.rounded(left, 0.29, right, 0.33, 0.005, p.dark)
    pen.rounded(left, 0.71, right, 0.75, 0.005, p.dark)
    pen.ellipse(0.5, 0.52, 0.12, 0.12, p.accent, p.dark, 0.008)
    for ang in (0, 72, 144, 216, 288):  # crisps in the window
        a = math.radians(ang)
        pen.polygon(
            _rotated_ellipse(
                0.5 + 0.055 * math.cos(a), 0.52 + 0.055 * math.sin(a), 0.04, 0.025, ang
            ),
            _hex("#FBD77A"),
            p.dark,
            0.004,
        )


def _icon_crafts(pen: _Pen, p: _Palette) -> None:
    # a wicker basket with a handle and woven bands
    pen.arc(0.5, 0.50, 0.17, 0.22, 180, 360, p.dark, 0.035)
    pen.arc(0.5, 0.50, 0.17, 0.22, 185, 355, p.main, 0.018)
    body = [(0.26, 0.48), (0.74, 0.48), (0.67, 0.80), (0.33, 0.80)]
    pen.polygon(body, p.main, p.dark, 0.012)
    for k in range(1, 5):  # horizontal weave
        y = 0.48 + 0.064 * k
        inset = 0.07 * (y - 0.48) / 0.32
        pen.line([(0.26 + inset + 0.01, y), (0.74 - inset - 0.01, y)], p.dark, 0.008)
    for k in range(1, 8):  # uprights, alternating highlight
        t = k / 8
        x_top, x_bot = 0.26 + 0.48 * t, 0.33 + 0.34 * t
        pen.line([(x_top, 0.49), (x_bot, 0.79)], p.accent if k % 2 else p.dark, 0.007)
    pen.rounded(0.24, 0.45, 0.76, 0.50, 0.02, p.dark)  # rim


def _icon_health(pen: _Pen, p: _Palette) -> None:
    # dendrobium: a jointed stem with an orchid-like flower
    stem, joint = p.dark, _hex("#3E6B28")
    pen.line([(0.38, 0.84), (0.40, 0.60), (0.44, 0.40)], stem, 0.035)
    for y in (0.76, 0.66, 0.56, 0.47):
        x = 0.385 + (0.84 - y) * 0.12
        pen.line([(x - 0.025, y), (x + 0.025, y)], joint, 0.01)
    _leaf(pen, (0.40, 0.66), 0.16, 0.045, -20, _hex("#7DB356"), joint)
    cx, cy = 0.56, 0.36
    for k in range(5):
        ang = -90 + 72 * k
        a = math.radians(ang)
        pen.polygon(
            _rotated_ellipse(cx + 0.08 * math.cos(a), cy + 0.08 * math.sin(a), 0.085, 0.045, ang),
            p.main,
            _hex("#B88BCB"),
            0.006,
        )
    pen.ellipse(cx, cy + 0.01, 0.045, 0.04, _hex("#C0569A"))  # lip
    pen.ellipse(cx, cy, 0.022, 0.022, p.accent)


_ICONS = {
    Category.TEA: _icon_tea,
    Category.FRUIT: _icon_fruit,
    Category.NUTS: _icon_nuts,
    Category.DRIED: _icon_dried,
    Category.GRAIN_OIL: _icon_grain_oil,
    Category.HONEY: _icon_honey,
    Category.SNACKS: _icon_snacks,
    Category.CRAFTS: _icon_crafts,
    Category.HEALTH: _icon_health,
}


def _background(side: int, p: _Palette, seed: bytes) -> Image.Image:
    vertical = Image.linear_gradient("L").resize((side, side), Image.Resampling.BICUBIC)
    bg = Image.composite(
        Image.new("RGB", (side, side), p.base), Image.new("RGB", (side, side), p.light), vertical
    )
    # soft glow behind the icon: radial gradient is 0 at the centre, 255 at the edges
    glow_mask = Image.radial_gradient("L").resize((side, side), Image.Resampling.BICUBIC)
    glow_mask = glow_mask.point(lambda v: max(0, 150 - v))
    bg.paste((255, 255, 255), (0, 0, side, side), glow_mask)
    # a few faint dots placed from the product id: tiles of one category still differ a little
    dots = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    d = ImageDraw.Draw(dots)
    for i in range(0, 12, 3):
        x, y, r = seed[i] / 255, seed[i + 1] / 255, 0.02 + seed[i + 2] / 255 * 0.04
        if 0.22 < x < 0.78 and 0.22 < y < 0.78:
            x = 0.1 if x < 0.5 else 0.9  # keep the middle clear for the icon
        d.ellipse(
            ((x - r) * side, (y - r) * side, (x + r) * side, (y + r) * side),
            fill=(255, 255, 255, 70),
        )
    return Image.alpha_composite(bg.convert("RGBA"), dots)


def render_product_image(product: Product, size: int = 256) -> Image.Image:
    """A square RGB tile for `product`: category colour, gradient, the product's own drawing
    (kiosk.ui.product_art) or, for a product without one, its category's drawing.

    No text (that would need a CJK font). Deterministic: the same product and size always give
    the same pixels.
    """
    from kiosk.ui.product_art import PRODUCT_ART  # it builds on the pen and palettes here

    own = PRODUCT_ART.get(product.product_id)
    return _render(product, size, own if own is not None else _ICONS[product.category])


def render_category_image(product: Product, size: int = 256) -> Image.Image:
    """The tile of `product` with its category's drawing, even if it has a drawing of its own:
    what a product missing from kiosk.ui.product_art gets."""
    return _render(product, size, _ICONS[product.category])


def _render(product: Product, size: int, icon: Callable[[_Pen, _Palette], None]) -> Image.Image:
    if size < 16:
        raise ValueError(f"image size must be at least 16 px, got {size}")
    palette = _PALETTES[product.category]
    side = size * _SUPERSAMPLE
    seed = hashlib.sha256(product.product_id.encode("utf-8")).digest()
    canvas = _background(side, palette, seed)
    # shadow under the icon
    shadow = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    ImageDraw.Draw(shadow).ellipse(
        (0.28 * side, 0.80 * side, 0.72 * side, 0.88 * side), fill=(0, 0, 0, 40)
    )
    canvas = Image.alpha_composite(canvas, shadow)
    layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    icon(_Pen(layer), palette)
    canvas = Image.alpha_composite(canvas, layer)
    return canvas.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
