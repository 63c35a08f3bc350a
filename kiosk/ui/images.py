"""Product pictures as pygame surfaces, scaled and cached per size.

Owns: turning a product's `image_ref` into a surface. Files are read once, in `preload()`, at
start-up or when a new catalog arrives, never while a frame is drawn; a product without a file
gets the locally drawn placeholder tile (kiosk.ui.placeholders.render_product_image), never a
blank.

An `image_ref` is a file name in `image_dir` (the demo's "<product_id>.png") or a sha256 (64
hex): then the picture is the file `kiosk.sync.media.media_path(media_dir, sha)`, written there
only after its hash was checked (kiosk.sync.media.MediaCache). Not there yet (or unreadable):
the placeholder tile, never an error. When it arrives, `image_arrived(sha)` (called by the sync
bridge in its own thread, not the UI's) decodes the file and swaps the picture in; the UI thread
only ever swaps dict entries, so drawing never waits for the disk. One image is at most 256 KiB.

Every file is opened with `kiosk.sync.media.open_bounded_image` (header only, dimensions and
pixel count checked) before it is decoded: an image bomb gets the placeholder and a
`ui.image_refused` warning, never a decode. A file-name ref is a plain name inside `image_dir`
(`[A-Za-z0-9_.-]`, no leading dot, no separator): anything else is refused the same way. Refs
from the network are sha256 only (kiosk.sync.apply.apply_catalog drops the rest).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pygame

from kiosk.core.catalog import Product
from kiosk.log import log_event
from kiosk.sync.media import ImageRefused, media_path, open_bounded_image, sha_of_ref

if TYPE_CHECKING:
    from PIL import Image

# PIL and the placeholder painter are imported when a picture is first made, not at start-up.

__all__ = ["ProductImages", "pil_to_surface"]

log = logging.getLogger("kiosk.ui.images")

_BASE = 256
_LOCAL_NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")


def pil_to_surface(image: Image.Image) -> pygame.Surface:
    rgb = image.convert("RGB")
    return pygame.image.frombytes(rgb.tobytes(), rgb.size, "RGB")


class ProductImages:
    """Base images by product id, scaled copies by (id, side)."""

    def __init__(self, image_dir: Path | None = None, media_dir: Path | None = None) -> None:
        self.image_dir = image_dir
        self.media_dir = media_dir
        self._base: dict[str, pygame.Surface] = {}
        self._scaled: dict[tuple[str, int], pygame.Surface] = {}
        # what each base image was made from: the product (its image_ref) and whether it is the
        # placeholder (then a later image_arrived() replaces it)
        self._made_from: dict[str, tuple[Product, bool]] = {}
        self.refused = 0  # images refused (bad ref, image bomb, not a picture)

    def preload(self, products: Iterable[Product]) -> None:
        """Load (or draw) every product's base image. May read the disk: call outside frames.
        A product whose image_ref changed (a new catalog) is loaded again."""
        for p in products:
            made = self._made_from.get(p.product_id)
            if p.product_id not in self._base or (
                made is not None and made[0].image_ref != p.image_ref
            ):
                self._set_base(p)

    def image_arrived(self, sha256: str) -> int:
        """Image `sha256` is now in the media directory: reload the pictures of the products
        (seen by preload or surface) that name it. Reads the disk: call off the UI thread.
        Returns how many products changed."""
        sha = sha_of_ref(sha256)
        if sha is None:
            return 0
        hits = [p for p, _ in list(self._made_from.values()) if sha_of_ref(p.image_ref) == sha]
        for p in hits:
            self._set_base(p)
        return len(hits)

    def _set_base(self, p: Product) -> None:
        image, placeholder = self._load_or_placeholder(p)
        self._base[p.product_id] = pil_to_surface(image)
        self._made_from[p.product_id] = (p, placeholder)
        stale = [k for k in list(self._scaled) if k[0] == p.product_id]
        for k in stale:
            self._scaled.pop(k, None)

    def _path(self, p: Product) -> Path | None:
        if not p.image_ref:
            return None
        sha = sha_of_ref(p.image_ref)
        if sha is not None:
            return media_path(self.media_dir, sha) if self.media_dir is not None else None
        if self.image_dir is None:
            return None
        if not _LOCAL_NAME_RE.match(p.image_ref):  # "../../etc/passwd", "/abs", "a/b.png"
            self._refuse(p, "image_ref is neither a sha256 nor a plain file name")
            return None
        return self.image_dir / p.image_ref

    def _refuse(self, p: Product, reason: str) -> None:
        self.refused += 1
        log_event(
            log,
            "ui.image_refused",
            logging.WARNING,
            product_id=p.product_id,
            image_ref=p.image_ref[:80],
            reason=reason,
        )

    def _load(self, p: Product) -> Image.Image:
        return self._load_or_placeholder(p)[0]

    def _load_or_placeholder(self, p: Product) -> tuple[Image.Image, bool]:
        from PIL import Image

        from kiosk.ui.placeholders import render_product_image

        path = self._path(p)
        if path is not None and path.is_file():
            try:
                with open_bounded_image(path) as im:  # header only: bounds checked first
                    return im.convert("RGB").resize((_BASE, _BASE)), False
            except ImageRefused as e:
                self._refuse(p, str(e))
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
                pass  # not a picture we can read: the placeholder
        return render_product_image(p, _BASE), True

    def surface(self, p: Product, side: int) -> pygame.Surface:
        key = (p.product_id, side)
        got = self._scaled.get(key)
        if got is None:
            base = self._base.get(p.product_id)
            if base is None:  # not preloaded: draw it (CPU only, no disk)
                from kiosk.ui.placeholders import render_product_image

                base = pil_to_surface(render_product_image(p, _BASE))
                self._base[p.product_id] = base
                self._made_from[p.product_id] = (p, True)
            got = pygame.transform.smoothscale(base, (side, side))
            if pygame.display.get_surface() is not None:
                got = got.convert()  # display format: a tile blit ~7x cheaper every frame
            self._scaled[key] = got
        return got


_shared: ProductImages | None = None


def shared_images() -> ProductImages:
    """One cache per process for renders without an app (screenshots, tests)."""
    global _shared
    if _shared is None:
        _shared = ProductImages()
    return _shared
