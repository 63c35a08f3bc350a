"""`kiosk-provision label`: the asset label, 50 x 30 mm at 300 dpi (591 x 354 px), PNG and PDF.

Owns: the label layout (QR code with the kiosk's lookup URL on the left; kiosk id, site and
service phone in Chinese and English on the right) and its two files. Never shows a secret: the
QR holds only the public lookup URL, which names the kiosk id.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import qrcode
from PIL import Image, ImageDraw, ImageFont

from kiosk import exitcodes
from kiosk.config import KioskConfig
from provisioning.files import command_config

__all__ = ["DPI", "LABEL_PX", "add_parser", "cmd_label", "label_url", "render_label"]

DPI = 300
LABEL_MM = (50, 30)
LABEL_PX = (round(LABEL_MM[0] / 25.4 * DPI), round(LABEL_MM[1] / 25.4 * DPI))  # 591 x 354
DEFAULT_URL = "https://kiosk.ah.gov.example/k/{kiosk_id}"
FALLBACK_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)


def label_url(template: str, kiosk_id: str) -> str:
    return template.format(kiosk_id=kiosk_id) if "{kiosk_id}" in template else template


def _font_path(cfg: KioskConfig) -> Path | None:
    try:
        from provisioning.selftest import find_font

        return find_font(cfg)
    except Exception:
        for c in FALLBACK_FONTS:
            if Path(c).is_file():
                return Path(c)
    return None


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def render_label(cfg: KioskConfig, url: str, font_path: Path | None = None) -> Image.Image:
    w, h = LABEL_PX
    img = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(img)
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2, box_size=1)
    qr.add_data(url)
    qr.make(fit=True)
    modules = qr.get_matrix()
    n = len(modules)
    side = h - 24
    box = max(1, side // n)
    qimg = qr.make_image(fill_color="black", back_color="white").get_image().convert("L")
    qimg = qimg.resize((n * box, n * box), Image.Resampling.NEAREST)
    top = (h - qimg.height) // 2
    img.paste(qimg, (8, top))
    x = 8 + qimg.width + 10
    tw = w - x - 8
    fp = font_path or _font_path(cfg)

    def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        return ImageFont.truetype(str(fp), size) if fp else ImageFont.load_default()

    ident = cfg.identity
    lines = [
        ("扶贫智能售货柜", 30),
        ("Poverty-alleviation kiosk", 20),
        (ident.kiosk_id, 34),
        (ident.site_name, 22),
        (f"区划 Area {ident.area_code}", 20),
        ("扫码查询 Scan for info", 19),
        (f"服务 Service {cfg.ui.service_phone}", 19),
    ]
    y = 14
    for text, size in lines:
        f = font(size)
        shown = _fit(draw, text, f, tw) if isinstance(f, ImageFont.FreeTypeFont) else text
        draw.text((x, y), shown, fill=0, font=f)
        y += size + 12
    draw.rectangle((0, 0, w - 1, h - 1), outline=0, width=2)
    return img


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("label", help="asset label (50x30 mm, 300 dpi) as PNG and PDF")
    p.add_argument("--config", metavar="PATH")
    p.add_argument(
        "--out",
        metavar="STEM",
        default="kiosk-label",
        help="output path without extension (default ./kiosk-label -> .png, .pdf)",
    )
    p.add_argument(
        "--url",
        default=DEFAULT_URL,
        help="lookup URL in the QR; {kiosk_id} is replaced (default %(default)s)",
    )
    p.set_defaults(func=cmd_label)


def cmd_label(args: argparse.Namespace) -> int:
    loaded = command_config(args.config)
    if loaded is None:
        return exitcodes.USAGE
    cfg = loaded[1]
    url = label_url(args.url, cfg.identity.kiosk_id)
    img = render_label(cfg, url)
    stem = Path(args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    img.save(png, dpi=(DPI, DPI))
    img.convert("RGB").save(pdf, "PDF", resolution=DPI)
    print(
        f"label for {cfg.identity.kiosk_id}: {png} and {pdf} ({LABEL_PX[0]}x{LABEL_PX[1]} px, "
        f"{LABEL_MM[0]}x{LABEL_MM[1]} mm at {DPI} dpi)"
    )
    print(f"QR: {url}")
    return exitcodes.OK
