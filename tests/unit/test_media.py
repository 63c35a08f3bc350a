"""kiosk.sync.media: the verified, budgeted image cache and the fetcher that fills it."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import resource
from pathlib import Path
from unittest import mock

import pytest
from PIL import Image

from kiosk.clock import ManualClock
from kiosk.core.catalog import Product
from kiosk.sim.demo_data import demo_catalog
from kiosk.sync.media import (
    MAX_IMAGE_SIDE,
    ImageRefused,
    MediaCache,
    MediaFetcher,
    check_image_bounds,
    media_path,
    open_bounded_image,
    sha_of_ref,
)
from kiosk.sync.topics import MAX_IMAGE_BYTES, MessageError, MessageErrorReason, check_image
from tests.support.image_bomb import png_bomb


def img(n: int, size: int = 1000) -> tuple[str, bytes]:
    """Image number `n`: a real 2x2 PNG (the cache refuses anything PIL cannot identify),
    padded after IEND to exactly `size` bytes so budgets stay easy to count."""
    buf = io.BytesIO()
    Image.new("RGB", (2, 2), (n % 256, n // 256 % 256, 7)).save(buf, "PNG")
    data = buf.getvalue()
    assert len(data) <= size
    data += bytes([n % 256]) * (size - len(data))
    return hashlib.sha256(data).hexdigest(), data


def cache(tmp_path: Path, budget: int = 10_000, clock: ManualClock | None = None) -> MediaCache:
    return MediaCache(tmp_path / "media", budget, clock or ManualClock())


# --- the cache ------------------------------------------------------------------------------


def test_put_then_path_for(tmp_path: Path) -> None:
    c = cache(tmp_path)
    sha, data = img(1)
    path = c.put(sha, data)
    assert path == media_path(tmp_path / "media", sha)
    assert path.read_bytes() == data
    assert c.path_for(sha) == path
    assert c.path_for(sha.upper()) == path  # refs are case-insensitive hex
    assert c.path_for(img(2)[0]) is None
    assert c.path_for("P001.png") is None


def test_wrong_payload_is_rejected_and_never_written(tmp_path: Path) -> None:
    c = cache(tmp_path)
    sha, _ = img(1)
    with pytest.raises(MessageError) as e:
        c.put(sha, b"tampered bytes")
    assert e.value.reason is MessageErrorReason.HASH_MISMATCH
    assert list((tmp_path / "media").iterdir()) == []
    assert c.path_for(sha) is None and c.missing([sha]) == [sha] and c.rejected == 1


def test_too_big_is_rejected(tmp_path: Path) -> None:
    c = cache(tmp_path, budget=10 * MAX_IMAGE_BYTES)
    big = b"x" * (MAX_IMAGE_BYTES + 1)
    with pytest.raises(MessageError) as e:
        c.put(hashlib.sha256(big).hexdigest(), big)
    assert e.value.reason is MessageErrorReason.TOO_BIG
    assert list((tmp_path / "media").iterdir()) == []


def test_missing_keeps_order_ignores_file_names_and_duplicates(tmp_path: Path) -> None:
    c = cache(tmp_path)
    (a, da), (b, _), (d, _) = img(1), img(2), img(3)
    c.put(a, da)
    assert c.missing([b, "P001.png", a, "", d, b.upper()]) == [b, d]


def test_lru_eviction_within_budget(tmp_path: Path) -> None:
    clock = ManualClock()
    c = cache(tmp_path, budget=3000, clock=clock)
    imgs = [img(i) for i in range(4)]
    for sha, data in imgs[:3]:
        c.put(sha, data)
        clock.advance(1)
    c.touch(imgs[0][0])  # 0 used recently: 1 is now the least recently used
    clock.advance(1)
    c.put(*imgs[3])
    assert c.total_bytes() <= 3000
    assert c.missing([s for s, _ in imgs]) == [imgs[1][0]]
    assert not media_path(c.directory, imgs[1][0]).exists()
    assert c.evicted == 1


def test_path_for_counts_as_use(tmp_path: Path) -> None:
    clock = ManualClock()
    c = cache(tmp_path, budget=2000, clock=clock)
    (a, da), (b, db), (d, dd) = img(1), img(2), img(3)
    c.put(a, da)
    clock.advance(1)
    c.put(b, db)
    clock.advance(1)
    assert c.path_for(a) is not None
    clock.advance(1)
    c.put(d, dd)
    assert c.missing([a, b, d]) == [b]


def test_referenced_images_are_kept(tmp_path: Path) -> None:
    clock = ManualClock()
    c = cache(tmp_path, budget=3000, clock=clock)
    imgs = [img(i) for i in range(5)]
    c.set_referenced([imgs[0][0], imgs[1][0]])
    for sha, data in imgs:
        c.put(sha, data)
        clock.advance(1)
    # the two oldest are referenced: the unreferenced ones go instead
    assert c.missing([s for s, _ in imgs]) == [imgs[2][0], imgs[3][0]]
    assert c.total_bytes() <= 3000


def test_referenced_evicted_only_when_they_alone_exceed_budget(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    c = cache(tmp_path, budget=2000, clock=clock)
    imgs = [img(i) for i in range(3)]
    c.set_referenced([s for s, _ in imgs])
    with caplog.at_level(logging.WARNING, logger="kiosk.sync.media"):
        for sha, data in imgs:
            c.put(sha, data)
            clock.advance(1)
    assert "media.budget_too_small" in caplog.text
    assert c.missing([s for s, _ in imgs]) == [imgs[0][0]]  # the LRU one, never the new one
    assert c.path_for(imgs[2][0]) is not None


def test_image_bigger_than_budget_is_kept_while_new(tmp_path: Path) -> None:
    c = cache(tmp_path, budget=500)
    sha, data = img(1)
    assert c.put(sha, data).is_file()


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    c = cache(tmp_path)
    sha, data = img(1)
    with (
        mock.patch("kiosk.sync.media.os.replace", side_effect=OSError("disk gone")),
        pytest.raises(OSError),
    ):
        c.put(sha, data)
    assert list((tmp_path / "media").iterdir()) == []
    assert c.missing([sha]) == [sha]


def test_atomic_write_uses_tmp_fsync_replace(tmp_path: Path) -> None:
    c = cache(tmp_path)
    sha, data = img(1)
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync")
        real_fsync(fd)

    def replace(src: str | Path, dst: str | Path) -> None:
        assert Path(src).read_bytes() == data and not Path(dst).exists()
        calls.append("replace")
        real_replace(src, dst)

    with (
        mock.patch("kiosk.sync.media.os.fsync", side_effect=fsync),
        mock.patch("kiosk.sync.media.os.replace", side_effect=replace),
    ):
        c.put(sha, data)
    assert calls[:2] == ["fsync", "replace"]


def test_restart_rescans_and_drops_leftover_tmp_files(tmp_path: Path) -> None:
    clock = ManualClock()
    c = cache(tmp_path, clock=clock)
    sha, data = img(1)
    c.put(sha, data)
    (tmp_path / "media" / f".tmp-{sha}.img.1.2").write_bytes(b"half")
    again = cache(tmp_path, clock=clock)
    assert again.missing([sha]) == [] and again.path_for(sha) is not None
    assert [f.name for f in (tmp_path / "media").iterdir()] == [f"{sha}.img"]


def test_corrupt_file_on_disk_is_dropped(tmp_path: Path) -> None:
    c = cache(tmp_path)
    sha, data = img(1)
    c.put(sha, data).write_bytes(b"bit rot")
    again = cache(tmp_path)
    assert again.path_for(sha) is None
    assert again.missing([sha]) == [sha]
    assert not media_path(tmp_path / "media", sha).exists()


def test_sha_of_ref() -> None:
    sha = img(1)[0]
    assert sha_of_ref(sha) == sha and sha_of_ref(sha.upper()) == sha
    assert sha_of_ref("P001.png") is None and sha_of_ref("") is None
    assert sha_of_ref(sha[:-1]) is None


# --- the fetcher ------------------------------------------------------------------------------


class Requests:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.online = True

    def __call__(self, sha: str) -> bool:
        if not self.online:
            return False
        self.sent.append(sha)
        return True


def fetcher(tmp_path: Path, **kw: object) -> tuple[MediaFetcher, Requests, ManualClock, list[str]]:
    clock = ManualClock()
    req = Requests()
    new: list[str] = []
    f = MediaFetcher(cache(tmp_path, 100_000, clock), req, clock, on_new_image=new.append, **kw)  # type: ignore[arg-type]
    return f, req, clock, new


def test_fetcher_requests_missing_and_stores_replies(tmp_path: Path) -> None:
    f, req, _, new = fetcher(tmp_path)
    (a, da), (b, db) = img(1), img(2)
    f.cache.put(a, da)
    assert f.want([a, b, "P001.png", ""]) == [b]
    assert f.poll() == 1 and req.sent == [b]
    assert f.on_image(b, db) is True
    assert new == [b] and f.pending() == [] and f.cache.path_for(b) is not None
    assert f.poll() == 0


def test_fetcher_limits_outstanding_and_rate(tmp_path: Path) -> None:
    f, req, clock, _ = fetcher(tmp_path, max_outstanding=2, rate_per_s=1.0, burst=1.0)
    imgs = [img(i) for i in range(4)]
    f.want([s for s, _ in imgs])
    assert f.poll() == 1  # one token
    assert f.poll() == 0
    clock.advance(1)
    assert f.poll() == 1
    clock.advance(5)
    assert f.poll() == 0  # two outstanding
    f.on_image(req.sent[0], dict(imgs)[req.sent[0]])  # answer one of those asked
    assert f.poll() == 1 and f.outstanding() == 2
    assert len(set(req.sent)) == 3


def test_fetcher_retries_with_backoff_after_timeout(tmp_path: Path) -> None:
    f, req, clock, _ = fetcher(tmp_path, reply_timeout_s=10, retry_base_s=5, retry_cap_s=40)
    sha, _ = img(1)
    f.want([sha])
    assert f.poll() == 1
    clock.advance(9)
    assert f.poll() == 0  # still waiting for the answer
    clock.advance(1)
    assert f.poll() == 0  # timed out: backing off (2.5-5 s)
    clock.advance(5)
    assert f.poll() == 1
    clock.advance(10)
    assert f.poll() == 0  # timed out again: the second backoff is 5-10 s
    clock.advance(4.9)
    assert f.poll() == 0
    clock.advance(5.2)
    assert f.poll() == 1
    assert req.sent == [sha] * 3


def test_fetcher_tampered_reply_rejected_then_retried(tmp_path: Path) -> None:
    f, req, clock, new = fetcher(tmp_path, retry_base_s=2, retry_cap_s=2)
    sha, data = img(1)
    f.want([sha])
    f.poll()
    assert f.on_image(sha, b"evil") is False
    assert f.rejected == 1 and new == [] and f.cache.missing([sha]) == [sha]
    clock.advance(2)
    assert f.poll() == 1 and len(req.sent) == 2
    assert f.on_image(sha, data) is True and new == [sha]


def test_fetcher_offline_is_not_an_attempt(tmp_path: Path) -> None:
    f, req, clock, _ = fetcher(tmp_path, offline_retry_s=1)
    sha, _ = img(1)
    f.want([sha])
    req.online = False
    assert f.poll() == 0 and f.outstanding() == 0
    req.online = True
    assert f.poll() == 0  # not before offline_retry_s
    clock.advance(1)
    assert f.poll() == 1


def test_fetcher_ignores_unreferenced_and_known_images(tmp_path: Path) -> None:
    f, _, _, new = fetcher(tmp_path)
    (a, da), (b, db) = img(1), img(2)
    f.want([a])
    assert f.on_image(b, db) is False  # a province-wide image this catalog does not name
    assert f.on_image(a, da) is True
    assert f.on_image(a, da) is False  # a retained re-delivery: already here
    assert new == [a] and f.cache.missing([b]) == [b]


def test_fetcher_forgets_wants_of_an_old_catalog(tmp_path: Path) -> None:
    f, req, _, _ = fetcher(tmp_path)
    (a, _), (b, _) = img(1), img(2)
    f.want([a])
    f.want([b])
    assert f.pending() == [b]
    f.poll()
    assert req.sent == [b]


# --- bounded decoding: image bombs ------------------------------------------------------------


def _a_product() -> Product:
    return next(iter(demo_catalog()))


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def test_image_bomb_is_refused_by_the_cache_before_decoding(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The attack: a ~50 KiB PNG whose hash the signed catalog names (so it passes the size and
    hash checks) that decodes to 400 MB (1.2 GB as RGB). It is refused from its header."""
    bomb = png_bomb(20000, 20000)
    sha = hashlib.sha256(bomb).hexdigest()
    assert check_image(sha, bomb) == bomb  # the old checks let it through
    c = cache(tmp_path, budget=10 * MAX_IMAGE_BYTES)
    before = _maxrss_mib()
    with (
        caplog.at_level(logging.WARNING, logger="kiosk.sync.media"),
        pytest.raises(ImageRefused) as e,
    ):
        c.put(sha, bomb)
    assert "image refused" in str(e.value) and "pixels" in str(e.value)
    assert list((tmp_path / "media").iterdir()) == []
    assert c.rejected == 1 and c.path_for(sha) is None
    assert any("media.refused" in r.getMessage() for r in caplog.records)
    assert _maxrss_mib() - before < 200  # nothing near the 400 MB of pixels was allocated


