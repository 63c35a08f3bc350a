"""Product pictures drawn per product: one recognisable drawing for each product we know.

Owns: `PRODUCT_ART` (product id -> drawing) and `has_own_art`. kiosk.ui.placeholders draws a
product from here when its id is listed and falls back to its category's drawing otherwise.
Keyed by product id strings only: production code, it never imports the simulator. Pure
Pillow vector drawing in unit coordinates (0..1 across the tile), no files, no fonts: a
"label band" carries short strokes that stand in for the Chinese name.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from kiosk.ui.placeholders import _hex, _leaf, _Palette, _Pen, _rotated_ellipse

__all__ = ["PRODUCT_ART", "has_own_art"]

_RGB = tuple[int, int, int]
Drawing = Callable[[_Pen, _Palette], None]

_WHITE: _RGB = (255, 255, 255)
_BLACK: _RGB = (0, 0, 0)
_RED = _hex("#C8302A")
_GOLD = _hex("#E7B53C")
_LEAF = _hex("#4E9A3A")
_LEAF_DARK = _hex("#2E5E22")
_OUTLINE = _hex("#3A2A1A")


def _mix(a: _RGB, b: _RGB, t: float) -> _RGB:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def _label(pen: _Pen, x0: float, y: float, x1: float, h: float, band: _RGB) -> None:
    """A label band with a few pale strokes standing in for the Chinese name."""
    pen.rounded(x0, y, x1, y + h, h * 0.15, band)
    ink = _mix(band, _WHITE, 0.75)
    n = 3
    step = (x1 - x0) / (n + 1)
    for i in range(1, n + 1):
        cx = x0 + step * i
        pen.line([(cx - step * 0.28, y + h * 0.35), (cx + step * 0.28, y + h * 0.35)], ink, h * 0.1)
        pen.line([(cx, y + h * 0.25), (cx, y + h * 0.75)], ink, h * 0.1)


# --- containers ------------------------------------------------------------------------------


def _box(pen: _Pen, x0: float, y0: float, x1: float, y1: float, face: _RGB, band: _RGB) -> None:
    """A carton in three-quarter view: front, top and right side, with a label band."""
    d = 0.06
    dark = _mix(face, _BLACK, 0.55)
    pen.polygon(
        [(x0, y0), (x0 + d, y0 - d), (x1 + d, y0 - d), (x1, y0)],
        _mix(face, _WHITE, 0.3),
        dark,
        0.006,
    )
    pen.polygon(
        [(x1, y0), (x1 + d, y0 - d), (x1 + d, y1 - d), (x1, y1)],
        _mix(face, _BLACK, 0.25),
        dark,
        0.006,
    )
    pen.polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], face, dark, 0.006)
    _label(pen, x0, y0 + (y1 - y0) * 0.70, x1, (y1 - y0) * 0.18, band)


def _tin(
    pen: _Pen, cx: float, top: float, bottom: float, rx: float, body: _RGB, band: _RGB
) -> None:
    """A round tin (or can) standing upright, lid on top, label band round its middle."""
    ry = rx * 0.28
    dark = _mix(body, _BLACK, 0.55)
    pen.ellipse(cx, bottom, rx, ry, body, dark, 0.006)
    pen.polygon([(cx - rx, top), (cx + rx, top), (cx + rx, bottom), (cx - rx, bottom)], body)
    pen.line([(cx - rx, top), (cx - rx, bottom)], dark, 0.006)
    pen.line([(cx + rx, top), (cx + rx, bottom)], dark, 0.006)
    _label(pen, cx - rx, top + (bottom - top) * 0.66, cx + rx, (bottom - top) * 0.2, band)
    pen.ellipse(cx, top, rx, ry, _mix(body, _WHITE, 0.35), dark, 0.006)
    pen.line(
        [(cx - rx * 0.7, top + 0.05), (cx - rx * 0.7, bottom - 0.05)],
        _mix(body, _WHITE, 0.5),
        0.012,
    )


def _pouch(pen: _Pen, x0: float, y0: float, x1: float, y1: float, body: _RGB, band: _RGB) -> None:
    """A stand-up pouch: zip near the top, slightly bulging sides, label band."""
    dark = _mix(body, _BLACK, 0.55)
    mid = (y0 + y1) / 2
    outline = [(x0, y0), (x1, y0), (x1 + 0.025, mid), (x1, y1), (x0, y1), (x0 - 0.025, mid)]
    pen.polygon(outline, body, dark, 0.006)
    pen.line([(x0 + 0.01, y0 + 0.04), (x1 - 0.01, y0 + 0.04)], dark, 0.008)
    pen.line([(x0 + 0.04, y0 + 0.07), (x0 + 0.03, y1 - 0.06)], _mix(body, _WHITE, 0.45), 0.012)
    _label(pen, x0, y0 + (y1 - y0) * 0.72, x1, (y1 - y0) * 0.16, band)


def _jar(pen: _Pen, x0: float, y0: float, x1: float, y1: float, fill: _RGB, lid: _RGB) -> None:
    """A glass jar: contents colour, screw lid, glass shine."""
    dark = _mix(fill, _BLACK, 0.6)
    pen.rounded(x0, y0, x1, y1, 0.06, fill, dark, 0.008)
    pen.rounded(
        x0 + 0.02, y0 - 0.07, x1 - 0.02, y0 + 0.01, 0.02, lid, _mix(lid, _BLACK, 0.5), 0.006
    )
    pen.line([(x0 + 0.04, y0 + 0.05), (x0 + 0.04, y0 + (y1 - y0) * 0.45)], _WHITE, 0.018)


# --- tea emblems (drawn on the tea's pack) ---------------------------------------------------


def _em_melon_seed(pen: _Pen, cx: float, cy: float, s: float) -> None:
    # 瓜片: a single flat, melon-seed shaped leaf, no bud, no stem
    pen.polygon(_rotated_ellipse(cx, cy, 0.05 * s, 0.10 * s, 20), _LEAF, _LEAF_DARK, 0.005)
    pen.line([(cx + 0.03 * s, cy - 0.085 * s), (cx - 0.03 * s, cy + 0.085 * s)], _LEAF_DARK, 0.006)


def _em_leaves_bud(pen: _Pen, cx: float, cy: float, s: float) -> None:
    # 翠兰: two leaves and a bud on a short stem
    pen.line([(cx, cy + 0.10 * s), (cx, cy - 0.06 * s)], _LEAF_DARK, 0.008)
    _leaf(pen, (cx, cy + 0.03 * s), 0.10 * s, 0.035 * s, -150, _LEAF, _LEAF_DARK)
    _leaf(pen, (cx, cy), 0.11 * s, 0.035 * s, -30, _LEAF, _LEAF_DARK)
    _leaf(pen, (cx, cy - 0.04 * s), 0.07 * s, 0.022 * s, -90, _hex("#A7D98C"), _LEAF_DARK)


def _em_selenium(pen: _Pen, cx: float, cy: float, s: float) -> None:
    # 富硒: a leaf in a ring of small silver dots
    _leaf(pen, (cx - 0.06 * s, cy + 0.05 * s), 0.14 * s, 0.045 * s, -40, _LEAF, _LEAF_DARK)
    for k in range(8):
        a = math.radians(45 * k)
        pen.ellipse(
            cx + 0.11 * s * math.cos(a),
            cy + 0.11 * s * math.sin(a),
            0.012 * s,
            0.012 * s,
            _hex("#E6E6F0"),
        )


def _em_spear_bud(pen: _Pen, cx: float, cy: float, s: float) -> None:
    # 谷尖: one tall pointed bud between two small leaves
    pen.polygon(
        [(cx - 0.025 * s, cy + 0.09 * s), (cx, cy - 0.12 * s), (cx + 0.025 * s, cy + 0.09 * s)],
        _hex("#9ACD6A"),
        _LEAF_DARK,
        0.005,
    )
    _leaf(pen, (cx, cy + 0.08 * s), 0.08 * s, 0.03 * s, -160, _LEAF, _LEAF_DARK)
    _leaf(pen, (cx, cy + 0.08 * s), 0.08 * s, 0.03 * s, -20, _LEAF, _LEAF_DARK)


def _em_yellow_buds(pen: _Pen, cx: float, cy: float, s: float) -> None:
    # 黄芽: three yellow-green buds
    for dx, ang in ((-0.05, -110), (0.0, -90), (0.05, -70)):
        _leaf(
            pen,
            (cx + dx * s, cy + 0.08 * s),
            0.15 * s,
            0.03 * s,
            ang,
            _hex("#D8C24A"),
            _hex("#7A6A1A"),
        )


def _em_orchid(pen: _Pen, cx: float, cy: float, s: float) -> None:
    # 小兰花: a small orchid flower
    for k in range(5):
        a = math.radians(-90 + 72 * k)
        pen.polygon(
            _rotated_ellipse(
                cx + 0.05 * s * math.cos(a),
                cy + 0.05 * s * math.sin(a),
                0.05 * s,
                0.026 * s,
                -90 + 72 * k,
            ),
            _WHITE,
            _hex("#B04A7A"),
            0.004,
        )
    pen.ellipse(cx, cy, 0.022 * s, 0.022 * s, _hex("#E8BC3A"))


def _em_swords(pen: _Pen, cx: float, cy: float, s: float) -> None:
    # 剑毫: three straight, needle-like leaves fanned out like swords
    for ang in (-115, -90, -65):
        _leaf(pen, (cx, cy + 0.09 * s), 0.19 * s, 0.018 * s, ang, _hex("#7FBF6A"), _LEAF_DARK)


def _tea(
    container: str, body: str, band: _RGB, emblem: Callable[[_Pen, float, float, float], None]
) -> Drawing:
    colour = _hex(body)

    def draw(pen: _Pen, _p: _Palette) -> None:
        if container == "tin":
            _tin(pen, 0.5, 0.28, 0.80, 0.19, colour, band)
            emblem(pen, 0.5, 0.47, 1.0)
        elif container == "pouch":
            _pouch(pen, 0.32, 0.20, 0.68, 0.82, colour, band)
            emblem(pen, 0.5, 0.47, 1.0)
        else:
            _box(pen, 0.28, 0.32, 0.66, 0.82, colour, band)
            emblem(pen, 0.47, 0.50, 0.95)

    return draw


# --- health ------------------------------------------------------------------------------------


def _dendrobium_box(pen: _Pen, p: _Palette) -> None:
    # 石斛枫斗: an open red gift box of golden coiled stems, an orchid on the lid
    pen.rounded(0.22, 0.26, 0.78, 0.52, 0.02, _hex("#8E1B1B"), _hex("#4A0D0D"), 0.008)  # lid
    pen.rounded(0.26, 0.30, 0.74, 0.48, 0.015, _hex("#B3262A"))
    pen.rounded(0.20, 0.50, 0.80, 0.82, 0.02, _hex("#B3262A"), _hex("#4A0D0D"), 0.008)
    pen.rounded(0.24, 0.53, 0.76, 0.78, 0.01, _hex("#F3E3B5"))  # silk lining
    for row, y in enumerate((0.595, 0.715)):
        for col in range(4):
            x = 0.31 + 0.127 * col + (0.03 if row else 0)
            pen.ellipse(x, y, 0.05, 0.045, _hex("#C98F2E"), _hex("#6B4512"), 0.006)
            for r in (0.032, 0.016):  # the coil
                pen.arc(x, y, r, r * 0.9, 0, 300, _hex("#6B4512"), 0.006)
    _em_orchid(pen, 0.5, 0.39, 1.1)
    _leaf(pen, (0.44, 0.42), 0.09, 0.02, -170, _LEAF, _LEAF_DARK)


def _pear_shape(pen: _Pen, cx: float, cy: float, s: float, fill: _RGB, outline: _RGB) -> None:
    pen.ellipse(cx, cy + 0.06 * s, 0.10 * s, 0.095 * s, fill, outline, 0.006)
    pen.ellipse(cx, cy - 0.045 * s, 0.06 * s, 0.07 * s, fill, outline, 0.006)
    pen.polygon(
        [
            (cx - 0.055 * s, cy - 0.03 * s),
            (cx + 0.055 * s, cy - 0.03 * s),
            (cx + 0.085 * s, cy + 0.04 * s),
            (cx - 0.085 * s, cy + 0.04 * s),
        ],
        fill,
    )
    pen.ellipse(cx - 0.035 * s, cy + 0.04 * s, 0.025 * s, 0.04 * s, _mix(fill, _WHITE, 0.5))
    pen.line([(cx, cy - 0.11 * s), (cx + 0.015 * s, cy - 0.16 * s)], _hex("#6B4A2B"), 0.012 * s)


def _pear_paste(pen: _Pen, p: _Palette) -> None:
    # 梨膏: a squat jar of near-black syrup, cream lid, a pear on the label
    _jar(pen, 0.30, 0.36, 0.70, 0.80, _hex("#3B2414"), _hex("#EFE2C0"))
    pen.rounded(0.34, 0.50, 0.66, 0.72, 0.02, _hex("#F4E9CF"), _hex("#8A6A3A"), 0.005)
    _pear_shape(pen, 0.5, 0.615, 0.75, _hex("#D6D96A"), _hex("#6B4A2B"))
    pen.ellipse(0.62, 0.30, 0.035, 0.02, _hex("#3B2414"))  # a drop on the lid


# --- fruit -------------------------------------------------------------------------------------


def _pears_box(pen: _Pen, p: _Palette) -> None:
    # 砀山酥梨 礼盒: three crisp pears sitting in an open gift carton
    back = _hex("#C9873F")
    pen.polygon([(0.20, 0.52), (0.80, 0.52), (0.74, 0.44), (0.26, 0.44)], _mix(back, _BLACK, 0.3))
    for cx, cy in ((0.36, 0.43), (0.64, 0.43), (0.5, 0.40)):
        _pear_shape(pen, cx, cy, 1.2, _hex("#E4E07A"), _hex("#7A6A2B"))
    pen.rounded(0.20, 0.52, 0.80, 0.82, 0.015, back, _hex("#5A3A1A"), 0.008)
    _label(pen, 0.20, 0.62, 0.80, 0.10, _RED)
    _leaf(pen, (0.52, 0.24), 0.10, 0.035, -30, _LEAF, _LEAF_DARK)


def _kiwi_half(pen: _Pen, cx: float, cy: float, r: float) -> None:
    pen.ellipse(cx, cy, r, r, _hex("#8A6A3A"))
    pen.ellipse(cx, cy, r * 0.9, r * 0.9, _hex("#7DBE3A"))
    pen.ellipse(cx, cy, r * 0.35, r * 0.35, _hex("#F1F2C8"))
    for k in range(14):
        a = 2 * math.pi * k / 14
        pen.ellipse(
            cx + r * 0.48 * math.cos(a),
            cy + r * 0.48 * math.sin(a),
            r * 0.04,
            r * 0.07,
            _hex("#1E1A12"),
        )


def _kiwifruit(pen: _Pen, p: _Palette) -> None:
    # 猕猴桃: a whole brown kiwifruit and a halved one showing green flesh and black seeds
    pen.polygon(
        _rotated_ellipse(0.38, 0.50, 0.17, 0.21, -20), _hex("#8A6437"), _hex("#4A3418"), 0.008
    )
    for k in range(12):  # fuzz
        a = 2 * math.pi * k / 12
        pen.line(
            [
                (0.38 + 0.12 * math.cos(a), 0.50 + 0.15 * math.sin(a)),
                (0.38 + 0.13 * math.cos(a), 0.50 + 0.165 * math.sin(a)),
            ],
            _hex("#B38B55"),
            0.008,
        )
    _kiwi_half(pen, 0.62, 0.62, 0.17)


def _peach_can(pen: _Pen, p: _Palette) -> None:
    # 黄桃罐头: a silver can, orange label with peach halves, and a peach half in front
    _tin(pen, 0.46, 0.26, 0.78, 0.20, _hex("#B9BEC4"), _hex("#E0702A"))
    pen.rounded(0.26, 0.40, 0.66, 0.62, 0.0, _hex("#F29A2E"))
    for cx in (0.38, 0.54):
        pen.ellipse(cx, 0.51, 0.065, 0.06, _hex("#FFD23F"), _hex("#C46A10"), 0.005)
        pen.ellipse(cx, 0.51, 0.02, 0.02, _hex("#C46A10"))
    pen.ellipse(0.70, 0.74, 0.10, 0.075, _hex("#FFC83A"), _hex("#C46A10"), 0.008)  # a half in syrup
    pen.ellipse(0.70, 0.73, 0.035, 0.03, _hex("#E89A2A"))


# --- snacks ------------------------------------------------------------------------------------


def _dried_kiwi(pen: _Pen, p: _Palette) -> None:
    # 猕猴桃果干: a clear snack bag behind, dried kiwi slices in front
    _pouch(pen, 0.30, 0.18, 0.70, 0.62, _hex("#E9F3D6"), _hex("#4E9A3A"))
    for cx, cy, r in ((0.34, 0.68, 0.10), (0.55, 0.72, 0.11), (0.70, 0.60, 0.09)):
        pen.ellipse(cx, cy, r, r * 0.8, _hex("#6FA53A"), _hex("#3E5E1A"), 0.006)
        pen.ellipse(cx, cy, r * 0.3, r * 0.25, _hex("#E6EFB0"))
        for k in range(10):
            a = 2 * math.pi * k / 10
            pen.ellipse(
                cx + r * 0.5 * math.cos(a), cy + r * 0.4 * math.sin(a), 0.006, 0.006, _BLACK
            )


def _pear_crisps(pen: _Pen, p: _Palette) -> None:
    # 酥梨脆片: thin pale pear-shaped slices fanned out, brown rims, seeds in the middle
    for cx, cy, ang in ((0.36, 0.56, -25), (0.50, 0.50, 0), (0.64, 0.58, 25), (0.50, 0.68, 90)):
        pts = []
        for k in range(48):
            t = 2 * math.pi * k / 48
            w = 0.10 + 0.04 * math.sin(t)  # wider at the bottom, narrow at the top
            x, y = w * math.cos(t), 0.15 * math.sin(t)
            a = math.radians(ang)
            pts.append(
                (cx + x * math.cos(a) - y * math.sin(a), cy + x * math.sin(a) + y * math.cos(a))
            )
        pen.polygon(pts, _hex("#FBF1CF"), _hex("#B98A3E"), 0.008)
        pen.ellipse(cx, cy, 0.012, 0.02, _hex("#5A3A20"))


# --- nuts --------------------------------------------------------------------------------------


def _hickory(pen: _Pen, cx: float, cy: float, r: float) -> None:
    pen.ellipse(cx, cy, r, r * 1.05, _hex("#6E4A2A"), _hex("#3A2412"), 0.006)
    pen.line([(cx, cy - r), (cx, cy + r)], _hex("#3A2412"), 0.006)
    pen.ellipse(cx - r * 0.35, cy - r * 0.35, r * 0.25, r * 0.2, _hex("#8E6A44"))


def _hickory_nuts(pen: _Pen, p: _Palette) -> None:
    # 手剥山核桃: a pile of small round hickory nuts, one cracked open
    for cx, cy in (
        (0.32, 0.72),
        (0.46, 0.74),
        (0.60, 0.73),
        (0.72, 0.70),
        (0.39, 0.60),
        (0.53, 0.61),
        (0.66, 0.59),
        (0.46, 0.48),
        (0.59, 0.47),
    ):
        _hickory(pen, cx, cy, 0.07)
    pen.draw.pieslice(
        (pen.px(0.20), pen.px(0.36), pen.px(0.36), pen.px(0.52)), 90, 270, fill=_hex("#6E4A2A")
    )
    pen.ellipse(0.285, 0.44, 0.04, 0.06, _hex("#D9B27A"), _hex("#8A5A2A"), 0.005)


def _kernel(pen: _Pen, cx: float, cy: float, s: float) -> None:
    for dx, dy in ((-0.03, -0.02), (0.03, -0.02), (-0.03, 0.03), (0.03, 0.03)):
        pen.ellipse(
            cx + dx * s, cy + dy * s, 0.035 * s, 0.03 * s, _hex("#C48A4A"), _hex("#6E4520"), 0.004
        )


def _hickory_kernels(pen: _Pen, p: _Palette) -> None:
    # 山核桃仁: a gold tin with a clear lid showing kernels, loose kernels in front
    _tin(pen, 0.46, 0.34, 0.74, 0.20, _hex("#C8A04A"), _hex("#6E2A1A"))
    pen.ellipse(0.46, 0.34, 0.17, 0.045, _hex("#8E5A2A"))
    for cx in (0.38, 0.46, 0.54):
        _kernel(pen, cx, 0.335, 0.45)
    for cx, cy in ((0.66, 0.74), (0.76, 0.68), (0.30, 0.80)):
        _kernel(pen, cx, cy, 1.1)


def _hickory_gift(pen: _Pen, p: _Palette) -> None:
    # 山核桃 礼盒: a dark-green gift box tied with a gold ribbon and bow, nuts in front
    _box(pen, 0.22, 0.36, 0.70, 0.78, _hex("#2F5A3A"), _GOLD)
    pen.line([(0.46, 0.36), (0.46, 0.78)], _GOLD, 0.025)
    pen.line([(0.28, 0.33), (0.70, 0.33)], _GOLD, 0.02)
    pen.polygon(_rotated_ellipse(0.41, 0.30, 0.06, 0.03, -20), _GOLD, _hex("#8A6A1A"), 0.005)
    pen.polygon(_rotated_ellipse(0.53, 0.30, 0.06, 0.03, 20), _GOLD, _hex("#8A6A1A"), 0.005)
    _hickory(pen, 0.74, 0.78, 0.06)
    _hickory(pen, 0.64, 0.80, 0.05)


def _peanut(pen: _Pen, cx: float, cy: float, ang: float) -> None:
    """One peanut in its shell: two elongated lobes with a waist, a net of ridges."""
    a = math.radians(ang)
    ux, uy = math.cos(a), math.sin(a)
    shell, dark = _hex("#D8B07A"), _hex("#7A5228")
    for off, r in ((-0.065, 0.058), (0.065, 0.064)):
        pen.polygon(
            _rotated_ellipse(cx + off * ux, cy + off * uy, r * 1.15, r, ang), shell, dark, 0.006
        )
    pen.polygon(_rotated_ellipse(cx, cy, 0.05, 0.042, ang), shell)
    ridge = _mix(shell, dark, 0.5)
    for t in (-0.11, -0.07, -0.03, 0.03, 0.07, 0.11):  # ridges across the shell
        w = 0.035 if abs(t) < 0.05 else 0.045
        x, y = cx + t * ux, cy + t * uy
        pen.line([(x + w * uy, y - w * ux), (x - w * uy, y + w * ux)], ridge, 0.005)
    pen.line([(cx - 0.12 * ux, cy - 0.12 * uy), (cx + 0.12 * ux, cy + 0.12 * uy)], ridge, 0.005)


def _peanuts(pen: _Pen, p: _Palette) -> None:
    # 五香花生: peanuts in their waisted shells, one opened with two red-skinned nuts
    for cx, cy, ang in ((0.36, 0.72, 15), (0.64, 0.72, -20), (0.58, 0.48, -55)):
        _peanut(pen, cx, cy, ang)
    pen.polygon(
        _rotated_ellipse(0.30, 0.40, 0.09, 0.045, 30), _hex("#E8C99A"), _hex("#7A5228"), 0.006
    )
    pen.ellipse(0.27, 0.385, 0.03, 0.025, _hex("#A8442E"))
    pen.ellipse(0.33, 0.42, 0.03, 0.025, _hex("#A8442E"))


# --- dried goods -------------------------------------------------------------------------------


def _bamboo_shoots(pen: _Pen, p: _Palette) -> None:
    # 笋干: a bundle of flat dried shoot strips tied with red string, and a fresh shoot behind
    tip = (0.70, 0.22)
    pen.polygon([(0.60, 0.56), tip, (0.80, 0.56)], _hex("#B98A3E"), _hex("#5A3A1A"), 0.006)
    for k in (0.3, 0.55):
        y = 0.56 - 0.34 * k
        pen.line(
            [(0.70 - 0.1 * (1 - k), y + 0.01), (0.70 + 0.1 * (1 - k), y + 0.01)],
            _hex("#5A3A1A"),
            0.006,
        )
    for i in range(7):  # strips, fanned
        x = 0.26 + 0.04 * i
        pen.polygon(
            [
                (x - 0.02, 0.82),
                (x + 0.015, 0.82),
                (x + 0.04 + 0.01 * i - 0.03, 0.36),
                (x + 0.01 * i - 0.03, 0.36),
            ],
            _hex("#C8A858") if i % 2 else _hex("#A8843A"),
            _hex("#6B4E1A"),
            0.004,
        )
    pen.rounded(0.24, 0.57, 0.56, 0.61, 0.01, _RED)


def _vermicelli(pen: _Pen, p: _Palette) -> None:
    # 红薯粉丝: a folded bundle of grey-brown glassy strands, tied in the middle
    strand, dark = _hex("#9C8A86"), _hex("#5E504C")
    for i in range(15):
        x = 0.30 + 0.028 * i
        wobble = 0.01 * math.sin(i * 1.9)
        pen.line(
            [(x, 0.26), (x + wobble, 0.50), (x - wobble, 0.80)], strand if i % 3 else dark, 0.008
        )
    pen.arc(0.50, 0.26, 0.20, 0.04, 180, 360, dark, 0.008)  # the folded ends
    pen.arc(0.50, 0.80, 0.20, 0.04, 0, 180, dark, 0.008)
    for y in (0.42, 0.62):
        pen.rounded(0.27, y, 0.73, y + 0.035, 0.01, _RED)


def _black_sesame(pen: _Pen, p: _Palette) -> None:
    # 黑芝麻: a white bowl heaped with black seeds, a few spilled in front
    pen.ellipse(0.5, 0.50, 0.25, 0.14, _hex("#1E1E1E"))  # the heap
    pen.draw.pieslice(
        (pen.px(0.24), pen.px(0.34), pen.px(0.76), pen.px(0.80)),
        0,
        180,
        fill=_WHITE,
        outline=_hex("#9A9A9A"),
        width=round(pen.px(0.006)),
    )
    pen.line([(0.28, 0.62), (0.72, 0.62)], _hex("#2F6FA8"), 0.012)
    seed = 7
    for _ in range(70):
        seed = (seed * 1103515245 + 12345) % 2**31
        u, v = (seed % 1000) / 1000, (seed // 1000 % 1000) / 1000
        x, y = 0.30 + 0.40 * u, 0.42 + 0.13 * v * (1 - abs(u - 0.5))
        pen.polygon(_rotated_ellipse(x, y, 0.012, 0.006, seed % 180), _hex("#3C3C3C"))
    for x, y in ((0.28, 0.86), (0.36, 0.88), (0.66, 0.87), (0.72, 0.85)):
        pen.polygon(_rotated_ellipse(x, y, 0.013, 0.007, 30), _hex("#111111"))


def _mushroom(pen: _Pen, cx: float, cy: float, s: float) -> None:
    pen.rounded(
        cx - 0.035 * s,
        cy,
        cx + 0.035 * s,
        cy + 0.17 * s,
        0.02 * s,
        _hex("#EADBB8"),
        _hex("#8A6A3A"),
        0.005,
    )
    pen.draw.chord(
        (
            pen.px(cx - 0.15 * s),
            pen.px(cy - 0.11 * s),
            pen.px(cx + 0.15 * s),
            pen.px(cy + 0.06 * s),
        ),
        180,
        360,
        fill=_hex("#7A4A26"),
    )
    pen.ellipse(cx, cy - 0.025 * s, 0.15 * s, 0.03 * s, _hex("#7A4A26"))
    for dx, dy in ((-0.07, -0.06), (0.0, -0.08), (0.07, -0.055), (-0.03, -0.035), (0.05, -0.03)):
        pen.line(
            [
                (cx + dx * s - 0.015 * s, cy + dy * s),
                (cx + dx * s + 0.015 * s, cy + dy * s - 0.01 * s),
            ],
            _hex("#E6CFA6"),
            0.007 * s,
        )  # the cracked cap of 花菇


def _shiitake(pen: _Pen, p: _Palette) -> None:
    # 香菇: three dried shiitake with cracked brown caps and pale stems
    _mushroom(pen, 0.36, 0.50, 1.0)
    _mushroom(pen, 0.64, 0.46, 1.1)
    _mushroom(pen, 0.52, 0.66, 0.9)


# --- grain and oil -----------------------------------------------------------------------------


def _rice_sack(pen: _Pen, p: _Palette) -> None:
    # 大米: a cloth rice sack tied at the neck, red print, a scoop of white rice in front
    sack, dark = _hex("#EFE6CF"), _hex("#8A7A5A")
    pen.polygon(
        [(0.30, 0.34), (0.70, 0.34), (0.76, 0.62), (0.72, 0.82), (0.28, 0.82), (0.24, 0.62)],
        sack,
        dark,
        0.008,
    )
    pen.polygon(
        [(0.36, 0.34), (0.40, 0.22), (0.46, 0.30), (0.54, 0.20), (0.60, 0.30), (0.64, 0.34)],
        sack,
        dark,
        0.006,
    )
    pen.rounded(0.39, 0.32, 0.61, 0.36, 0.01, _RED)
    pen.ellipse(0.50, 0.56, 0.11, 0.09, _RED)
    for k in range(5):  # an ear of rice printed in the circle
        pen.polygon(_rotated_ellipse(0.47 + 0.015 * k, 0.61 - 0.025 * k, 0.016, 0.008, -45), _GOLD)
    pen.ellipse(0.70, 0.80, 0.11, 0.05, _WHITE, _hex("#C9C0A8"), 0.005)
    for k in range(8):
        pen.polygon(
            _rotated_ellipse(0.62 + 0.022 * k, 0.78 + 0.01 * math.sin(k), 0.012, 0.006, 20 * k),
            _hex("#E7E0CC"),
        )


def _sesame_oil(pen: _Pen, p: _Palette) -> None:
    # 小磨香油: a tall glass bottle of amber oil with a red cap, sesame seeds beside it
    oil, dark = _hex("#B8741A"), _hex("#5A3408")
    pen.polygon(
        [
            (0.44, 0.22),
            (0.56, 0.22),
            (0.56, 0.34),
            (0.64, 0.44),
            (0.64, 0.84),
            (0.36, 0.84),
            (0.36, 0.44),
            (0.44, 0.34),
        ],
        oil,
        dark,
        0.008,
    )
    pen.rounded(0.43, 0.14, 0.57, 0.23, 0.015, _RED, _hex("#6A1010"), 0.005)
    pen.rounded(0.36, 0.56, 0.64, 0.74, 0.0, _hex("#F6E7C0"))
    _label(pen, 0.36, 0.60, 0.64, 0.06, _RED)
    pen.line([(0.40, 0.46), (0.40, 0.54)], _hex("#F2C46A"), 0.014)
    for x, y, a in ((0.74, 0.80, 20), (0.78, 0.76, 70), (0.24, 0.80, 140), (0.28, 0.77, 100)):
        pen.polygon(
            _rotated_ellipse(x, y, 0.016, 0.009, a), _hex("#F4E4C0"), _hex("#9A7A4A"), 0.003
        )


def _millet(pen: _Pen, p: _Palette) -> None:
    # 小米: a drooping ear of millet over a bowl of tiny yellow grains
    pen.arc(0.30, 0.55, 0.30, 0.35, 270, 350, _hex("#7A8A2A"), 0.012)  # stalk
    for k in range(9):  # the drooping panicle
        t = k / 8
        pen.ellipse(
            0.56 + 0.08 * t,
            0.24 + 0.20 * t,
            0.035 - 0.01 * t,
            0.04,
            _hex("#E0B43A"),
            _hex("#8A6A1A"),
            0.004,
        )
    pen.ellipse(0.5, 0.62, 0.22, 0.07, _hex("#F2C84A"))
    for k in range(40):
        pen.ellipse(
            0.31 + 0.38 * ((k * 37) % 40) / 40,
            0.60 + 0.04 * math.sin(k * 2.3),
            0.007,
            0.007,
            _hex("#D49A1A"),
        )
    pen.draw.pieslice(
        (pen.px(0.28), pen.px(0.52), pen.px(0.72), pen.px(0.86)),
        0,
        180,
        fill=_hex("#6E4A2A"),
        outline=_hex("#3A2412"),
        width=round(pen.px(0.006)),
    )


# --- honey -------------------------------------------------------------------------------------


def _bee(pen: _Pen, cx: float, cy: float) -> None:
    pen.polygon(
        _rotated_ellipse(cx - 0.02, cy - 0.035, 0.03, 0.018, -60),
        _hex("#EAF4FF"),
        _hex("#6A7A8A"),
        0.004,
    )
    pen.polygon(
        _rotated_ellipse(cx + 0.02, cy - 0.035, 0.03, 0.018, -120),
        _hex("#EAF4FF"),
        _hex("#6A7A8A"),
        0.004,
    )
    pen.ellipse(cx, cy, 0.04, 0.027, _hex("#F5C02A"), _BLACK, 0.004)
    for dx in (-0.012, 0.012):
        pen.line([(cx + dx, cy - 0.024), (cx + dx, cy + 0.024)], _BLACK, 0.008)


def _honey_dipper(pen: _Pen, p: _Palette) -> None:
    # 土蜂蜜: a wide jar of dark amber honey, a wooden dipper dripping, a bee
    _jar(pen, 0.24, 0.40, 0.64, 0.82, _hex("#C26A10"), _hex("#7A4A1E"))
    pen.rounded(0.28, 0.56, 0.60, 0.70, 0.015, _hex("#F6E7C0"))
    _label(pen, 0.30, 0.59, 0.58, 0.08, _hex("#8A4B12"))
    pen.line([(0.58, 0.36), (0.80, 0.20)], _hex("#A8743A"), 0.025)  # dipper handle
    pen.polygon(
        _rotated_ellipse(0.56, 0.38, 0.06, 0.04, -35), _hex("#C8924A"), _hex("#6A4218"), 0.006
    )
    for k in (-1, 0, 1):
        pen.line(
            [
                (0.56 + k * 0.025 - 0.015, 0.36 + k * 0.02),
                (0.56 + k * 0.025 + 0.015, 0.40 + k * 0.02),
            ],
            _hex("#6A4218"),
            0.006,
        )
    pen.line([(0.56, 0.42), (0.56, 0.50)], _hex("#E8A020"), 0.018)
    _bee(pen, 0.76, 0.52)


def _flower_honey(pen: _Pen, p: _Palette) -> None:
    # 百花蜜: a tall slim jar of golden honey with a green lid, wildflowers beside it
    _jar(pen, 0.24, 0.34, 0.52, 0.82, _hex("#F0B020"), _hex("#3E8A4A"))
    pen.rounded(0.27, 0.52, 0.49, 0.68, 0.015, _WHITE)
    _em_orchid(pen, 0.38, 0.60, 0.8)
    for cx, cy, petal in (
        (0.68, 0.36, "#E8608A"),
        (0.78, 0.50, "#9A6ADA"),
        (0.64, 0.58, "#F2F2F2"),
    ):
        pen.line([(cx, cy), (0.70, 0.82)], _LEAF_DARK, 0.01)
        for k in range(6):
            a = 2 * math.pi * k / 6
            pen.ellipse(
                cx + 0.035 * math.cos(a), cy + 0.035 * math.sin(a), 0.026, 0.026, _hex(petal)
            )
        pen.ellipse(cx, cy, 0.02, 0.02, _hex("#F5C02A"))
    _leaf(pen, (0.70, 0.80), 0.12, 0.03, -50, _LEAF, _LEAF_DARK)


# --- crafts ------------------------------------------------------------------------------------


def _storage_basket(pen: _Pen, p: _Palette) -> None:
    # 柳编收纳篮: a rectangular willow storage basket with two side grips, no arched handle
    wicker, dark = _hex("#D8B27A"), _hex("#7E5228")
    pen.polygon([(0.20, 0.40), (0.80, 0.40), (0.76, 0.80), (0.24, 0.80)], wicker, dark, 0.008)
    for k in range(1, 7):
        y = 0.40 + 0.057 * k
        pen.line(
            [(0.21 + 0.006 * k, y), (0.79 - 0.006 * k, y)], dark if k % 2 else _hex("#B88A4A"), 0.01
        )
    for k in range(1, 12):
        x = 0.20 + 0.05 * k
        pen.line([(x, 0.41), (x - 0.003 * (k - 6), 0.79)], _hex("#B88A4A"), 0.006)
    pen.rounded(0.18, 0.37, 0.82, 0.42, 0.02, dark)
    for x in (0.26, 0.66):  # grips
        pen.rounded(x, 0.45, x + 0.08, 0.49, 0.02, _hex("#3A2412"))


def _fruit_tray(pen: _Pen, p: _Palette) -> None:
    # 柳编果盘: a shallow round woven tray seen from above, fruit in it
    pen.ellipse(0.5, 0.58, 0.32, 0.22, _hex("#C89A5C"), _hex("#7E5228"), 0.01)
    pen.ellipse(0.5, 0.58, 0.26, 0.17, _hex("#E2BE86"), _hex("#9A6A34"), 0.006)
    for k in range(16):
        a = 2 * math.pi * k / 16
        pen.line(
            [
                (0.5 + 0.26 * math.cos(a), 0.58 + 0.17 * math.sin(a)),
                (0.5 + 0.32 * math.cos(a), 0.58 + 0.22 * math.sin(a)),
            ],
            _hex("#7E5228"),
            0.006,
        )
    for r in (0.08, 0.16):
        pen.arc(0.5, 0.58, r * 1.5, r, 0, 360, _hex("#B88A4A"), 0.005)
    pen.ellipse(0.42, 0.54, 0.08, 0.07, _hex("#D8443A"), _hex("#7A1A1A"), 0.005)  # an apple
    pen.ellipse(0.58, 0.56, 0.075, 0.07, _hex("#F2A03A"), _hex("#9A5A10"), 0.005)  # a peach
    _pear_shape(pen, 0.52, 0.50, 0.7, _hex("#E4E07A"), _hex("#7A6A2B"))


def _table_runner(pen: _Pen, p: _Palette) -> None:
    # 挑花桌旗: a white cloth runner lying diagonally, blue cross-stitch motifs, tassels at the ends
    blue = _hex("#24508A")
    a = math.radians(-30)
    ux, uy, vx, vy = math.cos(a), math.sin(a), -math.sin(a), math.cos(a)

    def at(u: float, v: float) -> tuple[float, float]:
        return 0.5 + u * ux + v * vx, 0.55 + u * uy + v * vy

    pen.polygon(
        [at(-0.36, -0.11), at(0.36, -0.11), at(0.36, 0.11), at(-0.36, 0.11)],
        _hex("#FAF7EE"),
        _hex("#9A9A8A"),
        0.006,
    )
    for u in (-0.22, 0.0, 0.22):  # three diamond motifs of crosses
        for du, dv in ((0, -0.06), (0.06, 0), (0, 0.06), (-0.06, 0), (0, 0)):
            x, y = at(u + du, dv)
            pen.line([(x - 0.012, y - 0.012), (x + 0.012, y + 0.012)], blue, 0.006)
            pen.line([(x - 0.012, y + 0.012), (x + 0.012, y - 0.012)], blue, 0.006)
    for v in (-0.09, 0.09):
        pen.line([at(-0.34, v), at(0.34, v)], blue, 0.006)
    for end in (-0.36, 0.36):
        for k in range(6):
            v = -0.09 + 0.036 * k
            pen.line([at(end, v), at(end + 0.05 * (1 if end > 0 else -1), v)], blue, 0.008)


def _bamboo_fan(pen: _Pen, p: _Palette) -> None:
    # 舒席竹扇: a round fan of finely woven bamboo on a straight handle, a red tassel
    pen.line([(0.5, 0.58), (0.5, 0.88)], _hex("#8A5A2A"), 0.03)
    pen.ellipse(0.5, 0.42, 0.24, 0.24, _hex("#E3C98A"), _hex("#7E5228"), 0.012)
    for k in range(-5, 6):  # the weave: two crossing sets of strips
        off = 0.04 * k
        pen.line([(0.5 + off - 0.15, 0.27), (0.5 + off + 0.15, 0.57)], _hex("#C8A25A"), 0.008)
        pen.line([(0.5 + off + 0.15, 0.27), (0.5 + off - 0.15, 0.57)], _hex("#B88E48"), 0.006)
    pen.ellipse(0.5, 0.42, 0.24, 0.24, _hex("#E3C98A"))  # mask to the circle below
    for k in range(-5, 6):
        off = 0.038 * k
        half = math.sqrt(max(0.0, 0.22**2 - off**2))
        pen.line([(0.5 + off, 0.42 - half), (0.5 + off, 0.42 + half)], _hex("#C8A25A"), 0.007)
        pen.line([(0.5 - half, 0.42 + off), (0.5 + half, 0.42 + off)], _hex("#B88E48"), 0.005)
    pen.arc(0.5, 0.42, 0.24, 0.24, 0, 360, _hex("#7E5228"), 0.014)
    pen.line([(0.5, 0.88), (0.56, 0.90)], _RED, 0.012)
    pen.ellipse(0.58, 0.90, 0.02, 0.02, _RED)


# data table: one drawing per product id of the demo catalog (kiosk/sim/demo_data.py)
PRODUCT_ART: dict[str, Drawing] = {
    "TEA-LAGP-250": _tea("tin", "#2E7D32", _RED, _em_melon_seed),
    "TEA-LAGP-50": _tea("pouch", "#8BC34A", _RED, _em_melon_seed),
    "TEA-YXCL-100": _tea("box", "#00897B", _GOLD, _em_leaves_bud),
    "TEA-STSE-100": _tea("tin", "#5E4B8B", _GOLD, _em_selenium),
    "TEA-THGJ-100": _tea("box", "#B71C1C", _GOLD, _em_spear_bud),
    "TEA-HSHY-100": _tea("box", "#F2C12E", _hex("#2E7D32"), _em_yellow_buds),
    "TEA-SCLH-50": _tea("pouch", "#E58FAE", _hex("#7A1F4A"), _em_orchid),
    "TEA-QSTZ-100": _tea("box", "#1F3F66", _RED, _em_swords),
    "HLT-HSSH-50": _dendrobium_box,
    "HLT-DSLG-150": _pear_paste,
    "FRT-DSSL-5KG": _pears_box,
    "FRT-JZMHT-12": _kiwifruit,
    "FRT-DSHT-425": _peach_can,
    "SNK-JZMHT-100": _dried_kiwi,
    "SNK-DSLP-50": _pear_crisps,
    "NUT-JZHT-250": _hickory_nuts,
    "NUT-JZHR-100": _hickory_kernels,
    "NUT-JZHT-GIFT": _hickory_gift,
    "NUT-LXHS-250": _peanuts,
    "DRY-STSG-250": _bamboo_shoots,
    "DRY-LQFS-500": _vermicelli,
    "DRY-LQZM-250": _black_sesame,
    "DRY-YXXG-150": _shiitake,
    "GRN-SSDM-5KG": _rice_sack,
    "GRN-YSXY-250": _sesame_oil,
    "GRN-LBXM-500": _millet,
    "HNY-YXTF-500": _honey_dipper,
    "HNY-JZBH-250": _flower_honey,
    "CRF-FNLB-LAN": _storage_basket,
    "CRF-FNLB-PAN": _fruit_tray,
    "CRF-WJTH-ZQ": _table_runner,
    "CRF-SCSX-SAN": _bamboo_fan,
}


def has_own_art(product_id: str) -> bool:
    """Whether `product_id` has its own drawing (else its category's drawing is used)."""
    return product_id in PRODUCT_ART
