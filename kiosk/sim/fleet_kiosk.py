"""One simulated kiosk of `kiosk fleet-sim` (kiosk.sim.fleet): the real store, Outbox and
SyncClient, with its own client certificate, plus a light sale generator.

Runs inside a fleet worker process (kiosk.sim.fleet_workers), its SyncClient on the worker's
shared loop (kiosk.sync.shared_loop: no thread of its own). Each kiosk: its own SQLite store
(its own directory), the real `Outbox` (production defaults: 50 MB budget, 30 s ack timeout)
and the real `SyncClient` with the production pacing (reconnect backoff with full jitter, base
1 s, cap 60 s; backlog token bucket 50/s; in-flight window 20), acks verified with the
province's public key (`AckVerifier.for_key`: without it no ack counts and nothing drains).
Sales are hash-chained CRITICAL `sale` records (kiosk.core.ledger wire form); telemetry is a
coalesced LOW record. Measures per kiosk: sale->ack latency, reconnects, connect failures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kiosk.sim.fleet_update import SimUpdater, SimUpdates
    from kiosk.sync.outbox import Outbox, OutboxRecord, Priority
    from kiosk.sync.shared_loop import SyncLoop

__all__ = ["KioskSpec", "SimKiosk", "kiosk_id_of", "sale_body"]


def kiosk_id_of(i: int) -> str:
    """The id of simulated kiosk number `i` (0-based)."""
    return f"AH-340100-{i + 1:04d}"


@dataclass(frozen=True)
class KioskSpec:
    """What a worker process needs to build one kiosk (plain data: crosses a spawn)."""

    index: int
    data_dir: Path
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class ClientTuning:
    """SyncClient/Outbox settings of every simulated kiosk; the defaults are production's."""

    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    ack_timeout_s: float = 30.0
    keepalive_s: int = 60
    poll_s: float = 0.25
    budget_bytes: int = 50_000_000
    resend_cap_s: float = 600.0  # resend rounds on one connection (docs/sync.md, "Resends")
    resend_window: int = 100
    resend_probe: int = 10


class _AckTimer:
    """Wraps an Outbox (a kiosk.sync.client.OutboxLike; the rest of Outbox is passed through)
    and timestamps end-to-end acks of sale records."""

    def __init__(self, outbox: Outbox, kiosk: SimKiosk) -> None:
        self._o = outbox
        self._k = kiosk

    def due(self, limit: int, now: float) -> list[OutboxRecord]:
        return self._o.due(limit, now)

    def mark_sent(self, seqs: Iterable[int], now: float) -> None:
        return self._o.mark_sent(seqs, now)

    def ack(self, event_ids: Iterable[str]) -> int:
        ids = list(event_ids)
        n = self._o.ack(ids)
        self._k.acked_now(ids)
        return n

    def ack_records(self, records: Iterable[tuple[str, int]]) -> int:
        pairs = list(records)
        n = self._o.ack_records(pairs)
        self._k.acked_now(e for e, _s in pairs)
        return n

    def depth(self) -> dict[Priority, int]:
        return self._o.depth()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._o, name)


