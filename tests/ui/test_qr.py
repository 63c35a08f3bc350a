"""The QR codes on screen decode (zxing-cpp) to exactly the URLs in the view state."""

from __future__ import annotations

import pygame
import pytest
import zxingcpp
from PIL import Image

from kiosk.clock import ManualClock
from kiosk.sim.fake_controller import demo_view
from kiosk.sim.render import render_app


def _decode(surface: pygame.Surface) -> list[str]:
    raw = pygame.image.tobytes(surface, "RGB")
    image = Image.frombytes("RGB", surface.get_size(), raw)
    return [b.text for b in zxingcpp.read_barcodes(image)]


@pytest.mark.parametrize("size", [(1080, 1920), (800, 480)])
def test_payment_qr_is_the_pay_url(size: tuple[int, int]) -> None:
    view = demo_view("payment", ManualClock())
    assert view.payment is not None
    app = render_app("payment", size, "zh", view)
    assert _decode(app.surface) == [view.payment.pay_url]


def test_receipt_qr_is_the_receipt_url() -> None:
    view = demo_view("done", ManualClock())
    assert view.done is not None
    app = render_app("done", (1024, 600), "en", view)
    assert _decode(app.surface) == [view.done.receipt_url]
