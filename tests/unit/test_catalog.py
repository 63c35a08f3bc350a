"""Product validation, the catalog container, and the demo catalog."""

from __future__ import annotations

import dataclasses
import re

import pytest

from kiosk.core.catalog import Catalog, CatalogError, Category, Product, catalog_summary
from kiosk.sim.demo_data import demo_catalog

GOOD = Product(
    product_id="TEA-LAGP-250",
    name_zh="六安瓜片",
    name_en="Lu'an Guapian green tea",
    certification_no="FP-341524-2020-0137",
    origin_county_zh="金寨县",
    origin_county_en="Jinzhai",
    origin_area_code="341524",
    producer_zh="金寨县齐云山茶叶专业合作社",
    producer_en="Jinzhai Qiyunshan Tea Cooperative",
    category=Category.TEA,
    price_fen=12800,
    spec_zh="250克/罐",
    spec_en="250 g tin",
    shelf_life_days=540,
    image_ref="TEA-LAGP-250.png",
)


def test_good_product_is_accepted() -> None:
    assert GOOD.price_fen == 12800
    assert dataclasses.replace(GOOD, image_ref="").image_ref == ""  # placeholder image
    assert dataclasses.replace(GOOD, product_id="a").product_id == "a"
    assert dataclasses.replace(GOOD, product_id="A" * 32).product_id == "A" * 32
    assert dataclasses.replace(GOOD, product_id="x_1-Y").product_id == "x_1-Y"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"product_id": ""}, "product_id must be 1-32"),
        ({"product_id": "A" * 33}, "product_id must be 1-32"),
        ({"product_id": "-TEA"}, "product_id must be 1-32"),
        ({"product_id": "TEA LAGP"}, "product_id must be 1-32"),
        ({"product_id": "茶叶"}, "product_id must be 1-32"),
        ({"product_id": "TEA.250"}, "product_id must be 1-32"),
        ({"name_zh": ""}, "name_zh and name_en are required"),
        ({"name_zh": "  "}, "name_zh and name_en are required"),
        ({"name_en": ""}, "name_zh and name_en are required"),
        ({"certification_no": ""}, "certification_no is required"),
        ({"certification_no": " \t"}, "certification_no is required"),
        ({"origin_area_code": "34152"}, "origin_area_code must be a 6-digit"),
        ({"origin_area_code": "3415240"}, "origin_area_code must be a 6-digit"),
        ({"origin_area_code": "34152a"}, "origin_area_code must be a 6-digit"),
        ({"origin_area_code": ""}, "origin_area_code must be a 6-digit"),
        ({"price_fen": 0}, "price_fen must be a positive integer"),
        ({"price_fen": -100}, "price_fen must be a positive integer"),
        ({"price_fen": 12.8}, "price_fen must be a positive integer"),
        ({"price_fen": True}, "price_fen must be a positive integer"),
        ({"price_fen": "1280"}, "price_fen must be a positive integer"),
        ({"shelf_life_days": 0}, "shelf_life_days must be a positive integer"),
        ({"shelf_life_days": -1}, "shelf_life_days must be a positive integer"),
        ({"shelf_life_days": 30.5}, "shelf_life_days must be a positive integer"),
        ({"category": "tea"}, "category must be one of"),
    ],
)
def test_each_product_rule(changes: dict[str, object], message: str) -> None:
    with pytest.raises(CatalogError, match=re.escape(message)) as info:
        dataclasses.replace(GOOD, **changes)  # type: ignore[arg-type]
    assert "TEA-LAGP-250" in str(info.value) or "product_id" in changes


def test_all_problems_reported_at_once() -> None:
    with pytest.raises(CatalogError) as info:
        dataclasses.replace(GOOD, price_fen=0, origin_area_code="x", certification_no="")
    text = str(info.value)
    assert text.startswith("product 'TEA-LAGP-250': ")
    for part in ("price_fen", "origin_area_code", "certification_no"):
        assert part in text
    assert text.count(";") == 2


def test_catalog_error_is_a_value_error() -> None:
    assert issubclass(CatalogError, ValueError)


