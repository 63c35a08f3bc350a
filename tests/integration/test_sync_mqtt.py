"""The sync path against a real Mosquitto (TLS, client certificates, ACL): kiosk outbox ->
SyncClient -> broker -> province simulator (SQLite, dedupe by event id) -> end-to-end ack ->
the record leaves the kiosk's outbox.

Timings are scaled where the production values would only make the suite slow, never where
they would change what is tested: reconnect backoff base 0.05 s / cap 0.5 s (production 1 s /
60 s), ack timeout 5 s (production 30 s). The broker outage lasts OUTAGE_S seconds (default 30:
with the backoff capped at 0.5 s that is 60 reconnect attempts; `KIOSK_IT_OUTAGE_S=60` for the
figure of the original issue, `=10` for a quick run; tests/integration/test_fleet_sim.py has the
reconnect storm of many kiosks).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import kiosk
from kiosk.clock import SystemClock
from kiosk.sim.broker import Mosquitto, Pki, TcpProxy
from kiosk.sim.province import ProvinceSimulator
from kiosk.store import open_store
from kiosk.sync import messages
from kiosk.sync.outbox import Outbox, Priority
from kiosk.sync.topics import Topics
from tests.support.fixtures import running_broker
from tests.support.kiosk_node import KIOSK_A, KIOSK_B, KioskNode, MakeKiosk

# The metrics a kiosk always sends (docs/mqtt-api.yaml: the recorded broker checks them).
TELEMETRY = {
    "mode": "idle",
    "board_online": True,
    "mqtt_connected": True,
    "outbox_depth": 0,
    "clock_offset_s": None,
    "cpu_temp_c": 48.5,
    "uptime_s": 5,
}
OUTAGE_S = float(os.environ.get("KIOSK_IT_OUTAGE_S", "30"))


def wait_for(cond: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


def assert_all_once(province: ProvinceSimulator, kiosk_id: str, ids: list[str]) -> None:
    stored = province.events(kiosk_id)
    got = [e["event_id"] for e in stored]
    assert len(got) == len(set(got)), "the province stored a record twice"
    assert sorted(got) == sorted(ids), (
        f"missing {len(set(ids) - set(got))}, unexpected {len(set(got) - set(ids))}"
    )
    (report,) = [r for r in province.chain_reports() if r.kiosk_id == kiosk_id]
    assert report.ok, report.problems[:5]
    assert report.outbox_gaps == []


# --- basics -----------------------------------------------------------------------------------


def test_records_arrive_exactly_once_and_leave_the_outbox(
    province: ProvinceSimulator, make_kiosk: MakeKiosk
) -> None:
    node = make_kiosk(KIOSK_A)
    ids = node.sell(200)
    assert node.wait_drained(20), f"outbox not drained: {node.pending()} left"
    assert_all_once(province, KIOSK_A, ids)
    # PUBACKed records are written back in batches (mark_delay_s) and the ack counter moves
    # just after the outbox commit: give both a moment
    assert wait_for(lambda: node.client.stats().published >= 200, 2)
    assert wait_for(lambda: node.client.stats().acked == 200, 2)
    stats = node.client.stats()
    assert stats.connected and stats.puback_failures == 0 and stats.bad_messages == 0
    assert stats.last_ack_at is not None and stats.last_connect_at is not None
    # birth: retained, online, with the boot counter and software version
    assert wait_for(lambda: KIOSK_A in province.status_seen, 5)
    status = province.status_seen[KIOSK_A]
    assert status["state"] == "online" and status["boot"] == node.boot
    assert status["software"] == kiosk.__version__


def test_mqtt_3_1_1_works_too(province: ProvinceSimulator, make_kiosk: MakeKiosk) -> None:
    node = make_kiosk(KIOSK_A, mqtt_version="3.1.1")
    ids = node.sell(50)
    assert node.wait_drained(20)
    assert_all_once(province, KIOSK_A, ids)


def test_clean_stop_says_offline(province: ProvinceSimulator, make_kiosk: MakeKiosk) -> None:
    node = make_kiosk(KIOSK_A)
    assert wait_for(lambda: province.status_seen.get(KIOSK_A, {}).get("state") == "online", 10)
    node.client.stop()
    assert wait_for(lambda: province.status_seen[KIOSK_A]["state"] == "offline", 5)


def test_inflight_never_exceeds_the_brokers_receive_maximum(
    tmp_path: Path, pki: Pki, make_kiosk: MakeKiosk
) -> None:
    with running_broker(tmp_path / "small-broker", pki, max_inflight=5) as small:
        node = make_kiosk(KIOSK_A, port=small.port, max_inflight=20)
        node.sell(300)
        assert wait_for(lambda: node.client.stats().published >= 300, 20)
        s = node.client.stats()
        assert s.window == 5, "the broker's Receive Maximum (5) must cap our window (20)"
        assert 1 <= s.peak_inflight <= 5
        assert s.puback_failures == 0


def test_live_sale_is_not_delayed_by_a_backlog(
    province: ProvinceSimulator, make_kiosk: MakeKiosk
) -> None:
    """1,000 NORMAL records wait (token bucket, 50/s: 20 s to drain); a sale made now still
    goes out at once, ahead of them."""
    node = make_kiosk(KIOSK_A, start=False, backlog_rate=50.0, backlog_burst=10)
    body = messages.reported_state(applied_versions={}, stock={}, software_version="test")
    items = [("reported", {**body, "n": i}, Priority.NORMAL) for i in range(1000)]
    node.outbox.append_many(items)
    node.start()
    assert wait_for(lambda: province.event_count(KIOSK_A, "reported") >= 10, 10)
    t0 = time.monotonic()
    node.sell(1)
    assert wait_for(lambda: province.event_count(KIOSK_A, "sale") == 1, 5)
    latency = time.monotonic() - t0
    backlog_done = province.event_count(KIOSK_A, "reported")
    assert latency < 1.0, f"live sale took {latency:.2f} s behind the backlog"
    assert backlog_done < 200, "the backlog should still be pacing (token bucket)"


# --- outages ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_broker_outage_while_sales_happen(
    mosquitto: Mosquitto, province: ProvinceSimulator, make_kiosk: MakeKiosk
) -> None:
    """The broker is down for OUTAGE_S seconds while 50 sales happen, spread over the outage.
    After it is back, all 50 arrive, exactly once, and in sequence order."""
    node = make_kiosk(KIOSK_A)
    assert node.client.wait_connected(10)
    before = node.sell(5)
    assert node.wait_drained(10)
    mosquitto.stop()
    assert wait_for(lambda: not node.client.connected, 5)
    ids: list[str] = []
    t_end = time.monotonic() + OUTAGE_S
    for i in range(50):
        ids += node.sell(1)
        time.sleep(max(0.0, (t_end - time.monotonic()) / (50 - i)))
    s = node.client.stats()
    assert s.connect_failures >= 5, "the kiosk should have kept trying (with backoff)"
    assert 0 <= s.next_retry_s <= 0.5, "backoff delay above its cap"
    assert node.pending() == 50
    mosquitto.start()
    t_back = time.monotonic()
    assert node.wait_drained(30), f"{node.pending()} records left after the outage"
    print(
        f"drained {time.monotonic() - t_back:.2f} s after the broker came back; "
        f"receipts {province.receipts(KIOSK_A)}; stats {node.client.stats()}"
    )
    assert_all_once(province, KIOSK_A, before + ids)
    seqs = [e["seq"] for e in province.events(KIOSK_A)]
    assert seqs == sorted(seqs), "records after the outage arrived out of sequence order"
    assert node.client.stats().reconnects >= 1


def test_connection_cut_mid_publish_loses_nothing(
    proxy: TcpProxy, province: ProvinceSimulator, make_kiosk: MakeKiosk
) -> None:
    """A proxy between kiosk and broker resets the TCP connection (RST both ways) three times
    while 1,000 sale records are being published: every cut lands in the middle of the
    stream, usually inside a TLS record of a PUBLISH."""
    node = make_kiosk(KIOSK_A, port=proxy.port, start=False)
    ids = node.sell(1000)
    thresholds = [40_000, 200_000, 500_000]
    cuts: list[int] = []

    def cutter() -> None:
        for limit in thresholds:
            if not wait_for(lambda limit=limit: proxy.bytes_up >= limit, 30, 0.001):
                return
            cuts.append(proxy.cut())

    t = threading.Thread(target=cutter, daemon=True)
    t.start()
    node.start()
    t.join(40)
    assert len(cuts) == 3 and all(c >= 1 for c in cuts), f"cuts: {cuts}"
    assert node.wait_drained(40), f"{node.pending()} records left"
    assert_all_once(province, KIOSK_A, ids)
    s = node.client.stats()
    assert s.reconnects >= 3


@pytest.mark.slow
def test_kiosk_kill_9_with_1000_queued_records(
    tmp_path: Path,
    pki: Pki,
    mosquitto: Mosquitto,
    province: ProvinceSimulator,
    make_kiosk: MakeKiosk,
) -> None:
    """A kiosk process queues 1,000 sale records and starts draining; it is killed with
    SIGKILL in the middle. Started again on the same store, it delivers the rest: the
    province ends with all 1,000, each once, chain intact."""
    data_dir = tmp_path / "kiosk-killed"
    cert = pki.client(KIOSK_A)
    conf = {
        "url": mosquitto.url,
        "ca": str(pki.ca_file),
        "cert": str(cert.cert_file),
        "key": str(cert.key_file),
        "queue": 1000,
    }
    root = Path(kiosk.__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.kiosk_node",
            str(data_dir),
            KIOSK_A,
            json.dumps(conf),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    published = 0
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("stats "):
                published = int(line.split()[1].split("=")[1])
                if published >= 150:
                    break
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert 150 <= published < 1000, f"killed at published={published}: not mid-drain"
    # the broker publishes the will of the killed session
    assert wait_for(lambda: province.status_seen.get(KIOSK_A, {}).get("state") == "offline", 10)
    node: KioskNode = make_kiosk(KIOSK_A, data_dir=data_dir)
    assert node.pending() > 0 or province.event_count(KIOSK_A) == 1000
    assert node.wait_drained(40), f"{node.pending()} records left after the restart"
    ids = [f"sale-{KIOSK_A}-{i}" for i in range(1, 1001)]
    assert_all_once(province, KIOSK_A, ids)
    assert wait_for(lambda: province.status_seen[KIOSK_A].get("boot") == 2, 5)
    assert province.status_seen[KIOSK_A]["state"] == "online"


def test_two_kiosks_share_the_broker(province: ProvinceSimulator, make_kiosk: MakeKiosk) -> None:
    a = make_kiosk(KIOSK_A)
    b = make_kiosk(KIOSK_B)
    ids_a, ids_b = a.sell(100), b.sell(100)
    assert a.wait_drained(20) and b.wait_drained(20)
    assert_all_once(province, KIOSK_A, ids_a)
    assert_all_once(province, KIOSK_B, ids_b)


def test_an_idle_kiosk_polls_one_number_and_still_sees_another_process_append(
    province: ProvinceSimulator, make_kiosk: MakeKiosk, tmp_path: Path
) -> None:
    """Every `poll_s` an idle drain asks the outbox only for its last seq (one small read);
    it scans for due records again only when that moved. 30,000 kiosks idle most of the day
    and a fleet worker holds hundreds of them (docs/scale.md): a scan per poll was most of its
    CPU. A record another process appends (a `kiosk` command on the same store) is still
    seen at the next poll and sent, without a wake()."""
    data_dir = tmp_path / "idle-kiosk"
    node = make_kiosk(KIOSK_A, data_dir=data_dir)  # poll_s 0.05
    node.sell(3)
    assert node.wait_drained(20)
    calls = {"due_rows": 0, "last_seq": 0}
    due_rows, last_seq = node.outbox.due_rows, node.outbox.last_seq

    def counting_due_rows(*a: Any, **kw: Any) -> Any:
        calls["due_rows"] += 1
        return due_rows(*a, **kw)

    def counting_last_seq() -> int:
        calls["last_seq"] += 1
        return last_seq()

    node.outbox.due_rows = counting_due_rows  # type: ignore[method-assign]
    node.outbox.last_seq = counting_last_seq  # type: ignore[method-assign]
    assert wait_for(lambda: calls["last_seq"] >= 20, 60), calls
    # 20 polls: at most one safety rescan (every 10 s; this window is ~1 s) - before, each
    # poll of an idle kiosk scanned the outbox
    assert calls["due_rows"] <= 1, calls

    other = open_store(data_dir)  # another process's connection to the same store
    try:
        rec = Outbox(other, Topics(KIOSK_A), SystemClock()).append(
            "telemetry", messages.telemetry(TELEMETRY), Priority.LOW
        )
    finally:
        other.close()
    assert node.wait_drained(20), "the other process's record was never sent"
    assert calls["due_rows"] >= 1
    assert [e["event_id"] for e in province.events(KIOSK_A) if e["kind"] == "telemetry"] == [
        rec.event_id
    ]
