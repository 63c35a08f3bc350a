"""Media over a real Mosquitto: the kiosk's SyncBridge fetches product images by sha256.

Pieces: the conftest broker (TLS, client certificates, ACL) and province simulator; a kiosk
built by `build_app(sync=True)` (its store seeded with a catalog whose images are named by hash,
the serial link never started) with its real `SyncBridge` (kiosk.sync.bridge; `start()`: the
MQTT client and the report thread that drives the fetcher). The UI side is
`kiosk.ui.images.ProductImages` on the same data dir.

1. an image the province knows (`add_image`) is requested by hash, verified, cached under
   `<data_dir>/media`, announced to the bridge's image listeners, and shown by ProductImages;
   a retained province-wide image arrives without a request;
2. a tampered image (the simulator answers with other bytes on the reply topic) is refused
   (HASH_MISMATCH, nothing written, placeholder shown) and fetched once the province has it
   right; an image the province does not know leaves the placeholder, never an error;
3. attacks through a signed catalog: image refs that are file names or paths
   ("../../etc/passwd", "x.png") are refused (the product gets the placeholder), and an image
   bomb (a ~50 KiB PNG of 20000x20000 pixels whose hash the catalog names) is refused from its
   header, never written, never decoded, never asked for again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pygame
import pytest

from kiosk.app import App, build_app
from kiosk.core.catalog import Catalog, Product
from kiosk.sim.broker import Mosquitto, Pki
from kiosk.sim.demo_data import demo_catalog
from kiosk.sim.province import ProvinceSimulator
from kiosk.store import open_store
from kiosk.sync.bridge import SyncBridge
from kiosk.sync.media import media_dir, media_path
from kiosk.sync.signing import Keyring
from kiosk.sync.topics import PROVINCE_CATALOG
from kiosk.ui.images import ProductImages
from tests.support.config import write_kiosk_config
from tests.support.image_bomb import png_bomb
from tests.support.kiosk_node import KIOSK_A, sync_config
from tests.support.mqtt_record import recording
from tests.support.store import seed_store

FAST_MEDIA = {
    "rate_per_s": 50.0,
    "burst": 10.0,
    "reply_timeout_s": 0.5,
    "retry_base_s": 0.3,
    "retry_cap_s": 0.6,
    "offline_retry_s": 0.1,
}


def png(rgb: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), rgb).save(buf, "PNG")
    return buf.getvalue()


RED, GREEN, BLUE, GREY = png((255, 0, 0)), png((0, 255, 0)), png((0, 0, 255)), png((9, 9, 9))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_for(pred: Callable[[], object], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return bool(pred())


class Kiosk:
    def __init__(self, app: App, bridge: SyncBridge) -> None:
        self.app = app
        self.bridge = bridge
        self.arrived: list[str] = []
        self._lock = threading.Lock()
        bridge.image_listeners.append(self._arrived)
        self.images = ProductImages(app.config.store.data_dir / "images", self.media)
        bridge.image_listeners.append(self.images.image_arrived)
        # as the UI does at start-up (after its first frame): placeholders until images arrive
        self.images.preload(app.store.catalog.load())

    @property
    def media(self) -> Path:
        return media_dir(self.app.config.store.data_dir)

    def _arrived(self, sha256: str) -> None:
        with self._lock:
            self.arrived.append(sha256)

    def got(self) -> list[str]:
        with self._lock:
            return list(self.arrived)

    def product(self, product_id: str) -> Product:
        return self.app.store.catalog.load().products[product_id]

    def colour(self, product_id: str) -> tuple[int, int, int]:
        surf = self.images.surface(self.product(product_id), 16)
        c = surf.get_at((8, 8))
        return (c.r, c.g, c.b)


@pytest.fixture
def make_media_kiosk(
    tmp_path: Path, pki: Pki, mosquitto: Mosquitto, province: ProvinceSimulator
) -> Iterator[Callable[[dict[str, str]], Kiosk]]:
    made: list[Kiosk] = []

    def make(image_refs: dict[str, str]) -> Kiosk:
        data_dir = tmp_path / "kiosk"
        seed_store(data_dir)
        store = open_store(data_dir)
        try:
            cat = demo_catalog()
            products = [
                dataclasses.replace(p, image_ref=image_refs.get(p.product_id, p.image_ref))
                for p in cat
            ]
            store.catalog.replace(Catalog.of(cat.version, products))
            Keyring([province.public_key]).save(store)  # as provisioning installs it
        finally:
            store.close()
        cfg = write_kiosk_config(tmp_path / "kiosk.toml", "loop://", data_dir)
        cert = pki.client(KIOSK_A)
        cfg = dataclasses.replace(
            cfg,
            sync=sync_config(mosquitto.url, pki.ca_file, cert.cert_file, cert.key_file),
        )
        app = build_app(
            cfg,
            sync=True,
            sync_options={
                "client_options": {"backoff_base_s": 0.05, "backoff_cap_s": 0.5, "poll_s": 0.05},
                "media_options": FAST_MEDIA,
            },
        )
        bridge = app.sync
        assert bridge is not None
        k = Kiosk(app, bridge)
        made.append(k)
        bridge.start()
        assert bridge.client.wait_connected(10), "kiosk did not connect"
        return k

    yield make
    for k in made:
        k.bridge.stop()
        k.app.link.close()
        k.app.store.close()


def products(n: int) -> list[str]:
    return [p.product_id for p in list(demo_catalog())[:n]]


def test_fetch_by_hash_cache_and_show(
    province: ProvinceSimulator, make_media_kiosk: Callable[[dict[str, str]], Kiosk]
) -> None:
    p_red, p_green = products(2)
    province.add_image(RED)  # known to the province, published only on request
    province.add_image(GREEN, retain_province_wide=True)  # retained for every kiosk
    k = make_media_kiosk({p_red: sha(RED), p_green: sha(GREEN)})
    assert k.images.surface(k.product(p_red), 16) is not None  # the placeholder meanwhile

    assert wait_for(lambda: {sha(RED), sha(GREEN)} <= set(k.got())), k.got()
    assert media_path(k.media, sha(RED)).read_bytes() == RED
    assert media_path(k.media, sha(GREEN)).read_bytes() == GREEN
    assert k.bridge.media.path_for(sha(RED)) is not None
    assert k.bridge.fetcher.pending() == []
    assert k.bridge.client.bad_message_reasons() == {}
    # the listener ran in the bridge's thread: the pictures are swapped in
    assert wait_for(lambda: k.colour(p_red) == (255, 0, 0), 5), k.colour(p_red)
    assert k.colour(p_green) == (0, 255, 0)


def test_tampered_and_missing_images_give_the_placeholder(
    mosquitto: Mosquitto,
    province: ProvinceSimulator,
    make_media_kiosk: Callable[[dict[str, str]], Kiosk],
) -> None:
    p_blue, p_missing = products(2)
    good = sha(BLUE)
    recording(mosquitto).tolerate(
        f"kiosk/v1/+/images/reply/{good}", "the province answers with the wrong bytes on purpose"
    )
    province.images[good] = GREY  # the province answers with other bytes on the reply topic
    k = make_media_kiosk({p_blue: good, p_missing: sha(b"nobody has this image")})

    assert wait_for(lambda: k.bridge.client.bad_message_reasons().get("HASH_MISMATCH", 0) >= 2)
    # counted as rejections (link counters) and alarmed once per window: SYNC_REJECTED
    assert k.bridge._link_counters()["mqtt_rejected_hash_mismatch"] >= 2
    assert wait_for(lambda: _rejection_alarms(province, "HASH_MISMATCH") >= 1)
    assert not media_path(k.media, good).exists()
    assert list(k.media.iterdir()) == []
    assert k.got() == []
    placeholder = k.colour(p_blue)
    assert placeholder not in ((0, 0, 255), (9, 9, 9))
    missing_colour = k.colour(p_missing)  # a placeholder, not an error
    assert missing_colour != (0, 0, 0)
    assert wait_for(lambda: province.bad_reasons.get("unknown_image", 0) >= 1)

    province.images[good] = BLUE  # fixed at the province: the retry fetches it
    assert wait_for(lambda: good in k.got()), k.got()
    assert wait_for(lambda: k.colour(p_blue) == (0, 0, 255), 5)
    assert media_path(k.media, good).read_bytes() == BLUE
    assert k.bridge.fetcher.pending() == [sha(b"nobody has this image")]
    assert k.colour(p_missing) == missing_colour


def test_signed_catalog_cannot_name_files_or_send_an_image_bomb(
    mosquitto: Mosquitto,
    province: ProvinceSimulator,
    make_media_kiosk: Callable[[dict[str, str]], Kiosk],
) -> None:
    p_passwd, p_file, p_bomb, p_red = products(4)
    bomb = png_bomb(20000, 20000)
    province.add_image(bomb)
    province.add_image(RED)
    k = make_media_kiosk({})
    refs = {p_passwd: "../../etc/passwd", p_file: "x.png", p_bomb: sha(bomb), p_red: sha(RED)}
    content = {
        "products": [
            {
                **{
                    f: (v.value if hasattr(v, "value") else v)
                    for f, v in dataclasses.asdict(p).items()
                },
                "image_ref": refs.get(p.product_id, ""),
            }
            for p in demo_catalog()
        ]
    }
    recording(mosquitto).tolerate(
        PROVINCE_CATALOG, "image refs that name files, on purpose (the kiosk refuses them)"
    )
    v = province.publish_catalog(content, version=demo_catalog().version + 50)
    assert wait_for(lambda: k.app.store.catalog.load().version == v), "catalog not applied"
    cat = k.app.store.catalog.load().products
    assert cat[p_passwd].image_ref == "" and cat[p_file].image_ref == ""  # refused: placeholder
    assert cat[p_bomb].image_ref == sha(bomb) and cat[p_red].image_ref == sha(RED)

    assert wait_for(lambda: sha(RED) in k.got()), k.got()
    assert wait_for(lambda: k.bridge.fetcher.rejected >= 1), "the bomb was never refused"
    assert wait_for(lambda: _rejection_alarms(province, "IMAGE_REFUSED") == 1)
    assert not media_path(k.media, sha(bomb)).exists()
    assert sha(bomb) not in k.bridge.fetcher.pending()
    assert k.bridge.media.path_for(sha(bomb)) is None
    k.images.preload(k.app.store.catalog.load())
    assert k.colour(p_bomb) != (0, 0, 0)  # the placeholder tile, not the bomb's black
    assert wait_for(lambda: k.colour(p_red) == (255, 0, 0), 5)


def _rejection_alarms(province: ProvinceSimulator, reason: str) -> int:
    """SYNC_REJECTED alarms of images/reply with `reason` the province received from KIOSK_A."""
    return sum(
        1
        for e in province.events(KIOSK_A)
        if e["kind"] == "alarm"
        and e["body"].get("code") == "SYNC_REJECTED"
        and e["body"]["context"]["what"] == "images/reply"
        and e["body"]["context"]["reason"] == reason
    )


@pytest.fixture(autouse=True, scope="module")
def _pygame() -> Iterator[None]:
    yield
    pygame.quit()