class SimKiosk:
    """Store + Outbox + SyncClient of one simulated kiosk; `sell()` and `tele()` add records."""

    def __init__(
        self,
        spec: KioskSpec,
        ca_file: Path,
        url: str,
        province_key: bytes,
        tune: ClientTuning,
        updates: SimUpdates | None = None,
    ) -> None:
        """`updates`: take `install_release` commands (kiosk.sim.fleet_update); None: commands
        are ignored."""
        from kiosk.clock import SystemClock
        from kiosk.config import SyncConfig
        from kiosk.core.ledger import GENESIS_HASH
        from kiosk.store import open_store
        from kiosk.sync.acks import AckVerifier
        from kiosk.sync.client import SyncClient
        from kiosk.sync.outbox import Outbox
        from kiosk.sync.topics import Topics

        self.kid = kiosk_id_of(spec.index)
        cfg = SyncConfig(
            broker_url=url,
            ca_file=ca_file,
            cert_file=spec.cert_file,
            key_file=spec.key_file,
            keepalive_s=tune.keepalive_s,
        )
        clock = SystemClock()
        self.dir = spec.data_dir
        self.store = open_store(spec.data_dir)
        boot = self.store.counters.next_value("boot")
        self.outbox = Outbox(
            self.store,
            Topics(self.kid),
            clock,
            budget_bytes=tune.budget_bytes,
            ack_timeout_s=tune.ack_timeout_s,
        )
        self.lock = threading.Lock()
        self.created: dict[str, float] = {}  # unacked sale event id -> creation time
        self.latencies: list[float] = []  # seconds, sale created -> its ack arrived
        self.timer = _AckTimer(self.outbox, self)
        self.stopping = threading.Event()
        self.updater: SimUpdater | None = None
        commands_topic = Topics(self.kid).commands
        self.client = SyncClient(
            cfg,
            self.kid,
            self.timer,
            Topics(self.kid),
            clock,
            lambda t, b: self._downlink(commands_topic, t, b),
            boot,
            acks=AckVerifier.for_key(self.kid, province_key, self.store),
            backoff_base_s=tune.backoff_base_s,
            backoff_cap_s=tune.backoff_cap_s,
            poll_s=tune.poll_s,
            resend_cap_s=tune.resend_cap_s,
            resend_window=tune.resend_window,
            resend_probe=tune.resend_probe,
        )
        if updates is not None:
            from kiosk.sim.fleet_update import SimUpdater

            self.updater = SimUpdater(
                self.kid,
                spec.data_dir / "update",
                self.store,
                self.outbox,
                updates,
                self.client.wake,
                self.stopping,
            )
        self.seq = 0
        self.prev = GENESIS_HASH
        self.sold = 0
        self.not_selling = 0  # sales that did not happen: the kiosk was switching versions
        self.acked = 0
        self.telemetry = 0
        self.connected_at: float | None = None  # first connection, time.time()
        self.started = False

    def start(self, loop: SyncLoop | None = None) -> None:
        """Connect: on the worker's shared loop (one thread for all its kiosks), or, without
        one, on the client's own threads as in a kiosk."""
        if self.updater is not None:  # what it runs, as a kiosk reports after each start
            from kiosk.sync.outbox import Priority

            self.outbox.append("reported", self.updater.reported(), Priority.NORMAL)
        self.client.start(loop)
        self.started = True

    def _downlink(self, commands_topic: str, topic: str, body: dict[str, Any]) -> None:
        if topic == commands_topic and self.updater is not None:
            self.updater.command(body)

    def acked_now(self, event_ids: Iterable[str]) -> None:
        t = time.time()
        with self.lock:
            for e in event_ids:
                c = self.created.pop(e, None)
                if c is not None:
                    self.latencies.append(t - c)
                    self.acked += 1

    def sell(self) -> None:
        from kiosk.sync.outbox import Priority

        if self.updater is not None and self.updater.switching:
            self.not_selling += 1  # stopped for the switch: nobody can buy
            return
        with self.lock:
            self.seq += 1
            body = sale_body(self.kid, self.seq, self.prev)
            self.prev = body["record_hash"]
            eid = f"sale-{self.kid}-{self.seq}"
            self.created[eid] = time.time()
            self.outbox.append("sale", body, Priority.CRITICAL, event_id=eid)
            self.sold += 1
        self.client.wake()

    def tele(self) -> None:
        from kiosk.sync import messages

        self.outbox.coalesce(
            "telemetry",
            messages.telemetry(  # the metrics a kiosk always sends (docs/mqtt-api.yaml)
                {
                    "mode": "idle",
                    "board_online": True,
                    "mqtt_connected": self.client.connected,
                    "outbox_depth": 0,
                    "clock_offset_s": None,
                    "cpu_temp_c": 48.5,
                    "uptime_s": 1,
                }
            ),
        )
        self.telemetry += 1
        self.client.wake()

    def oldest_unacked(self) -> float | None:
        with self.lock:
            return min(self.created.values()) if self.created else None

    def connected(self) -> bool:
        ok = self.client.connected
        if ok and self.connected_at is None:
            self.connected_at = time.time()
        return ok

    def pending(self) -> int:
        return int(sum(self.outbox.depth().values()))

    def disk_bytes(self) -> int:
        """Bytes of the kiosk's store files on disk (database, WAL, shared memory)."""
        return sum(p.stat().st_size for p in self.dir.iterdir() if p.is_file())

    def report(self) -> dict[str, Any]:
        s = self.client.stats()
        depth = self.outbox.depth()
        dropped = self.outbox.dropped()
        with self.lock:
            lat = list(self.latencies)
        return {
            "kiosk_id": self.kid,
            "sold": self.sold,
            "acked": self.acked,
            "telemetry": self.telemetry,
            "latencies": lat,
            "reconnects": s.reconnects,
            "connect_failures": s.connect_failures,
            "resent": s.resent,
            "connected_at": self.connected_at,
            "pending": {p.name: n for p, n in depth.items()},
            "dropped": {p.name: n for p, n in dropped.items()},
            "outbox_bytes": self.outbox.size_bytes(),
            "budget_bytes": self.outbox.budget_bytes,
            "disk_bytes": self.disk_bytes(),
            "not_selling": self.not_selling,
            "update": None if self.updater is None else self.updater.report(),
        }

    def close(self) -> None:
        self.stopping.set()
        self.client.stop(2.0)
        self.store.close()


def sale_body(
    kiosk_id: str,
    seq: int,
    prev_hash: str,
    order_no: int | None = None,
    at_ms: int | None = None,
) -> dict[str, Any]:
    """A well-formed, hash-chained sale record (kiosk.core.ledger wire form): order number
    `order_no` (default `seq`), made at `at_ms` (default now). Also the tests' and benches'."""
    from kiosk.core.ledger import record_hash

    price = 1000 + (seq % 4) * 250
    now_ms = int(time.time() * 1000) if at_ms is None else at_ms
    body: dict[str, Any] = {
        "schema": 1,
        "seq": seq,
        "kiosk_id": kiosk_id,
        "order_id": f"{kiosk_id}-{seq if order_no is None else order_no:05d}",
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
