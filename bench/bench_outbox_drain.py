"""Outbox drain benchmark against a local Mosquitto (TLS, client certificates), plus durable
append rates and kiosk memory with a long queue.

Run: .venv/bin/python bench/bench_outbox_drain.py [N_DRAIN] [N_RSS]
  (defaults 10000 and 100000)

Prints:
1. drain: N queued CRITICAL sale records through SyncClient (QoS 1, PUBACK checked, written
   back with mark_sent) vs a bare paho publish loop of the same payloads in the same run: same
   broker, same topic and payload bytes, MQTT 5, same TLS context settings and client
   certificate, same in-flight window (64 = the broker's Receive Maximum); 3 alternating
   rounds, medians, and the ratio against the goal (>= 0.8x).
2. durable append rate of CRITICAL records: one transaction (fsync) per record, and group commit.
3. RSS of a kiosk process (store + outbox + SyncClient running, broker unreachable) with an
   empty queue vs N_RSS queued records.
"""

from __future__ import annotations

import importlib.metadata
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


import _common  # noqa: E402  (bench/ is sys.path[0] when run as a script)
import paho.mqtt.client as mqtt  # noqa: E402
from _sync_node import SyncNode, sale_body, sync_config  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from kiosk.clock import SystemClock  # noqa: E402
from kiosk.config import SyncConfig  # noqa: E402
from kiosk.core.ledger import GENESIS_HASH  # noqa: E402
from kiosk.sim.broker import Mosquitto, Pki, free_port  # noqa: E402
from kiosk.store import open_store  # noqa: E402
from kiosk.sync.client import BrokerAddress, broker_address, tls_context  # noqa: E402
from kiosk.sync.outbox import Outbox, OutboxItem, Priority  # noqa: E402
from kiosk.sync.topics import Topics  # noqa: E402

KIOSK = "AH-340100-0001"
WINDOW = 64  # our window, paho's in-flight limit for the bare loop, the broker's Receive Maximum
GOAL = 0.8  # SyncClient + outbox rate / bare paho rate


def machine() -> str:
    return (
        f"{_common.machine()}, paho-mqtt {importlib.metadata.version('paho-mqtt')}, "
        f"{Mosquitto.version()}"
    )


def sale_items(n: int) -> list[OutboxItem]:
    prev = GENESIS_HASH
    items = []
    for seq in range(1, n + 1):
        body = sale_body(KIOSK, seq, prev, seq)
        prev = body["record_hash"]
        items.append(OutboxItem("sale", body, Priority.CRITICAL, f"sale-{seq}"))
    return items


def fill(outbox: Outbox, items: list[OutboxItem], batch: int = 1000) -> None:
    for i in range(0, len(items), batch):
        outbox.append_many(items[i : i + batch])


def fair_setup(pki: Pki, broker: Mosquitto) -> tuple[SyncConfig, ssl.SSLContext, BrokerAddress]:
    """One sync configuration for both sides: same broker address, same CA and client
    certificate, same TLS settings (kiosk.sync.client.tls_context builds the context for both)."""
    cert = pki.client(KIOSK)
    cfg = sync_config(broker.url, pki.ca_file, cert.cert_file, cert.key_file)
    return cfg, tls_context(cfg), broker_address(cfg)


def bare_paho(pki: Pki, broker: Mosquitto, payloads: list[bytes], topic: str) -> Run:
    """The reference: a bare paho loop publishing the same payloads to the same topic at QoS 1,
    MQTT 5, same TLS context settings, paho's in-flight limit = the same window; paho queues
    the rest (unlimited queue) and sends them from its own thread as PUBACKs come in."""
    _, ctx, addr = fair_setup(pki, broker)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bare-paho", protocol=mqtt.MQTTv5)
    c.tls_set_context(ctx)
    c.max_inflight_messages_set(WINDOW)
    c.max_queued_messages_set(0)
    done = threading.Event()
    acked = [0, 0]  # all PUBACKs, failures among them
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()

    def on_publish(cl: object, u: object, mid: int, rc: Any, p: object) -> None:
        acked[0] += 1
        if getattr(rc, "value", 0) >= 0x80:
            acked[1] += 1
        if acked[0] == len(payloads):
            done.set()

    c.on_publish = on_publish
    c.connect(addr.host, addr.port)
    c.loop_start()
    if not connected.wait(10):
        raise RuntimeError("bare paho: no CONNACK")
    t0 = time.perf_counter()
    for p in payloads:
        c.publish(topic, p, qos=1)
    if not done.wait(120):
        raise RuntimeError(f"bare paho: only {acked[0]} of {len(payloads)} PUBACKs")
    dt = time.perf_counter() - t0
    window = c.max_inflight_messages
    c.disconnect()
    c.loop_stop()
    assert acked[1] == 0, f"{acked[1]} PUBACK failures"
    return Run(dt, window, window)


class Run(NamedTuple):
    seconds: float
    window: int  # the in-flight limit in force (paho's max_inflight_messages)
    peak_inflight: int


