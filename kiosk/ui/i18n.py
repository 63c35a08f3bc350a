"""Translation: look up a message key in the active language's catalog and fill its params.

Owns: language selection and message formatting for the UI. Never holds a UI string itself
(they live in kiosk/ui/locales/<lang>.py) and never touches pygame.
Product data (names, counties, producers, specs) is not translated here: it comes from the
catalog in both languages, picked with `product_text`.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Literal

from kiosk.contract import ProductView
from kiosk.core.catalog import Product
from kiosk.core.money import format_fen
from kiosk.ui.locales import en, zh

__all__ = ["CATALOGS", "LANGS", "Lang", "Translator", "placeholders", "product_text"]

Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = ("zh", "en")
CATALOGS: Mapping[str, Mapping[str, str]] = {"zh": zh.MESSAGES, "en": en.MESSAGES}
#: The params that pick a message's singular form `<key>.one` when 1 (the first one given).
PLURAL_PARAMS = ("count", "delivered", "n")


def placeholders(message: str) -> set[str]:
    """The `{name}` params a message uses."""
    return {name for _, name, _, _ in string.Formatter().parse(message) if name}


class Translator:
    """`t("cart.count", count=3)` in one language. Missing keys fail loudly in tests."""

    def __init__(self, lang: str) -> None:
        if lang not in CATALOGS:
            raise ValueError(f"unknown language {lang!r}; known: {', '.join(CATALOGS)}")
        self.lang: Lang = "en" if lang == "en" else "zh"
        self._messages = CATALOGS[lang]

    def __call__(self, key: str, **params: object) -> str:
        """The message for `key` with `params` filled in. A key may have a singular form
        `<key>.one`, used when its first count param (`PLURAL_PARAMS`) is 1 ("1 item was
        dispensed" / "3 items were dispensed")."""
        message = self._messages[key]
        if not params:
            return message
        count = next((v for k, v in params.items() if k in PLURAL_PARAMS), None)
        if count == 1:
            message = self._messages.get(f"{key}.one", message)
        return message.format(**params)

    def has(self, key: str) -> bool:
        """Whether the catalog has `key` (for names that come from elsewhere, e.g. counters)."""
        return key in self._messages

    def money(self, fen: int) -> str:
        return format_fen(fen)

    def stock(self, pv: ProductView) -> str:
        """What a product's stock line says: paused for temperature (a chilled product, the
        cabinet too warm), sold out, or how many are left."""
        if pv.unavailable:
            return self("catalog.too_warm")
        return self("catalog.sold_out") if pv.sold_out else self("product.stock_n", n=pv.stock_left)

    def mmss(self, seconds: float) -> str:
        s = max(0, int(seconds + 0.999))
        return self("time.mmss", m=s // 60, ss=f"{s % 60:02d}")


def product_text(product: Product, field: str, lang: str) -> str:
    """`product_text(p, "name", "en")` -> `p.name_en`.

    Fields: name, origin_county, producer, spec."""
    return str(getattr(product, f"{field}_{'en' if lang == 'en' else 'zh'}"))
