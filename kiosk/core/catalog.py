"""Products and the catalog the kiosk sells from.

Owns: the Product record and its validation, and the text overview `kiosk catalog summary`
prints. Pure: no I/O; images are referenced, not loaded.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from kiosk.core.money import format_fen

__all__ = ["Catalog", "CatalogError", "Category", "Product", "catalog_summary"]

_PRODUCT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
_AREA_RE = re.compile(r"^\d{6}$")
CHILLED_MIN_C = -30.0
CHILLED_MAX_C = 30.0


class CatalogError(ValueError):
    """A product or catalog is invalid."""


class Category(StrEnum):
    TEA = "tea"
    FRUIT = "fruit"
    NUTS = "nuts"
    DRIED = "dried"
    GRAIN_OIL = "grain_oil"
    HONEY = "honey"
    SNACKS = "snacks"
    CRAFTS = "crafts"
    HEALTH = "health"


@dataclass(frozen=True, slots=True)
class Product:
    """One certified poverty-alleviation product (扶贫产品)."""

    product_id: str
    name_zh: str
    name_en: str
    certification_no: str  # 扶贫产品认定 number
    origin_county_zh: str
    origin_county_en: str
    origin_area_code: str  # GB/T 2260, 6 digits
    producer_zh: str
    producer_en: str
    category: Category
    price_fen: int
    spec_zh: str  # e.g. "250克/罐"
    spec_en: str
    shelf_life_days: int
    image_ref: str = ""  # file name or sha256 of the image; "" means placeholder
    # Chilled goods (kiosk.core.chilled): the highest cabinet temperature (°C) at which it may
    # sell; None: not chilled. Travels in the signed catalog like every other field.
    chilled_max_c: float | None = None

    def __post_init__(self) -> None:
        c = self.chilled_max_c
        if isinstance(c, int) and not isinstance(c, bool):  # JSON and TOML may give 8 for 8.0
            object.__setattr__(self, "chilled_max_c", float(c))
        errors = product_errors(self)
        if errors:
            raise CatalogError(f"product {self.product_id!r}: " + "; ".join(errors))


def product_errors(p: Product) -> list[str]:
    errs: list[str] = []
    if not _PRODUCT_ID_RE.match(p.product_id):
        errs.append("product_id must be 1-32 letters, digits, '-' or '_'")
    if not p.name_zh.strip() or not p.name_en.strip():
        errs.append("name_zh and name_en are required")
    if not p.certification_no.strip():
        errs.append("certification_no is required")
    if not _AREA_RE.match(p.origin_area_code):
        errs.append(
            f"origin_area_code must be a 6-digit GB/T 2260 code, got {p.origin_area_code!r}"
        )
    if not isinstance(p.price_fen, int) or isinstance(p.price_fen, bool) or p.price_fen <= 0:
        errs.append(f"price_fen must be a positive integer (fen), got {p.price_fen!r}")
    if (
        not isinstance(p.shelf_life_days, int)
        or isinstance(p.shelf_life_days, bool)
        or p.shelf_life_days <= 0
    ):
        errs.append(f"shelf_life_days must be a positive integer, got {p.shelf_life_days!r}")
    c = p.chilled_max_c
    if c is not None and (
        isinstance(c, bool)
        or not isinstance(c, int | float)
        or not CHILLED_MIN_C <= c <= CHILLED_MAX_C
    ):
        errs.append(
            f"chilled_max_c must be empty or a number of °C from {CHILLED_MIN_C} to "
            f"{CHILLED_MAX_C}, got {c!r}"
        )
    if not isinstance(p.category, Category):
        errs.append(f"category must be one of {[c.value for c in Category]}")
    return errs


@dataclass(frozen=True, slots=True)
class Catalog:
    """A versioned, immutable set of products keyed by product id."""

    version: int
    products: Mapping[str, Product] = field(default_factory=dict)

    @classmethod
    def of(cls, version: int, products: Iterable[Product]) -> Catalog:
        by_id: dict[str, Product] = {}
        for p in products:
            if p.product_id in by_id:
                raise CatalogError(f"duplicate product_id {p.product_id!r}")
            by_id[p.product_id] = p
        return cls(version=version, products=by_id)

    def __iter__(self) -> Iterator[Product]:
        return iter(self.products.values())

    def __len__(self) -> int:
        return len(self.products)

    def __contains__(self, product_id: object) -> bool:
        return product_id in self.products

    def get(self, product_id: str) -> Product | None:
        return self.products.get(product_id)

    def __getitem__(self, product_id: str) -> Product:
        return self.products[product_id]


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
