"""Demo data: a catalog of Anhui poverty-alleviation products, planograms, stock and images.

Owns: the data a kiosk shows out of the box on a laptop (`kiosk store seed-demo`,
`kiosk catalog summary --demo`), in the simulator and in tests. Nothing here is downloaded:
product tiles are drawn locally by kiosk.ui.placeholders, each product with its own drawing
from kiosk.ui.product_art (production code the live kiosk also uses for a product without a
picture file).

The products are real specialties of Anhui's poverty counties (六安瓜片, 岳西翠兰, 霍山石斛,
砀山酥梨, 金寨山核桃, 阜南柳编 ...), and the origin area codes are the real GB/T 2260 county codes.
The cooperatives (合作社) and certification numbers are invented for the demo.

Demo certification number format (ours, not the official national format)::

    FP-<area code>-<year>-<serial>        e.g. FP-340828-2020-0137

- ``FP``: 扶贫产品 (certified poverty-alleviation product);
- ``<area code>``: the 6-digit GB/T 2260 code of the origin county, the same as
  ``Product.origin_area_code``;
- ``<year>``: the year of certification (认定), 2019 or 2020 in the demo;
- ``<serial>``: 4-digit serial number within that county and year.

Run ``python -m kiosk.sim.demo_data`` to regenerate the example planogram CSVs in
``kiosk/data/`` (a unit test checks that the committed files equal the generated output); add
``--contact-sheet`` to also redraw ``docs/ui/products.png``, every demo product's picture.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from kiosk.core.catalog import Catalog, Category, Product
from kiosk.core.planogram import Planogram, Slot, SlotKind, planogram_to_csv
from kiosk.ui.placeholders import render_product_image

__all__ = [
    "DATA_DIR",
    "DEMO_BOARD",
    "DEMO_CATALOG_VERSION",
    "DEMO_CSV_NAMES",
    "DEMO_PLANOGRAM_VERSION",
    "demo_catalog",
    "demo_csv_text",
    "demo_planogram",
    "demo_stock",
    "write_demo_contact_sheet",
    "write_demo_csvs",
    "write_demo_images",
]

DEMO_CATALOG_VERSION = 1
DEMO_PLANOGRAM_VERSION = 1
DEMO_BOARD = 0  # bus address of the single control board: 0 is the main board (serial-protocol.md)

#: Where the example planogram CSVs technicians can copy live (package data).
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DEMO_CSV_NAMES: dict[SlotKind, str] = {
    SlotKind.SPIRAL: "planogram-spiral-demo.csv",
    SlotKind.LOCKER: "planogram-locker-demo.csv",
}

# --- counties ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _County:
    zh: str
    en: str
    code: str  # GB/T 2260


_JINZHAI = _County("金寨县", "Jinzhai", "341524")
_HUOSHAN = _County("霍山县", "Huoshan", "341525")
_SHUCHENG = _County("舒城县", "Shucheng", "341523")
_YUEXI = _County("岳西县", "Yuexi", "340828")
_TAIHU = _County("太湖县", "Taihu", "340825")
_QIANSHAN = _County("潜山市", "Qianshan", "340882")  # county-level city since 2018
_SUSONG = _County("宿松县", "Susong", "340826")
_WANGJIANG = _County("望江县", "Wangjiang", "340827")
_DANGSHAN = _County("砀山县", "Dangshan", "341321")
_LINGBI = _County("灵璧县", "Lingbi", "341323")
_SHITAI = _County("石台县", "Shitai", "341722")
_FUNAN = _County("阜南县", "Funan", "341225")
_LINQUAN = _County("临泉县", "Linquan", "341221")
_YINGSHANG = _County("颍上县", "Yingshang", "341226")
_LIXIN = _County("利辛县", "Lixin", "341623")

# --- producers (invented cooperatives) -----------------------------------------------------

_P_LAGP = ("金寨县齐云山茶叶专业合作社", "Jinzhai Qiyunshan Tea Cooperative")
_P_YXCL = ("岳西县姚河乡茶叶专业合作社", "Yaohe Township Tea Cooperative, Yuexi")
_P_STSE = ("石台县仙寓山富硒茶专业合作社", "Xianyushan Selenium-Rich Tea Cooperative, Shitai")
_P_THGJ = ("太湖县天华茶叶专业合作社", "Taihu Tianhua Tea Cooperative")
_P_HSHY = ("霍山县大化坪茶叶专业合作社", "Dahuaping Tea Cooperative, Huoshan")
_P_SCLH = ("舒城县晓天茶叶专业合作社", "Xiaotian Tea Cooperative, Shucheng")
_P_QSTZ = ("潜山市天柱山茶叶专业合作社", "Tianzhushan Tea Cooperative, Qianshan")
_P_HSSH = ("霍山县太平畈石斛种植专业合作社", "Taipingfan Dendrobium Growers' Cooperative, Huoshan")
_P_DSSL = ("砀山县良梨镇酥梨专业合作社", "Liangli Town Crisp Pear Cooperative, Dangshan")
_P_DSHT = ("砀山县玄庙黄桃专业合作社", "Xuanmiao Yellow Peach Cooperative, Dangshan")
_P_JZMHT = ("金寨县天堂寨猕猴桃专业合作社", "Tiantangzhai Kiwifruit Cooperative, Jinzhai")
_P_JZHT = ("金寨县燕子河山核桃专业合作社", "Yanzihe Hickory Nut Cooperative, Jinzhai")
_P_LXHS = ("利辛县阚疃花生专业合作社", "Kantuan Peanut Cooperative, Lixin")
_P_STSG = ("石台县矶滩笋干专业合作社", "Jitan Dried Bamboo Shoot Cooperative, Shitai")
_P_LQFS = ("临泉县杨桥粉丝专业合作社", "Yangqiao Vermicelli Cooperative, Linquan")
_P_LQZM = ("临泉县老集芝麻专业合作社", "Laoji Sesame Cooperative, Linquan")
_P_YXXG = ("岳西县主簿食用菌专业合作社", "Zhubu Mushroom Cooperative, Yuexi")
_P_SSDM = ("宿松县华亭稻米专业合作社", "Huating Rice Cooperative, Susong")
_P_YSXY = ("颍上县八里河芝麻油专业合作社", "Balihe Sesame Oil Cooperative, Yingshang")
_P_LBXM = ("灵璧县朝阳小米专业合作社", "Chaoyang Millet Cooperative, Lingbi")
_P_YXTF = ("岳西县包家中蜂养殖专业合作社", "Baojia Chinese Honeybee Cooperative, Yuexi")
_P_JZBH = ("金寨县果子园蜂业专业合作社", "Guoziyuan Apiculture Cooperative, Jinzhai")
_P_FNLB = ("阜南县黄岗柳编工艺专业合作社", "Huanggang Wicker Craft Cooperative, Funan")
_P_WJTH = ("望江县挑花手工艺专业合作社", "Wangjiang Cross-Stitch Handicraft Cooperative")
_P_SCSX = ("舒城县舒席工艺专业合作社", "Shuxi Bamboo Craft Cooperative, Shucheng")

# --- products ------------------------------------------------------------------------------

# (id, name zh, name en, year, serial, county, producer, category, price fen,
#  spec zh, spec en, shelf life days)
_Row = tuple[str, str, str, int, int, _County, tuple[str, str], Category, int, str, str, int]

_T, _H, _F, _S = Category.TEA, Category.HEALTH, Category.FRUIT, Category.SNACKS
_N, _D, _G, _Y, _C = (
    Category.NUTS,
    Category.DRIED,
    Category.GRAIN_OIL,
    Category.HONEY,
    Category.CRAFTS,
)

_PRODUCTS: tuple[_Row, ...] = (
    # tea
    ("TEA-LAGP-250", "六安瓜片 礼罐", "Lu'an Guapian green tea, gift tin", 2020, 137,
     _JINZHAI, _P_LAGP, _T, 12800, "250克/罐", "250 g tin", 540),
    ("TEA-LAGP-50", "六安瓜片 随手装", "Lu'an Guapian green tea, pocket pack", 2020, 138,
     _JINZHAI, _P_LAGP, _T, 3990, "50克/袋", "50 g pouch", 540),
    ("TEA-YXCL-100", "岳西翠兰", "Yuexi Cuilan green tea", 2020, 52,
     _YUEXI, _P_YXCL, _T, 8800, "100克/盒", "100 g box", 540),
    ("TEA-STSE-100", "石台富硒绿茶", "Shitai selenium-rich green tea", 2020, 21,
     _SHITAI, _P_STSE, _T, 6800, "100克/罐", "100 g tin", 540),
    ("TEA-THGJ-100", "太湖天华谷尖", "Taihu Tianhua Gujian green tea", 2019, 88,
     _TAIHU, _P_THGJ, _T, 5800, "100克/盒", "100 g box", 540),
    ("TEA-HSHY-100", "霍山黄芽", "Huoshan Huangya yellow tea", 2020, 64,
     _HUOSHAN, _P_HSHY, _T, 9800, "100克/盒", "100 g box", 540),
    ("TEA-SCLH-50", "舒城小兰花", "Shucheng Xiaolanhua green tea", 2019, 115,
     _SHUCHENG, _P_SCLH, _T, 3600, "50克/袋", "50 g pouch", 540),
    ("TEA-QSTZ-100", "天柱剑毫", "Tianzhu Jianhao green tea", 2020, 33,
     _QIANSHAN, _P_QSTZ, _T, 7800, "100克/盒", "100 g box", 540),
    # health
    ("HLT-HSSH-50", "霍山石斛枫斗 礼盒", "Huoshan dendrobium fengdou, gift box", 2020, 9,
     _HUOSHAN, _P_HSSH, _H, 16800, "50克/盒", "50 g gift box", 730),
    ("HLT-DSLG-150", "砀山梨膏", "Dangshan pear paste", 2020, 201,
     _DANGSHAN, _P_DSSL, _H, 2990, "150克/瓶", "150 g jar", 540),
    # fruit
    ("FRT-DSSL-5KG", "砀山酥梨 礼盒", "Dangshan crisp pears, gift box", 2020, 202,
     _DANGSHAN, _P_DSSL, _F, 5990, "5千克/箱", "5 kg box", 30),
    ("FRT-JZMHT-12", "金寨猕猴桃 礼盒", "Jinzhai kiwifruit, gift box", 2020, 140,
     _JINZHAI, _P_JZMHT, _F, 6800, "12枚/箱", "box of 12", 20),
    ("FRT-DSHT-425", "砀山黄桃罐头", "Dangshan yellow peaches in light syrup", 2019, 317,
     _DANGSHAN, _P_DSHT, _F, 990, "425克/罐", "425 g can", 730),
    # snacks
    ("SNK-JZMHT-100", "金寨猕猴桃果干", "Jinzhai dried kiwifruit slices", 2020, 141,
     _JINZHAI, _P_JZMHT, _S, 1990, "100克/袋", "100 g bag", 270),
    ("SNK-DSLP-50", "砀山酥梨脆片", "Dangshan pear crisps", 2020, 203,
     _DANGSHAN, _P_DSSL, _S, 1290, "50克/袋", "50 g bag", 270),
    # nuts
    ("NUT-JZHT-250", "金寨手剥山核桃", "Jinzhai hand-crack hickory nuts", 2020, 142,
     _JINZHAI, _P_JZHT, _N, 3990, "250克/袋", "250 g bag", 270),
    ("NUT-JZHR-100", "金寨山核桃仁", "Jinzhai hickory nut kernels", 2020, 143,
     _JINZHAI, _P_JZHT, _N, 4590, "100克/罐", "100 g tin", 270),
    ("NUT-JZHT-GIFT", "金寨山核桃 礼盒", "Jinzhai hickory nuts, gift box", 2020, 144,
     _JINZHAI, _P_JZHT, _N, 12800, "500克×2袋/盒", "2 × 500 g bags, gift box", 270),
    ("NUT-LXHS-250", "利辛五香花生", "Lixin five-spice peanuts", 2020, 76,
     _LIXIN, _P_LXHS, _N, 1590, "250克/袋", "250 g bag", 180),
    # dried goods
    ("DRY-STSG-250", "皖南笋干", "Southern Anhui dried bamboo shoots", 2020, 22,
     _SHITAI, _P_STSG, _D, 4500, "250克/袋", "250 g bag", 365),
    ("DRY-LQFS-500", "临泉红薯粉丝", "Linquan sweet-potato vermicelli", 2020, 95,
     _LINQUAN, _P_LQFS, _D, 1990, "500克/袋", "500 g bag", 540),
    ("DRY-LQZM-250", "临泉黑芝麻", "Linquan black sesame seeds", 2019, 48,
     _LINQUAN, _P_LQZM, _D, 1690, "250克/袋", "250 g bag", 365),
    ("DRY-YXXG-150", "岳西高山香菇", "Yuexi highland dried shiitake", 2020, 53,
     _YUEXI, _P_YXXG, _D, 3200, "150克/袋", "150 g bag", 365),
    # grain and oil
    ("GRN-SSDM-5KG", "宿松大米", "Susong rice", 2020, 61,
     _SUSONG, _P_SSDM, _G, 4990, "5千克/袋", "5 kg bag", 365),
    ("GRN-YSXY-250", "颍上小磨香油", "Yingshang stone-ground sesame oil", 2020, 27,
     _YINGSHANG, _P_YSXY, _G, 3990, "250毫升/瓶", "250 ml bottle", 540),
    ("GRN-LBXM-500", "灵璧小米", "Lingbi millet", 2019, 14,
     _LINGBI, _P_LBXM, _G, 1590, "500克/袋", "500 g bag", 365),
    # honey
    ("HNY-YXTF-500", "岳西土蜂蜜", "Yuexi Chinese honeybee honey", 2020, 54,
     _YUEXI, _P_YXTF, _Y, 8800, "500克/瓶", "500 g jar", 730),
    ("HNY-JZBH-250", "金寨百花蜜", "Jinzhai wildflower honey", 2020, 145,
     _JINZHAI, _P_JZBH, _Y, 3600, "250克/瓶", "250 g jar", 730),
    # crafts
    ("CRF-FNLB-LAN", "阜南柳编收纳篮", "Funan wicker storage basket", 2020, 12,
     _FUNAN, _P_FNLB, _C, 6800, "1只 (30×22厘米)", "1 basket (30 × 22 cm)", 3650),
    ("CRF-FNLB-PAN", "阜南柳编果盘", "Funan wicker fruit tray", 2020, 13,
     _FUNAN, _P_FNLB, _C, 3990, "1只 (直径28厘米)", "1 tray (28 cm diameter)", 3650),
    ("CRF-WJTH-ZQ", "望江挑花桌旗", "Wangjiang cross-stitch table runner", 2019, 7,
     _WANGJIANG, _P_WJTH, _C, 12800, "1条 (180×33厘米)", "1 runner (180 × 33 cm)", 3650),
    ("CRF-SCSX-SAN", "舒席竹扇", "Shuxi bamboo-weave fan", 2020, 116,
     _SHUCHENG, _P_SCSX, _C, 2990, "1把", "1 fan", 3650),
)  # fmt: skip


def _product(row: _Row) -> Product:
    pid, zh, en, year, serial, county, producer, cat, price, spec_zh, spec_en, days = row
    return Product(
        product_id=pid,
        name_zh=zh,
        name_en=en,
        certification_no=f"FP-{county.code}-{year}-{serial:04d}",
        origin_county_zh=county.zh,
        origin_county_en=county.en,
        origin_area_code=county.code,
        producer_zh=producer[0],
        producer_en=producer[1],
        category=cat,
        price_fen=price,
        spec_zh=spec_zh,
        spec_en=spec_en,
        shelf_life_days=days,
        image_ref=f"{pid}.png",
    )


def demo_catalog() -> Catalog:
    """The demo catalog (version 1): 32 products from 15 Anhui poverty counties."""
    return Catalog.of(DEMO_CATALOG_VERSION, (_product(r) for r in _PRODUCTS))


# --- planograms ----------------------------------------------------------------------------

SPIRAL_ROWS, SPIRAL_COLS = 6, 10
LOCKER_ROWS, LOCKER_COLS = 4, 6

# Spiral cabinet, row 1 is the top shelf. Popular items take 2-3 spirals; None is an unused slot.
_SPIRAL_LAYOUT: tuple[tuple[str | None, ...], ...] = (
    ("TEA-LAGP-50", "TEA-LAGP-50", "TEA-LAGP-50", "TEA-SCLH-50", "TEA-SCLH-50",
     "TEA-YXCL-100", "TEA-YXCL-100", "TEA-YXCL-100", "TEA-STSE-100", "TEA-STSE-100"),
    ("TEA-THGJ-100", "TEA-THGJ-100", "TEA-HSHY-100", "TEA-HSHY-100", "TEA-QSTZ-100",
     "TEA-QSTZ-100", "SNK-DSLP-50", "SNK-DSLP-50", "SNK-DSLP-50", None),
    ("SNK-JZMHT-100", "SNK-JZMHT-100", "SNK-JZMHT-100", "NUT-JZHT-250", "NUT-JZHT-250",
     "NUT-JZHT-250", "NUT-JZHR-100", "NUT-JZHR-100", "NUT-LXHS-250", "NUT-LXHS-250"),
    ("NUT-LXHS-250", "DRY-STSG-250", "DRY-STSG-250", "DRY-STSG-250", "DRY-YXXG-150",
     "DRY-YXXG-150", "DRY-LQZM-250", "DRY-LQZM-250", "DRY-LQFS-500", "DRY-LQFS-500"),
    ("DRY-LQFS-500", "GRN-LBXM-500", "GRN-LBXM-500", "HLT-DSLG-150", "HLT-DSLG-150",
     "HLT-DSLG-150", "HNY-JZBH-250", "HNY-JZBH-250", "HNY-JZBH-250", None),
    ("FRT-DSHT-425", "FRT-DSHT-425", "FRT-DSHT-425", "GRN-YSXY-250", "GRN-YSXY-250",
     "HNY-YXTF-500", "HNY-YXTF-500", "TEA-LAGP-250", "HLT-HSSH-50", None),
)  # fmt: skip

# Spiral depth: flat pouches fit a tight spiral (12), jars, cans and bottles need a wide pitch (8).
_SPIRAL_CAPACITY: dict[str, int] = {
    "TEA-LAGP-50": 12,
    "TEA-SCLH-50": 12,
    "SNK-DSLP-50": 12,
    "SNK-JZMHT-100": 12,
    "DRY-LQZM-250": 12,
    "HLT-DSLG-150": 8,
    "HNY-JZBH-250": 8,
    "HNY-YXTF-500": 8,
    "FRT-DSHT-425": 8,
    "GRN-YSXY-250": 8,
    "NUT-JZHR-100": 8,
    "TEA-LAGP-250": 8,
    "HLT-HSSH-50": 8,
}
_SPIRAL_DEFAULT_CAPACITY = 10

# Locker cabinet, slot 1 top left: gift boxes, crafts and heavy items, one per door.
_LOCKER_LAYOUT: tuple[str | None, ...] = (
    "TEA-LAGP-250", "TEA-LAGP-250", "HLT-HSSH-50", "HLT-HSSH-50", "NUT-JZHT-GIFT", "NUT-JZHT-GIFT",
    "TEA-YXCL-100", "HNY-YXTF-500", "HNY-YXTF-500", "FRT-JZMHT-12", "FRT-JZMHT-12", "CRF-WJTH-ZQ",
    "CRF-WJTH-ZQ", "CRF-SCSX-SAN", "CRF-SCSX-SAN", "CRF-FNLB-PAN", "CRF-FNLB-PAN", None,
    "FRT-DSSL-5KG", "FRT-DSSL-5KG", "GRN-SSDM-5KG", "GRN-SSDM-5KG", "CRF-FNLB-LAN", "CRF-FNLB-LAN",
)  # fmt: skip


def demo_planogram(kind: SlotKind) -> Planogram:
    """Version 1 of the demo layout for a spiral (60 slots) or locker (24 doors) cabinet.

    Both cabinets have one control board, the main board (bus address 0, `DEMO_BOARD`).
    Spiral: rows 1..6, columns 0..9, ``slot_no = row * 10 + col`` (10..69),
    ``address = (row - 1) * 10 + col``, capacity 8-12. Locker: 4 x 6 doors, ``slot_no`` 1..24,
    ``address = slot_no - 1``, capacity 1.
    """
    slots: list[Slot] = []
    if kind is SlotKind.SPIRAL:
        for r, line in enumerate(_SPIRAL_LAYOUT, start=1):
            for c, pid in enumerate(line):
                cap = _SPIRAL_CAPACITY.get(pid, _SPIRAL_DEFAULT_CAPACITY) if pid else 10
                address = (r - 1) * SPIRAL_COLS + c
                slots.append(Slot(r * 10 + c, DEMO_BOARD, address, SlotKind.SPIRAL, cap, pid, r, c))
    else:
        for i, pid in enumerate(_LOCKER_LAYOUT):
            r, c = divmod(i, LOCKER_COLS)
            slots.append(Slot(i + 1, DEMO_BOARD, i, SlotKind.LOCKER, 1, pid, r + 1, c))
    return Planogram.of(DEMO_PLANOGRAM_VERSION, slots)


# Slots left empty so the sold-out state can be shown: in the spiral cabinet the only slot of
# 霍山石斛 (sold out) and one of three slots of 六安瓜片 50 g (still on sale); in the locker
# cabinet the only door with 岳西翠兰 (sold out) and one of two wicker fruit trays.
_EMPTY_SLOTS: dict[SlotKind, frozenset[int]] = {
    SlotKind.SPIRAL: frozenset({10, 68}),
    SlotKind.LOCKER: frozenset({7, 17}),
}


def demo_stock(planogram: Planogram) -> dict[int, int]:
    """Initial fill level of every slot: mostly full, some half-sold, a couple empty.

    Unused slots (no product) are 0. Works for any planogram; the empty slots are chosen for
    the demo planograms.
    """
    levels: dict[int, int] = {}
    for s in planogram:
        if s.product_id is None or s.slot_no in _EMPTY_SLOTS[s.kind]:
            levels[s.slot_no] = 0
        elif s.capacity > 1 and s.slot_no % 7 == 3:
            levels[s.slot_no] = s.capacity // 2  # partly sold since the last restock
        else:
            levels[s.slot_no] = s.capacity
    return levels


def demo_csv_text(kind: SlotKind) -> str:
    """The example CSV for `kind`, exactly as `kiosk/data/` holds it."""
    return planogram_to_csv(demo_planogram(kind))


def write_demo_csvs(directory: Path = DATA_DIR) -> list[Path]:
    """Write the example planogram CSVs (spiral and locker) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for kind, name in DEMO_CSV_NAMES.items():
        path = directory / name
        _write_if_changed(path, demo_csv_text(kind).encode("utf-8"))
        paths.append(path)
    return paths


