"""Outbox drain benchmark against a local Mosquitto (TLS, client certificates), plus durable
append rates and kiosk memory with a long queue.

Run: /tmp/kvenv/bin/python bench/bench_outbox_drain.py [N_DRAIN] [N_RSS]
  (defaults 10000 and 100000)

Prints:
1. drain: N queued CRITICAL sale records through SyncClient (QoS 1, PUBACK checked, written
   back with mark_sent) vs a bare paho publish loop of the same payloads in the same run, same
   broker, same in-flight window; the ratio (goal >= 0.8).
2. durable append rate of CRITICAL records: one transaction (fsync) per record, and group commit.
3. RSS of a kiosk process (store + outbox + SyncClient running, broker unreachable) with an
   empty queue vs N_RSS queued records.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "integration"))


import paho.mqtt.client as mqtt  # noqa: E402
from kiosk_node import KioskNode, sale_body, sync_config  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from kiosk.clock import SystemClock  # noqa: E402
from kiosk.core.ledger import GENESIS_HASH  # noqa: E402
from kiosk.sim.broker import Mosquitto, Pki, free_port  # noqa: E402
from kiosk.store import open_store  # noqa: E402
from kiosk.sync.outbox import Outbox, OutboxItem, Priority  # noqa: E402
from kiosk.sync.topics import Topics  # noqa: E402

KIOSK = "AH-340100-0001"
WINDOW = 64


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.node()} {platform.machine()} {model} x{os.cpu_count()}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"paho-mqtt {importlib.metadata.version('paho-mqtt')}, {Mosquitto.version()}"
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


def bare_paho(pki: Pki, broker: Mosquitto, payloads: list[bytes], topic: str) -> float:
    cert = pki.client(KIOSK)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bare-paho", protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(pki.ca_file), certfile=str(cert.cert_file), keyfile=str(cert.key_file))
    c.max_inflight_messages_set(WINDOW)
    c.max_queued_messages_set(0)
    done = threading.Event()
    acked = [0]
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()

    def on_publish(cl: object, u: object, mid: int, rc: object, p: object) -> None:
        acked[0] += 1
        if acked[0] == len(payloads):
            done.set()

    c.on_publish = on_publish
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    connected.wait(10)
    t0 = time.perf_counter()
    for p in payloads:
        c.publish(topic, p, qos=1)
    done.wait(120)
    dt = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    return dt


def drain(pki: Pki, broker: Mosquitto, n: int, tmp: Path) -> tuple[float, list[bytes], str]:
    cert = pki.client(KIOSK)
    cfg = sync_config(broker.url, pki.ca_file, cert.cert_file, cert.key_file)
    node = KioskNode(
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
    node.start()
    node.client.wait_connected(10)
    t0 = time.perf_counter()
    while node.client.stats().published < n:
        time.sleep(0.001)
    dt = time.perf_counter() - t0
    s = node.client.stats()
    assert s.puback_failures == 0 and s.peak_inflight <= WINDOW
    node.close()
    return dt, payloads, topic


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
from kiosk_node import KioskNode, sync_config
cfg = sync_config("mqtts://127.0.0.1:" + sys.argv[4], Path(sys.argv[5]), Path(sys.argv[6]),
                  Path(sys.argv[7]))
node = KioskNode("AH-340100-0001", Path(sys.argv[1]), cfg)
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
            str(ROOT / "tests" / "integration"),
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
    print(f"command: {sys.executable} {' '.join(sys.argv)}")
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        pki = Pki(tmp / "pki")
        broker = Mosquitto(tmp / "broker", pki, max_inflight=WINDOW)
        broker.start()
        try:
            t_drain, payloads, topic = drain(pki, broker, n, tmp)
            t_bare = bare_paho(pki, broker, payloads, topic)
            t_drain2, _, _ = drain(pki, broker, n, tmp / "again")
            t_bare2 = bare_paho(pki, broker, payloads, topic)
        finally:
            broker.stop()
        size = sum(map(len, payloads)) / len(payloads)
        best_drain, best_bare = min(t_drain, t_drain2), min(t_bare, t_bare2)
        print(f"\n1. drain {n} records of {size:.0f} B at QoS 1, TLS, window {WINDOW} (best of 2):")
        print(f"   SyncClient + outbox : {best_drain:7.2f} s  {n / best_drain:8.0f} records/s")
        print(f"   bare paho loop      : {best_bare:7.2f} s  {n / best_bare:8.0f} messages/s")
        print(f"   ratio               : {best_bare / best_drain:.2f}x of bare paho (goal >= 0.8)")

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
