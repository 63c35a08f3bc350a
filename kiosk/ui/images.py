"""Product pictures as pygame surfaces, scaled and cached per size.

Owns: turning a product's `image_ref` into a surface. Files are read once, in `preload()`, at
start-up or when a new catalog arrives, never while a frame is drawn; a product without a file
gets the locally drawn demo tile (kiosk.sim.demo_data.render_product_image), never a blank.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pygame

from kiosk.core.catalog import Product

if TYPE_CHECKING:
    from PIL import Image

# PIL and the demo tile painter are imported when a picture is first made, not at start-up.

__all__ = ["ProductImages", "pil_to_surface"]

_BASE = 256


def pil_to_surface(image: Image.Image) -> pygame.Surface:
    rgb = image.convert("RGB")
    return pygame.image.frombytes(rgb.tobytes(), rgb.size, "RGB")


class ProductImages:
    """Base images by product id, scaled copies by (id, side)."""

    def __init__(self, image_dir: Path | None = None) -> None:
        self.image_dir = image_dir
        self._base: dict[str, pygame.Surface] = {}
        self._scaled: dict[tuple[str, int], pygame.Surface] = {}

    def preload(self, products: Iterable[Product]) -> None:
        """Load (or draw) every product's base image. May read the disk: call outside frames."""
        for p in products:
            if p.product_id not in self._base:
                self._base[p.product_id] = pil_to_surface(self._load(p))

    def _load(self, p: Product) -> Image.Image:
        from PIL import Image

        from kiosk.sim.demo_data import render_product_image

        if self.image_dir is not None and p.image_ref:
            path = self.image_dir / p.image_ref
            if path.is_file():
                try:
                    with Image.open(path) as im:
                        return im.convert("RGB").resize((_BASE, _BASE))
                except OSError:
                    pass
        return render_product_image(p, _BASE)

    def surface(self, p: Product, side: int) -> pygame.Surface:
        key = (p.product_id, side)
        got = self._scaled.get(key)
        if got is None:
            base = self._base.get(p.product_id)
            if base is None:  # not preloaded: draw it (CPU only, no disk)
                from kiosk.sim.demo_data import render_product_image

                base = pil_to_surface(render_product_image(p, _BASE))
                self._base[p.product_id] = base
            got = pygame.transform.smoothscale(base, (side, side))
            self._scaled[key] = got
        return got


_shared: ProductImages | None = None


def shared_images() -> ProductImages:
    """One cache per process for renders without an app (screenshots, tests)."""
    global _shared
    if _shared is None:
        _shared = ProductImages()
    return _shared