def drain(pki: Pki, broker: Mosquitto, n: int, tmp: Path) -> tuple[Run, list[bytes], str]:
    """N queued CRITICAL records through SyncClient + Outbox: the time from the connection
    being up until every record is PUBACKed (reason code < 0x80) and written back with
    mark_sent (stats().published == N). The end is signalled by the mark_sent calls themselves,
    so the harness does not poll stats() (which reads SQLite) while the drain runs."""
    cfg, _, _ = fair_setup(pki, broker)
    node = SyncNode(
        KIOSK,
        tmp / "drain-kiosk",
        cfg,
        ack_timeout_s=3600,
        max_inflight=WINDOW,
        reset_sent_on_connect=False,
    )
    fill(node.outbox, sale_items(n))
    recs = node.outbox.due(n + 1)
    payloads, topic = [r.payload for r in recs], recs[0].topic
    marked = [0]
    done = threading.Event()
    mark_sent = node.outbox.mark_sent

    def counting_mark_sent(seqs: Any, now: float | None = None) -> None:
        seqs = list(seqs)
        mark_sent(seqs, now)
        marked[0] += len(seqs)
        if marked[0] >= n:
            done.set()

    node.outbox.mark_sent = counting_mark_sent  # type: ignore[method-assign]
    node.start()
    if not node.client.wait_connected(10):
        raise RuntimeError("SyncClient: not connected")
    t0 = time.perf_counter()
    if not done.wait(120):
        raise RuntimeError(f"SyncClient: only {marked[0]} of {n} records written back")
    dt = time.perf_counter() - t0
    s = node.client.stats()
    assert s.published >= n, s
    assert s.puback_failures == 0 and s.peak_inflight <= s.window <= WINDOW, s
    node.close()
    return Run(dt, s.window, s.peak_inflight), payloads, topic


def append_rates(tmp: Path) -> tuple[float, float]:
    store = open_store(tmp / "append-kiosk")
    outbox = Outbox(store, Topics(KIOSK), SystemClock())
    items = sale_items(3000)
    n1 = 300
    t0 = time.perf_counter()
    for it in items[:n1]:
        outbox.append(it.kind, it.body, it.priority, event_id=it.event_id)
    single = n1 / (time.perf_counter() - t0)
    rest = items[n1:]
    t0 = time.perf_counter()
    for i in range(0, len(rest), 100):
        outbox.append_many(rest[i : i + 100])
    group = len(rest) / (time.perf_counter() - t0)
    store.close()
    return single, group


RSS_CHILD = """
import sys, time
sys.path.insert(0, sys.argv[2]); sys.path.insert(0, sys.argv[3])
from pathlib import Path
from _sync_node import SyncNode, sync_config
cfg = sync_config("mqtts://127.0.0.1:" + sys.argv[4], Path(sys.argv[5]), Path(sys.argv[6]),
                  Path(sys.argv[7]))
node = SyncNode("AH-340100-0001", Path(sys.argv[1]), cfg)
node.start()
time.sleep(2.0)
depth = node.pending()
rss = [l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]
print(depth, rss, flush=True)
node.close()
"""


def rss_with(pki: Pki, data_dir: Path) -> tuple[int, int]:
    cert = pki.client(KIOSK)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            RSS_CHILD,
            str(data_dir),
            str(ROOT),
            str(ROOT / "bench"),
            str(free_port()),  # nothing listens: the kiosk is offline, the queue stays
            str(pki.ca_file),
            str(cert.cert_file),
            str(cert.key_file),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    depth, rss_kb = out.stdout.split()
    return int(depth), int(rss_kb)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    n_rss = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    rounds = 3
    print(f"command: {sys.executable} {' '.join(sys.argv)}")
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        pki = Pki(tmp / "pki")
        broker = Mosquitto(tmp / "broker", pki, max_inflight=WINDOW)
        broker.start()
        drains: list[Run] = []
        bares: list[Run] = []
        try:
            for i in range(rounds):  # alternate, so drift in the machine hits both alike
                run, payloads, topic = drain(pki, broker, n, tmp / f"round-{i}")
                drains.append(run)
                bares.append(bare_paho(pki, broker, payloads, topic))
        finally:
            broker.stop()
        size = sum(map(len, payloads)) / len(payloads)
        t_drain = statistics.median(r.seconds for r in drains)
        t_bare = statistics.median(r.seconds for r in bares)
        ratio = t_bare / t_drain
        print(
            f"\n1. drain {n} records of {size:.0f} B (same payloads and topic for both) at QoS 1, "
            f"MQTT 5, TLS (same tls_context, client certificate), broker Receive Maximum {WINDOW}, "
            f"median of {rounds} alternating rounds:"
        )
        print(
            f"   SyncClient + outbox : {t_drain:7.3f} s  {n / t_drain:8.0f} records/s  "
            f"(window {drains[0].window}, peak in flight {max(r.peak_inflight for r in drains)}; "
            f"rounds {' '.join(f'{r.seconds:.3f}' for r in drains)})"
        )
        print(
            f"   bare paho loop      : {t_bare:7.3f} s  {n / t_bare:8.0f} messages/s  "
            f"(window {bares[0].window}; rounds {' '.join(f'{r.seconds:.3f}' for r in bares)})"
        )
        print(
            f"   ratio               : {ratio:.2f}x of bare paho; goal >= {GOAL}x: "
            f"{'met' if ratio >= GOAL else 'missed'}"
        )
        single, group = append_rates(tmp)
        print("\n2. durable append of CRITICAL sale records (synchronous=FULL):")
        print(f"   one fsync per record: {single:8.0f} records/s")
        print(f"   group commit of 100 : {group:8.0f} records/s")

        empty_dir = tmp / "rss-empty"
        full_dir = tmp / "rss-full"
        store = open_store(full_dir)
        fill(Outbox(store, Topics(KIOSK), SystemClock(), budget_bytes=10**9), sale_items(n_rss))
        store.close()
        d0, r0 = rss_with(pki, empty_dir)
        d1, r1 = rss_with(pki, full_dir)
        print("\n3. kiosk process RSS (store + outbox + SyncClient, broker unreachable):")
        print(f"   queue {d0:>7} records: {r0 / 1024:7.1f} MiB")
        print(f"   queue {d1:>7} records: {r1 / 1024:7.1f} MiB  (+{(r1 - r0) / 1024:.1f} MiB)")


if __name__ == "__main__":
    main()
