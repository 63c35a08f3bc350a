"""Clock offset: a kiosk whose clock is years off still judges expiry right and records
correctly."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.clock import ManualClock
from kiosk.store import open_store
from kiosk.sync.clockoffset import ClockOffset
from kiosk.sync.outbox import Outbox, Priority
from kiosk.sync.signing import (
    Keyring,
    TrustError,
    TrustPolicy,
    generate_keypair,
    key_id,
    sign_envelope,
)
from kiosk.sync.topics import Topics, decode

PROVINCE_NOW = 1_790_000_000.0
FIVE_YEARS = 5 * 365 * 86400.0


def test_empty_and_basic() -> None:
    c = ClockOffset()
    assert c.offset() is None and c.province_now(100.0) == 100.0
    assert c.observe(1000.0, 990.0)
    assert c.offset() == 10.0 and c.province_now(2000.0) == 2010.0
    for bad in (float("nan"), float("inf"), -1.0, 0.0):
        assert not c.observe(bad, 1.0) and not c.observe(1.0, bad)
    assert len(c) == 1


def test_median_resists_a_wild_stamp() -> None:
    c = ClockOffset(window=9)
    for i in range(8):
        c.observe(1000.0 + i + 5.0 + (0.2 if i % 2 else -0.2), 1000.0 + i)
    c.observe(1_000_000.0, 1009.0)  # one forged or broken stamp
    off = c.offset()
    assert off is not None and abs(off - 5.0) < 0.5


def test_follows_a_real_clock_step_after_agreeing_observations() -> None:
    c = ClockOffset(window=15, step_confirm=3)
    for i in range(10):
        c.observe(PROVINCE_NOW + i, PROVINCE_NOW - FIVE_YEARS + i)
    assert c.offset() == FIVE_YEARS
    # NTP fixes the kiosk clock: the offset becomes ~0 after three agreeing observations
    for i in range(3):
        c.observe(PROVINCE_NOW + 100 + i, PROVINCE_NOW + 100 + i - 0.3)
    off = c.offset()
    assert off is not None and abs(off) < 1


def test_persistence_round_trip() -> None:
    c = ClockOffset()
    c.observe(2000.0, 1000.0)
    d = ClockOffset.from_json(c.to_json())
    assert d.offset() == 1000.0
    assert ClockOffset.from_json({"observations": ["x", None, 3.0]}).offset() == 3.0
    assert ClockOffset.from_json(None).offset() is None


def test_kiosk_five_years_behind_sells_records_and_judges_commands(tmp_path: Path) -> None:
    kiosk_clock = ManualClock(PROVINCE_NOW - FIVE_YEARS)  # RTC battery died; booted in the past
    store = open_store(tmp_path, kiosk_clock)
    est = ClockOffset()
    # a province message (an ack, a confirmation) stamped with province time arrives
    est.observe(PROVINCE_NOW, kiosk_clock.time())
    assert est.province_now(kiosk_clock.time()) == PROVINCE_NOW

    # records carry kiosk time, the offset and the seq: the province can place them in time
    ob = Outbox(store, Topics("AH-1"), kiosk_clock, clock_offset=est)
    kiosk_clock.advance(30)
    rec = ob.append("sale", {"order_id": "AH-1-00001"}, Priority.CRITICAL)
    msg = decode("event", rec.payload)
    assert msg["kiosk_time"] == PROVINCE_NOW - FIVE_YEARS + 30
    assert msg["kiosk_time"] + msg["clock_offset"] == PROVINCE_NOW + 30
    assert msg["seq"] == 1
    # resending still works on the wrong clock
    ob.mark_sent([rec.seq])
    kiosk_clock.advance(31)
    assert ob.resend_overdue(10) == 1 and [r.seq for r in ob.due(10)] == [1]

    # a command valid for 5 minutes of province time is accepted; by kiosk time alone it
    # would look 5 years too long-lived, and an expired one would look valid
    priv, pub = generate_keypair()
    kid = key_id(pub)
    tp = TrustPolicy(Keyring([pub]), store, kiosk_id="AH-1", clock=kiosk_clock)
    now = est.province_now(kiosk_clock.time())
    body = {"kiosk_id": "AH-1", "command": "resync", "nonce": "n-000001"}
    ok = sign_envelope(priv, kid, {**body, "expires_at": now + 300})
    assert tp.accept_command(ok, now=now)["command"] == "resync"
    stale = sign_envelope(priv, kid, {**body, "nonce": "n-000002", "expires_at": now - 10})
    with pytest.raises(TrustError, match="EXPIRED"):
        tp.accept_command(stale, now=now)
    store.close()