# --- images ---------------------------------------------------------------------------------


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _write_if_changed(path: Path, data: bytes) -> None:
    """Atomically write `data` unless the file already holds exactly these bytes."""
    try:
        if path.read_bytes() == data:
            return
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_demo_images(directory: Path, size: int = 256) -> list[Path]:
    """Write `<product_id>.png` for every demo product into `directory`; idempotent.

    Files that already hold the right image are left untouched. Returns the paths in catalog
    order.
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for product in demo_catalog():
        path = directory / product.image_ref
        _write_if_changed(path, _png_bytes(render_product_image(product, size)))
        paths.append(path)
    return paths


def write_demo_contact_sheet(path: Path, tile: int = 120, columns: int = 8) -> Path:
    """Write one PNG of every demo product's picture with its id and Chinese name under it
    (docs/ui/products.png). Needs a CJK font (kiosk.ui.fonts.find_cjk_font)."""
    from PIL import ImageDraw, ImageFont

    from kiosk.ui.fonts import find_cjk_font

    products = list(demo_catalog())
    font = ImageFont.truetype(str(find_cjk_font()), 13)
    small = ImageFont.truetype(str(find_cjk_font()), 10)
    cell_w, cell_h, pad = tile + 16, tile + 44, 8
    rows = -(-len(products) // columns)
    sheet = Image.new("RGB", (columns * cell_w + pad, rows * cell_h + pad), (250, 250, 248))
    draw = ImageDraw.Draw(sheet)
    for i, product in enumerate(products):
        r, c = divmod(i, columns)
        x, y = pad + c * cell_w, pad + r * cell_h
        sheet.paste(render_product_image(product, tile), (x, y))
        draw.text((x, y + tile + 3), product.name_zh, fill=(30, 30, 30), font=font)
        draw.text((x, y + tile + 21), product.product_id, fill=(110, 110, 110), font=small)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_if_changed(path, _png_bytes(sheet))
    return path


if __name__ == "__main__":
    for written in write_demo_csvs():
        print(f"wrote {written}")
    if "--contact-sheet" in sys.argv:
        print(f"wrote {write_demo_contact_sheet(Path('docs/ui/products.png'))}")
