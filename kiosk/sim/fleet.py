"""`kiosk fleet-sim`: N headless kiosks against one real Mosquitto and the province simulator.

What each simulated kiosk runs (honestly): its own SQLite store (tmp dir), the real Outbox and
the real SyncClient with its OWN client certificate (one MQTT/TLS connection each, CN = kiosk
id, the broker's ACL applies), and a light sale generator that appends hash-chained CRITICAL
sale records (kiosk.core.ledger wire form) at Poisson times plus coalesced LOW telemetry every
`--telemetry-s`. It does NOT run the controller, the serial link or a board emulator (the
vend path is measured by the chaos suite and the vend benchmarks); per-kiosk MQTT load is the
same, since a sale is one ledger record on the wire.

Measures: messages/s through the broker (uplink records + downlink acks), end-to-end latency
from record creation to the province's ack arriving at the kiosk (p50/p99), loss (records the
kiosk sold that the province does not hold, or that were never acked, at the end), broker CPU
(/proc/<mosquitto pid>/stat) and the simulator process's CPU (all kiosks + province together).

`register(subparsers, common_parent)` adds the `fleet-sim` command; `python -m kiosk.sim.fleet`
runs it standalone.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kiosk.sync.outbox import Outbox, OutboxRecord, Priority

__all__ = ["FleetResult", "cmd_fleet_sim", "main", "register", "run_fleet"]


def _kid(i: int) -> str:
    return f"AH-340100-{i + 1:04d}"


def _cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@dataclass
class FleetResult:
    kiosks: int
    duration_s: float
    sale_rate_per_min: float
    telemetry_s: float
    connected: int = 0
    sales: int = 0
    telemetry: int = 0
    acked_sales: int = 0
    province_sales: int = 0
    lost: int = 0
    messages: int = 0
    messages_per_s: float = 0.0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_max_ms: float | None = None
    broker_cpu_pct: float = 0.0  # of one core
    sim_cpu_pct: float = 0.0  # of one core: every kiosk + the province in this process
    drain_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def zero_loss(self) -> bool:
        return self.lost == 0 and self.connected == self.kiosks

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["zero_loss"] = self.zero_loss
        return d

    def format(self) -> str:
        p50 = "-" if self.latency_p50_ms is None else f"{self.latency_p50_ms:.0f}"
        p99 = "-" if self.latency_p99_ms is None else f"{self.latency_p99_ms:.0f}"
        return (
            f"fleet-sim: {self.kiosks} kiosks ({self.connected} connected), "
            f"{self.duration_s:.0f} s, {self.sale_rate_per_min} sales/min/kiosk, telemetry every "
            f"{self.telemetry_s} s\n"
            f"  sales {self.sales} (acked {self.acked_sales}, province holds "
            f"{self.province_sales}), telemetry {self.telemetry}, LOST {self.lost}\n"
            f"  messages/s {self.messages_per_s:.1f} (uplink + acks), latency sale->ack p50 "
            f"{p50} ms, p99 {p99} ms\n"
            f"  CPU (% of one core): mosquitto {self.broker_cpu_pct:.1f}, simulator (kiosks + "
            f"province) {self.sim_cpu_pct:.1f}; final drain {self.drain_s:.1f} s"
            + "".join(f"\n  ! {n}" for n in self.notes)
        )


class _AckTimer:
    """Wraps an Outbox (a kiosk.sync.client.OutboxLike; the rest of Outbox is passed through)
    and timestamps end-to-end acks."""

    def __init__(self, outbox: Outbox, created: dict[str, float], lat: list[float]) -> None:
        self._o = outbox
        self._created = created
        self._lat = lat
        self.acked_sales = 0

    def due(self, limit: int, now: float) -> list[OutboxRecord]:
        return self._o.due(limit, now)

    def mark_sent(self, seqs: Iterable[int], now: float) -> None:
        return self._o.mark_sent(seqs, now)

    def ack(self, event_ids: Iterable[str]) -> int:
        ids = list(event_ids)
        self._timed(ids)
        return self._o.ack(ids)

    def ack_records(self, records: Iterable[tuple[str, int]]) -> int:
        pairs = list(records)
        self._timed(e for e, _s in pairs)
        return self._o.ack_records(pairs)

    def _timed(self, event_ids: Iterable[str]) -> None:
        t = time.time()
        for e in event_ids:
            c = self._created.pop(e, None)
            if c is not None:
                self._lat.append(t - c)
                self.acked_sales += 1

    def depth(self) -> dict[Priority, int]:
        return self._o.depth()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._o, name)


class _SimKiosk:
    def __init__(
        self, i: int, root: Path, pki: Any, url: str, lat: list[float], province_key: bytes
    ) -> None:
        from kiosk.clock import SystemClock
        from kiosk.config import SyncConfig
        from kiosk.core.ledger import GENESIS_HASH
        from kiosk.store import open_store
        from kiosk.sync.acks import AckVerifier
        from kiosk.sync.client import SyncClient
        from kiosk.sync.outbox import Outbox
        from kiosk.sync.topics import Topics

        self.kid = _kid(i)
        cert = pki.client(self.kid)
        cfg = SyncConfig(
            broker_url=url,
            ca_file=pki.ca_file,
            cert_file=cert.cert_file,
            key_file=cert.key_file,
            keepalive_s=60,
        )
        clock = SystemClock()
        self.store = open_store(root / self.kid)
        boot = self.store.counters.next_value("boot")
        self.outbox = Outbox(self.store, Topics(self.kid), clock, ack_timeout_s=10.0)
        self.created: dict[str, float] = {}
        self.timer = _AckTimer(self.outbox, self.created, lat)
        self.client = SyncClient(
            cfg,
            self.kid,
            self.timer,
            Topics(self.kid),
            clock,
            lambda t, b: None,
            boot,
            acks=AckVerifier.for_key(self.kid, province_key, self.store),
            backoff_base_s=0.5,
            backoff_cap_s=10.0,
            poll_s=0.5,
        )
        self.seq = 0
        self.prev = GENESIS_HASH
        self.sold: list[str] = []
        self.telemetry = 0
        self.lock = threading.Lock()

    def sell(self) -> None:
        from kiosk.sync.outbox import Priority

        with self.lock:
            self.seq += 1
            body = _sale_body(self.kid, self.seq, self.prev)
            self.prev = body["record_hash"]
            eid = f"sale-{self.kid}-{self.seq}"
            self.created[eid] = time.time()
            self.outbox.append("sale", body, Priority.CRITICAL, event_id=eid)
            self.sold.append(eid)
        self.client.wake()

    def tele(self) -> None:
        from kiosk.sync import messages

        self.outbox.coalesce(
            "telemetry",
            messages.telemetry(
                {
                    "mode": "idle",
                    "board_online": True,
                    "mqtt_connected": self.client.connected,
                    "outbox_depth": self.pending(),
                    "clock_offset_s": None,
                    "cpu_temp_c": 48.5,
                    "uptime_s": 1,
                }
            ),
        )
        self.telemetry += 1
        self.client.wake()

    def pending(self) -> int:
        return int(sum(self.outbox.depth().values()))

    def close(self) -> None:
        self.client.stop(2.0)
        self.store.close()


def _sale_body(kiosk_id: str, seq: int, prev_hash: str) -> dict[str, Any]:
    from kiosk.core.ledger import record_hash

    price = 1000 + (seq % 4) * 250
    now_ms = int(time.time() * 1000)
    body: dict[str, Any] = {
        "schema": 1,
        "seq": seq,
        "kiosk_id": kiosk_id,
        "order_id": f"{kiosk_id}-{seq:05d}",
        "state": "completed",
        "lines": [
            {
                "product_id": f"P{(seq % 4) + 1:03d}",
                "name_zh": ["黄山毛峰", "六安瓜片", "砀山酥梨", "岳西茭白"][seq % 4],
                "name_en": ["Huangshan Maofeng", "Lu'an Guapian", "Dangshan pear", "Yuexi"][
                    seq % 4
                ],
                "certification_no": "AH-FP-2020-0001",
                "origin_county_zh": ["黄山区", "金寨县", "砀山县", "岳西县"][seq % 4],
                "origin_area_code": "341003",
                "price_fen": price,
                "slot_no": (seq % 60) + 1,
                "status": "delivered",
                "tx": seq,
                "outcome": "DELIVERED",
            }
        ],
        "payment_method": "wechat",
        "provider_ref": f"wx{seq:010d}",
        "paid_fen": price,
        "delivered_fen": price,
        "refund_due_fen": 0,
        "refund_reason": "",
        "created_at_ms": now_ms,
        "paid_at_ms": now_ms,
        "finished_at_ms": now_ms,
    }
    return {**body, "prev_hash": prev_hash, "record_hash": record_hash(prev_hash, body)}


def _pct(sorted_vals: list[float], q: float) -> float:
    k = min(len(sorted_vals) - 1, max(0, round(q * (len(sorted_vals) - 1))))
    return sorted_vals[k]


def run_fleet(
    kiosks: int,
    duration_s: float,
    *,
    sale_rate_per_min: float = 2.0,
    telemetry_s: float = 60.0,
    workdir: Path | None = None,
    seed: int = 1,
    drain_timeout_s: float = 60.0,
    say: Any = None,
    record_mqtt: list[Any] | None = None,
) -> FleetResult:
    """`record_mqtt`: a list that receives every MQTT message that crossed the broker
    (kiosk.sim.mqtt_tap.TappedMessage, recorded by a read-only audit subscriber on #)."""
    from kiosk.sim.broker import Mosquitto, Pki
    from kiosk.sim.mqtt_tap import AUDIT_USER, BrokerTap
    from kiosk.sim.province import BrokerSettings, ProvinceSimulator
    from kiosk.sync.signing import generate_keypair

    def log(text: str) -> None:
        if say is not None:
            say(text)

    own = workdir is None
    root = Path(tempfile.mkdtemp(prefix="kiosk-fleet-")) if workdir is None else Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    res = FleetResult(kiosks, duration_s, sale_rate_per_min, telemetry_s)
    rng = random.Random(seed)
    pki = Pki(root / "pki")
    audit = (AUDIT_USER,) if record_mqtt is not None else ()
    broker = Mosquitto(root / "broker", pki, max_inflight=20, audit_identities=audit)
    broker.start()
    assert broker.proc is not None and broker.backend_port is not None
    tap = None
    if record_mqtt is not None:
        acert = pki.backend_client(AUDIT_USER)
        tap = BrokerTap(broker.backend_port, pki.ca_file, acert.cert_file, acert.key_file).start()
    pcert = pki.backend_client()
    signing_key = generate_keypair()[0]
    province = ProvinceSimulator(
        BrokerSettings(
            url=broker.province_url,
            ca_file=pki.ca_file,
            cert_file=pcert.cert_file,
            key_file=pcert.key_file,
        ),
        root / "province",
        {},
        signing_key,
    )
    province.start()
    nodes: list[_SimKiosk] = []
    lat: list[float] = []
    try:
        if not province.wait_connected(15):
            raise RuntimeError("province simulator did not connect")
        for i in range(kiosks):
            n = _SimKiosk(i, root / "kiosks", pki, broker.url, lat, province.public_key)
            nodes.append(n)
            n.client.start()
        deadline = time.monotonic() + max(30.0, kiosks * 0.2)
        while time.monotonic() < deadline and not all(n.client.connected for n in nodes):
            time.sleep(0.1)
        res.connected = sum(1 for n in nodes if n.client.connected)
        log(f"{res.connected}/{kiosks} kiosks connected")
        # the load: Poisson sales per kiosk, telemetry every telemetry_s with a random phase
        events: list[tuple[float, int, str]] = []
        t0 = time.monotonic()
        rate = sale_rate_per_min / 60.0
        for i in range(kiosks):
            t = rng.expovariate(rate) if rate > 0 else duration_s + 1
            while t < duration_s:
                events.append((t, i, "sale"))
                t += rng.expovariate(rate)
            t = rng.uniform(0, telemetry_s)
            while t < duration_s:
                events.append((t, i, "tele"))
                t += telemetry_s
        events.sort()
        b_cpu0, s_cpu0, w0 = _cpu_of(broker.proc.pid), _self_cpu(), time.monotonic()
        for t, i, kind in events:
            delay = t0 + t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if kind == "sale":
                nodes[i].sell()
            else:
                nodes[i].tele()
        while time.monotonic() < t0 + duration_s:
            time.sleep(0.05)
        b_cpu1, s_cpu1, w1 = _cpu_of(broker.proc.pid), _self_cpu(), time.monotonic()
        res.broker_cpu_pct = 100 * (b_cpu1 - b_cpu0) / (w1 - w0)
        res.sim_cpu_pct = 100 * (s_cpu1 - s_cpu0) / (w1 - w0)
        res.sales = sum(len(n.sold) for n in nodes)
        res.telemetry = sum(n.telemetry for n in nodes)
        # the messages of the load window: each record up + its ack down (acks are batched, so
        # this counts records; the broker routes each to the province and each ack back)
        end = time.monotonic() + drain_timeout_s
        while time.monotonic() < end and any(n.pending() for n in nodes):
            time.sleep(0.1)
        res.drain_s = time.monotonic() - w1
        res.acked_sales = sum(n.timer.acked_sales for n in nodes)
        in_window = [x for x in lat]
        res.messages = 2 * (res.sales + res.telemetry)
        res.messages_per_s = res.messages / duration_s
        if in_window:
            s = sorted(in_window)
            res.latency_p50_ms = 1000 * _pct(s, 0.5)
            res.latency_p99_ms = 1000 * _pct(s, 0.99)
            res.latency_max_ms = 1000 * s[-1]
        held: set[str] = set()
        for n in nodes:
            for e in province.events(n.kid):
                if e["kind"] == "sale":
                    held.add(e["event_id"])
        res.province_sales = sum(1 for n in nodes for e in n.sold if e in held)
        res.lost = res.sales - res.province_sales
        unacked = res.sales - res.acked_sales
        if unacked:
            res.notes.append(f"{unacked} sales not acked within the {drain_timeout_s:.0f} s drain")
            res.lost = max(res.lost, unacked)
        if res.connected < kiosks:
            res.notes.append(f"only {res.connected} of {kiosks} kiosks connected")
    finally:
        for n in nodes:
            try:
                n.close()
            except Exception as e:  # a kiosk that cannot close cleanly must not hide results
                res.notes.append(f"{n.kid} close: {e!r}")
        province.stop()
        if tap is not None and record_mqtt is not None:
            tap.drain()
            tap.stop()
            record_mqtt.extend(tap.messages())
        broker.stop()
        if own:
            shutil.rmtree(root, ignore_errors=True)
    return res


# --- CLI --------------------------------------------------------------------------------------


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kiosks", type=int, default=10, help="number of simulated kiosks")
    p.add_argument("--duration", type=float, default=60.0, help="load duration, seconds")
    p.add_argument("--sale-rate", type=float, default=2.0, help="sales per kiosk per minute")
    p.add_argument("--telemetry-s", type=float, default=60.0, help="telemetry period, seconds")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="also print FLEET_JSON {...}")


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common_parent: argparse.ArgumentParser,
) -> None:
    """Add `fleet-sim` to the kiosk command's subparsers."""
    p = subparsers.add_parser(
        "fleet-sim",
        help="simulate N headless kiosks against one broker (see docs/scale.md)",
        parents=[common_parent],
        description=__doc__.split("\n")[0] if __doc__ else None,
    )
    _add_args(p)
    p.set_defaults(func=cmd_fleet_sim)


def cmd_fleet_sim(args: argparse.Namespace) -> int:
    res = run_fleet(
        args.kiosks,
        args.duration,
        sale_rate_per_min=args.sale_rate,
        telemetry_s=args.telemetry_s,
        seed=args.seed,
        say=print,
    )
    print(res.format())
    if args.json:
        print("FLEET_JSON " + json.dumps(res.as_dict()))
    return 0 if res.zero_loss else 1


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kiosk.sim.fleet")
    _add_args(p)
    return cmd_fleet_sim(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
