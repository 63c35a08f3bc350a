"""Resends while the province is away and the broker stays up (docs/sync.md, "Resends"): real
Mosquitto, the real province simulator stopped and started again on the same database, one
kiosk with short resend intervals from its settings.

The broker keeps queueing what the kiosk sends for the province's persistent session, so
sending every unacked record again at every ack timeout only piles up copies there (the
fleet's duplicate storm, docs/scale.md). With the resend schedule the kiosk sends a bounded
window per round, the rounds further and further apart; when the province is back everything
drains, nothing is lost."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from pathlib import Path

from kiosk.sim.broker import Mosquitto, Pki
from kiosk.sim.province import ProvinceSimulator
from tests.support.fixtures import running_province
from tests.support.kiosk_node import KIOSK_A, MakeKiosk
from tests.support.live_kiosk import wait_for

ACK_TIMEOUT_S = 0.5  # overdue after this; also the first gap between rounds
CAP_S = 2.0  # the gap doubles up to this while nothing is acknowledged
WINDOW = 4  # records per round once the province acks (those an acked record overtook)
PROBE = 2  # records per round while it is silent
OUTAGE_S = 8.0
RECORDS = 20


def test_province_away_resends_a_bounded_window_in_growing_rounds_then_all_drains(
    tmp_path: Path,
    pki: Pki,
    mosquitto: Mosquitto,
    province_keys: tuple[bytes, bytes],
    province_root: tuple[bytes, bytes],
    make_kiosk: MakeKiosk,
) -> None:
    def province() -> AbstractContextManager[ProvinceSimulator]:
        return running_province(
            tmp_path / "province",
            pki,
            mosquitto,
            {KIOSK_A: b"secret"},
            province_keys[0],
            root_key=province_root[0],
        )

    node = make_kiosk(
        KIOSK_A,
        ack_timeout_s=ACK_TIMEOUT_S,
        resend_cap_s=CAP_S,
        resend_window=WINDOW,
        resend_probe=PROBE,
    )
    with province() as sim:
        assert node.client.wait_connected(30)
        first = node.sell(1)
        assert wait_for(lambda: node.pending() == 0, 30), "the province never acked"
        assert sim.event_count(KIOSK_A, "sale") == 1
    # the province is away; its session on the broker keeps queueing for it
    ids = first + node.sell(RECORDS)
    assert wait_for(lambda: node.client.stats().published >= RECORDS + 1, 30)
    t0 = time.monotonic()
    time.sleep(OUTAGE_S)  # the outage itself (not a synchronisation)
    away = time.monotonic() - t0
    stats = node.client.stats()
    assert node.pending() == RECORDS and stats.connected and stats.reconnects == 0
    # probes ran (the safety net is still there) ...
    assert stats.resent >= PROBE, stats
    # ... but bounded: gaps of at least 0.25, 0.5, 1, 1, ... s (cap 2 s, jitter down to half),
    # so at most 3 + (away / 1 s) rounds of PROBE records; the old rule sent all 20 every
    # 0.5 s (~320 copies in 8 s)
    assert stats.resent <= PROBE * (3 + int(away) + 1), stats
    assert stats.resent < RECORDS * away / ACK_TIMEOUT_S / 4, stats

    with province() as sim:
        assert wait_for(lambda: node.pending() == 0, 60), "not drained after the province came back"
        got = {e["event_id"] for e in sim.events(KIOSK_A)}
        assert set(ids) <= got  # nothing lost
        received, duplicates, rejected = sim.receipts(KIOSK_A)
        assert rejected == 0
        # every copy the broker queued reached the province once it was back; the dedupe
        # dropped the resent ones (at most what the rounds resent, plus a PUBACK race)
        assert duplicates <= node.client.stats().resent + WINDOW + PROBE
        print(
            f"away {away:.1f} s: {RECORDS} unacked records, {stats.resent} resent in rounds "
            f"(old rule: ~{int(RECORDS * away / ACK_TIMEOUT_S)}), province received "
            f"{received} new + {duplicates} duplicates"
        )