def test_catalog_lookup() -> None:
    other = dataclasses.replace(GOOD, product_id="TEA-LAGP-50", price_fen=3990)
    cat = Catalog.of(3, [GOOD, other])
    assert cat.version == 3
    assert len(cat) == 2
    assert "TEA-LAGP-50" in cat and "NOPE" not in cat
    assert cat["TEA-LAGP-50"].price_fen == 3990
    assert cat.get("NOPE") is None
    assert [p.product_id for p in cat] == ["TEA-LAGP-250", "TEA-LAGP-50"]
    with pytest.raises(KeyError):
        cat["NOPE"]


def test_catalog_rejects_duplicate_ids() -> None:
    dup = dataclasses.replace(GOOD, price_fen=1)
    with pytest.raises(CatalogError, match="duplicate product_id 'TEA-LAGP-250'"):
        Catalog.of(1, [GOOD, dup])


def test_empty_catalog() -> None:
    cat = Catalog.of(0, [])
    assert len(cat) == 0 and list(cat) == []
    assert catalog_summary(cat) == "catalog version 0: 0 products"


# --- the demo catalog ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> Catalog:
    return demo_catalog()


def test_demo_catalog_size_and_ids(demo: Catalog) -> None:
    assert len(demo) >= 24
    ids = [p.product_id for p in demo]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[A-Z0-9-]{3,20}", pid) for pid in ids)
    assert demo.version == 1


def test_demo_products_are_complete(demo: Catalog) -> None:
    for p in demo:
        for text in (p.name_zh, p.name_en, p.origin_county_zh, p.origin_county_en,
                     p.producer_zh, p.producer_en, p.spec_zh, p.spec_en):  # fmt: skip
            assert text.strip(), p.product_id
        assert re.search(r"[\u4e00-\u9fff]", p.name_zh), p.name_zh  # Chinese
        assert p.name_en.isascii(), p.name_en
        assert p.origin_area_code.startswith("34"), p  # Anhui
        assert isinstance(p.price_fen, int) and not isinstance(p.price_fen, bool)
        assert 990 <= p.price_fen <= 16800, p
        assert p.shelf_life_days > 0
        assert p.image_ref == f"{p.product_id}.png"
        assert p.certification_no.startswith(f"FP-{p.origin_area_code}-"), p
        assert re.fullmatch(r"FP-34\d{4}-20(19|20)-\d{4}", p.certification_no), p


def test_demo_certification_numbers_unique(demo: Catalog) -> None:
    certs = [p.certification_no for p in demo]
    assert len(certs) == len(set(certs))


def test_demo_counties_consistent(demo: Catalog) -> None:
    # each area code always comes with the same county names
    names: dict[str, tuple[str, str]] = {}
    for p in demo:
        seen = names.setdefault(p.origin_area_code, (p.origin_county_zh, p.origin_county_en))
        assert seen == (p.origin_county_zh, p.origin_county_en)
    known = {
        "341524": "金寨县", "340828": "岳西县", "341525": "霍山县", "341321": "砀山县",
        "341722": "石台县", "340825": "太湖县", "341225": "阜南县", "341221": "临泉县",
    }  # fmt: skip
    for code, zh in known.items():
        assert names[code][0] == zh
    assert len(names) >= 10


def test_demo_covers_specialties_and_categories(demo: Catalog) -> None:
    names = " ".join(p.name_zh for p in demo)
    specialties = (
        "六安瓜片 岳西翠兰 石台富硒 太湖 霍山石斛 砀山酥梨 梨膏 猕猴桃 山核桃 笋干 柳编 临泉"
    )
    for specialty in [*specialties.split(), "蜂蜜", "大米", "香油"]:
        assert specialty in names, specialty
    assert {p.category for p in demo} == set(Category)


def test_catalog_summary(demo: Catalog) -> None:
    text = catalog_summary(demo)
    lines = text.splitlines()
    assert lines[0] == f"catalog version 1: {len(demo)} products"
    assert "price range: ¥9.90 - ¥168.00" in lines
    assert "by category:" in lines and "by origin county:" in lines
    assert any(re.fullmatch(r"\s+tea\s+8", line) for line in lines)
    assert any("341524 金寨县 Jinzhai" in line for line in lines)
    assert "Category." not in text
    county_lines = lines[lines.index("by origin county:") + 1 :]
    assert sum(int(line.split()[-1]) for line in county_lines) == len(demo)