@pytest.mark.parametrize(
    ("w", "h"), [(MAX_IMAGE_SIDE + 1, 1), (1, MAX_IMAGE_SIDE + 1), (5000, 5000)]
)
def test_dimension_bounds(w: int, h: int) -> None:
    with pytest.raises(ImageRefused):
        check_image_bounds((w, h))
    with pytest.raises(ImageRefused):
        open_bounded_image(png_bomb(w, h))


def test_largest_allowed_image_opens() -> None:
    check_image_bounds((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
    with open_bounded_image(png_bomb(MAX_IMAGE_SIDE, 16)) as im:
        assert im.size == (MAX_IMAGE_SIDE, 16)


def test_not_a_picture_is_refused(tmp_path: Path) -> None:
    c = cache(tmp_path)
    data = b"GIF89a not a product picture" + b"x" * 100
    with pytest.raises(ImageRefused) as e:
        c.put(hashlib.sha256(data).hexdigest(), data)
    assert "not a PNG/JPEG/WEBP image" in str(e.value)
    assert list((tmp_path / "media").iterdir()) == []


def test_a_bomb_already_on_disk_is_dropped_not_served(tmp_path: Path) -> None:
    """A cache written before the bound existed: path_for checks the header before use."""
    bomb = png_bomb(20000, 20000)
    sha = hashlib.sha256(bomb).hexdigest()
    (tmp_path / "media").mkdir()
    media_path(tmp_path / "media", sha).write_bytes(bomb)
    c = cache(tmp_path, budget=10 * MAX_IMAGE_BYTES)
    assert c.path_for(sha) is None
    assert not media_path(tmp_path / "media", sha).exists()


def test_fetcher_refuses_a_bomb_and_never_asks_again(tmp_path: Path) -> None:
    f, req, clock, new = fetcher(tmp_path, retry_base_s=1, retry_cap_s=1)
    bomb = png_bomb(20000, 20000)
    sha = hashlib.sha256(bomb).hexdigest()
    f.want([sha])
    assert f.poll() == 1
    assert f.on_image(sha, bomb) is False  # the province's reply: right hash, refused bytes
    assert f.rejected == 1 and new == [] and f.pending() == []
    clock.advance(1000)
    assert f.poll() == 0 and req.sent == [sha]
    assert f.want([sha]) == []  # a new catalog naming it again does not bring it back
    assert f.on_image(sha, bomb) is False  # a retained re-delivery is dropped unopened
    assert f.rejected == 1


def test_ui_shows_the_placeholder_for_a_bomb(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """kiosk.ui.images, fed the same file through the media dir (as after a fetch) and through
    image_dir: the placeholder tile, a logged refusal, no decode, no crash."""
    from kiosk.ui.images import ProductImages

    bomb = png_bomb(20000, 20000)
    sha = hashlib.sha256(bomb).hexdigest()
    (tmp_path / "media").mkdir()
    (tmp_path / "images").mkdir()
    media_path(tmp_path / "media", sha).write_bytes(bomb)
    (tmp_path / "images" / "bomb.png").write_bytes(bomb)
    imgs = ProductImages(tmp_path / "images", tmp_path / "media")
    base = dataclasses.replace(_a_product(), image_ref=sha)
    p2 = dataclasses.replace(list(demo_catalog())[1], image_ref="bomb.png")
    before = _maxrss_mib()
    with caplog.at_level(logging.WARNING, logger="kiosk.ui.images"):
        imgs.preload([base, p2])
    assert imgs.refused == 2
    # both placeholders
    assert imgs._made_from[base.product_id][1] and imgs._made_from[p2.product_id][1]
    assert imgs.surface(base, 32).get_size() == (32, 32)
    assert sum("ui.image_refused" in r.getMessage() for r in caplog.records) == 2
    assert _maxrss_mib() - before < 200


@pytest.mark.parametrize("ref", ["../../etc/passwd", "/etc/passwd", "a/b.png", ".hidden"])
def test_ui_confines_file_name_refs_to_image_dir(tmp_path: Path, ref: str) -> None:
    from kiosk.ui.images import ProductImages

    secret = tmp_path / "etc" / "passwd"
    secret.parent.mkdir()
    Image.new("RGB", (4, 4), (255, 0, 0)).save(secret, "PNG")  # a picture, to be sure
    (tmp_path / "a" / "images").mkdir(parents=True)
    imgs = ProductImages(tmp_path / "a" / "images", None)
    p = dataclasses.replace(_a_product(), image_ref=ref)
    assert imgs._path(p) is None
    imgs.preload([p])
    assert imgs._made_from[p.product_id][1] and imgs.refused >= 1
