"""The view carries the province link's state (issue 17 req. 3): the payment screen explains an
offline kiosk from it, and the service panels show it. Real controller, real store, emulator."""

from __future__ import annotations

from tests.support.kiosk_app import Kiosk


def test_view_follows_the_province_link(kiosk: Kiosk) -> None:
    # built without a sync bridge: the link state is unknown, and unknown is not "offline"
    v = kiosk.c.view()
    assert v.province_online is None and not v.offline
    state = {"up": False}
    kiosk.c.province_online = lambda: state["up"]
    v = kiosk.wait(lambda v: v.province_online is False)
    assert v.offline and not v.service.network.online
    state["up"] = True
    v = kiosk.wait(lambda v: v.province_online is True)
    assert not v.offline and v.service.network.online
