"""Product tiles drawn locally: size, determinism, one look per category, files on disk."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from kiosk.core.catalog import Category, Product
from kiosk.sim.demo_data import demo_catalog, write_demo_images
from kiosk.ui.placeholders import render_product_image

CATALOG = demo_catalog()


def one_per_category() -> dict[Category, Product]:
    out: dict[Category, Product] = {}
    for p in CATALOG:
        out.setdefault(p.category, p)
    return out


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("size", [32, 96, 256])
def test_requested_size(size: int) -> None:
    img = render_product_image(CATALOG["TEA-LAGP-250"], size)
    assert img.size == (size, size)
    assert img.mode == "RGB"


def test_default_size_is_256() -> None:
    assert render_product_image(CATALOG["HNY-YXTF-500"]).size == (256, 256)


def test_too_small_rejected() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        render_product_image(CATALOG["HNY-YXTF-500"], 8)


def test_deterministic() -> None:
    for p in one_per_category().values():
        assert png(render_product_image(p, 96)) == png(render_product_image(p, 96))


def test_every_category_has_its_own_look() -> None:
    products = one_per_category()
    assert set(products) == set(Category)
    images = {c: render_product_image(p, 64) for c, p in products.items()}
    blobs = {png(img) for img in images.values()}
    assert len(blobs) == len(Category)
    cats = list(images)
    for i, a in enumerate(cats):
        for b in cats[i + 1 :]:
            diff = ImageStat.Stat(ImageChops.difference(images[a], images[b])).mean
            assert sum(diff) / 3 > 10, f"{a.value} and {b.value} look alike"


def test_products_of_one_category_differ_slightly() -> None:
    a = render_product_image(CATALOG["TEA-LAGP-250"], 64)
    b = render_product_image(CATALOG["TEA-YXCL-100"], 64)
    assert png(a) != png(b)


def test_tile_is_not_flat() -> None:
    img = render_product_image(CATALOG["CRF-FNLB-LAN"], 64)
    colors = img.getcolors(maxcolors=64 * 64)
    assert colors is not None and len(colors) > 50  # gradient and an icon, not one colour
    # the icon sits in the middle: the centre differs from the corner background
    assert img.getpixel((32, 40)) != img.getpixel((2, 2))


def test_write_demo_images(tmp_path: Path) -> None:
    target = tmp_path / "images"
    paths = write_demo_images(target, size=48)
    assert len(paths) == len(CATALOG) >= 24
    assert sorted(p.name for p in target.iterdir()) == sorted(
        f"{p.product_id}.png" for p in CATALOG
    )
    for path in paths:
        assert path.parent == target
        with Image.open(path) as img:
            assert img.format == "PNG" and img.size == (48, 48)
    assert {p.name for p in paths} == {p.image_ref for p in CATALOG}

    # idempotent: a second run leaves the same files untouched and adds nothing
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}
    assert write_demo_images(target, size=48) == paths
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths} == before
    assert len(list(target.iterdir())) == len(paths)


def test_write_demo_images_repairs_damaged_file(tmp_path: Path) -> None:
    paths = write_demo_images(tmp_path, size=32)
    good = paths[0].read_bytes()
    paths[0].write_bytes(b"not a png")
    write_demo_images(tmp_path, size=32)
    assert paths[0].read_bytes() == good
