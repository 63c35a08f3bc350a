"""Product tiles drawn locally: size, determinism, one picture per demo product (issue 17,
requirement 1), the category picture as the fallback, files on disk."""

from __future__ import annotations

import dataclasses
import hashlib
import io
from itertools import combinations
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from kiosk.core.catalog import Category, Product
from kiosk.sim.demo_data import demo_catalog, write_demo_images
from kiosk.ui.placeholders import render_category_image, render_product_image
from kiosk.ui.product_art import PRODUCT_ART, has_own_art

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
    images = {c: render_category_image(p, 64) for c, p in products.items()}
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


# Two pictures closer than this (mean absolute difference per channel, 0..255, at 64 px) count
# as the same picture. One drawing on two products (what every tea had before issue 17: same
# icon, only the faint background dots differ) measures at most ~1.5; the closest two distinct
# demo drawings (two tea boxes, different colour and emblem) about 10.
MIN_PICTURE_DIFFERENCE = 8.0


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def test_every_demo_product_has_its_own_drawing() -> None:
    missing = [p.product_id for p in CATALOG if not has_own_art(p.product_id)]
    assert missing == []
    assert set(PRODUCT_ART) == {p.product_id for p in CATALOG}, "a drawing for a gone product"
    for p in CATALOG:  # and it is really used, not the category's drawing
        own, fallback = render_product_image(p, 64), render_category_image(p, 64)
        assert mean_difference(own, fallback) > MIN_PICTURE_DIFFERENCE, p.product_id


def test_no_two_demo_products_share_a_picture() -> None:
    images = {p.product_id: render_product_image(p, 64) for p in CATALOG}
    hashes = {pid: hashlib.sha256(img.tobytes()).hexdigest() for pid, img in images.items()}
    assert len(set(hashes.values())) == len(images)
    alike = [
        f"{a} ~ {b}: {d:.1f}"
        for a, b in combinations(images, 2)
        if (d := mean_difference(images[a], images[b])) <= MIN_PICTURE_DIFFERENCE
    ]
    assert alike == [], "pictures too much alike"


def test_shared_drawing_would_be_caught() -> None:
    # the check bites: two teas with the one tea drawing (the state before issue 17) fail it
    a, b = CATALOG["TEA-LAGP-250"], CATALOG["TEA-YXCL-100"]
    shared = mean_difference(render_category_image(a, 64), render_category_image(b, 64))
    assert shared < MIN_PICTURE_DIFFERENCE / 4


def test_featured_black_sesame_is_not_a_bamboo_shoot() -> None:
    # the attract screen's first featured product (issue 17, finding 1)
    sesame, shoots = CATALOG["DRY-LQZM-250"], CATALOG["DRY-STSG-250"]
    sesame_image = render_product_image(sesame, 64)
    assert mean_difference(sesame_image, render_product_image(shoots, 64)) > 20
    assert mean_difference(sesame_image, render_category_image(sesame, 64)) > 20


@pytest.mark.parametrize("category", list(Category))
def test_product_without_own_drawing_gets_its_category_picture(category: Category) -> None:
    template = next(p for p in CATALOG if p.category is category)
    stranger = dataclasses.replace(template, product_id=f"NEW-{category.value}-1")
    assert not has_own_art(stranger.product_id)
    got = render_product_image(stranger, 64)
    assert got.tobytes() == render_category_image(stranger, 64).tobytes()
    assert mean_difference(got, render_product_image(template, 64)) > MIN_PICTURE_DIFFERENCE


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
