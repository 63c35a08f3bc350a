"""Issue 14, requirement 6: nothing from a store's earlier life pays an order of the next one.

The whole kiosk app with its province link (tests/support/live_kiosk.py) against the real
Mosquitto and the province simulator. Life 1 sells an order paid through the province; the
attacker keeps that order's signed confirmation and its offline code. The store is then lost
(a new disk: the kiosk starts on an empty store, a new store epoch) and, in the worst case, the
new store's order counter lands on the same sequence number, so the new order for the same
product differs from the old one only by the epoch. The attacker replays the old confirmation
on the kiosk's confirm topic (signed by the province, fresh, same amount) and types the old
offline code: both are refused (docs/sales.md, "Store epoch"; docs/payments.md, "Order ids").
The order is then paid for real and completes, with the real payment's provider reference.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import time
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from kiosk import contract as ui
from kiosk.app import App
from kiosk.core.payment import (
    confirmation_to_dict,
    offline_code,
    order_epoch,
    parse_order_id,
    parse_pay_url,
)
from kiosk.core.sale import State
from kiosk.sim.broker import Mosquitto, Pki
from kiosk.sim.province import ProvinceSimulator
from kiosk.sync.topics import Topics, encode
from tests.support.kiosk_node import DEMO_SECRET, KIOSK_A
from tests.support.live_kiosk import (
    KioskIdentity,
    checkout_one,
    closed,
    live_kiosk,
    order_of,
    wait_for,
)
from tests.support.paths import SECRET_FILE
from tests.support.store import seed_store


def test_confirmation_and_offline_code_of_an_earlier_store_are_refused(
    tmp_path: Path,
    pki: Pki,
    mosquitto: Mosquitto,
    province: ProvinceSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cert = pki.client(KIOSK_A)
    ident = KioskIdentity(cert.cert_file, cert.key_file, SECRET_FILE)
    home = tmp_path / "kiosk"
    home.mkdir()

    def kiosk() -> AbstractContextManager[App]:
        return live_kiosk(home, mosquitto.url, pki.ca_file, ident, province.public_key)

    # --- life 1: a sale paid through the province ------------------------------------------
    seed_store(home / "data")
    with kiosk() as app:
        old = checkout_one(app)
        params = parse_pay_url(old.pay_url, {KIOSK_A: DEMO_SECRET})
        assert params is not None
        province.confirm_payment(params, "wechat")
        assert closed(app, old.order_id) is State.COMPLETED
    old_confirmation = province.payment_for(old.order_id)
    assert old_confirmation is not None
    old_code = offline_code(DEMO_SECRET, old.order_id, old.amount_fen)
    _, old_seq = parse_order_id(old.order_id)

    # --- the store is lost; the new one's counter lands on the same sequence ---------------
    shutil.rmtree(home / "data")
    seed_store(home / "data")
    db = sqlite3.connect(home / "data" / "kiosk.db")
    with db:
        db.execute(
            "INSERT INTO counters (name, value) VALUES ('order_seq', ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (old_seq - 1,),
        )
    db.close()

    # --- life 2: the same product again; the attacker replays life 1 -----------------------
    with kiosk() as app:
        new = checkout_one(app)
        assert parse_order_id(new.order_id) == (KIOSK_A, old_seq)  # the same sequence number
        assert order_epoch(new.order_id) != order_epoch(old.order_id)  # only the epoch differs
        assert new.amount_fen == old.amount_fen

        caplog.set_level(logging.WARNING, logger="kiosk.controller")
        replay = {"confirmation": confirmation_to_dict(old_confirmation), "sent_at": time.time()}
        province.publish_raw(Topics(KIOSK_A).payment_confirm, encode(replay))
        assert wait_for(
            lambda: any(
                r.getMessage() == "payment.rejected"
                and getattr(r, "kv", {}).get("order") == old.order_id
                and getattr(r, "kv", {}).get("reason") == "unknown_order"
                for r in caplog.records
            )
        ), [r.getMessage() for r in caplog.records]
        app.controller.post(ui.EnterOfflineCode(old_code))
        assert wait_for(lambda: order_of(app, new.order_id).code_tries == 1)
        assert order_of(app, new.order_id).state is State.AWAITING_PAYMENT  # neither paid it

        # the real payment still works, and is the one recorded
        params = parse_pay_url(new.pay_url, {KIOSK_A: DEMO_SECRET})
        assert params is not None
        real = province.confirm_payment(params, "wechat")
        assert closed(app, new.order_id) is State.COMPLETED
        paid = order_of(app, new.order_id).payment
        assert paid is not None and paid.provider_ref == real.provider_ref
        assert real.provider_ref != old_confirmation.provider_ref
