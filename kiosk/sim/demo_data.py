"""Demo data: a catalog of Anhui poverty-alleviation products, planograms, stock and images.

Owns: the data a kiosk shows out of the box on a laptop (`kiosk store seed-demo`,
`kiosk catalog summary --demo`), in the simulator and in tests. Nothing here is downloaded:
product tiles are drawn locally with Pillow.

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
``kiosk/data/`` (a unit test checks that the committed files equal the generated output).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from kiosk.core.catalog import Catalog, Category, Product
from kiosk.core.money import format_fen
from kiosk.core.planogram import Planogram, Slot, SlotKind, planogram_to_csv

__all__ = [
    "DATA_DIR",
    "DEMO_BOARD",
    "DEMO_CATALOG_VERSION",
    "DEMO_CSV_NAMES",
    "DEMO_PLANOGRAM_VERSION",
    "catalog_summary",
    "demo_catalog",
    "demo_csv_text",
    "demo_planogram",
    "demo_stock",
    "render_product_image",
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


# --- summary -------------------------------------------------------------------------------


def catalog_summary(catalog: Catalog) -> str:
    """Multi-line, human-readable overview for the CLI: counts, categories, counties, prices."""
    products = list(catalog)
    lines = [f"catalog version {catalog.version}: {len(products)} products"]
    if not products:
        return "\n".join(lines)
    prices = [p.price_fen for p in products]
    lines.append(f"price range: {format_fen(min(prices))} - {format_fen(max(prices))}")
    lines.append("by category:")
    by_cat = Counter(p.category for p in products)
    for cat in Category:
        if by_cat[cat]:
            lines.append(f"  {cat.value:<10} {by_cat[cat]:>3}")
    lines.append("by origin county:")
    counties = Counter(
        (p.origin_area_code, p.origin_county_zh, p.origin_county_en) for p in products
    )
    for (code, zh, en), n in sorted(counties.items()):
        lines.append(f"  {code} {zh} {en:<12} {n:>3}")
    return "\n".join(lines)


# --- images --------------------------------------------------------------------------------

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
    """A square RGB tile for `product`: category colour, gradient, a drawn category icon.

    No text (that would need a CJK font). Deterministic: the same product and size always give
    the same pixels.
    """
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
    _ICONS[product.category](_Pen(layer), palette)
    canvas = Image.alpha_composite(canvas, layer)
    return canvas.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)


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


if __name__ == "__main__":
    for written in write_demo_csvs():
        print(f"wrote {written}")
