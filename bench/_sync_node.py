"""A kiosk's sync side for the benchmarks: store + outbox + SyncClient, no UI, no hardware,
and the chained sale records it sends (kiosk.core.ledger wire form).

The benchmarks' own copy of what they need (tests/support/kiosk_node.py has the tests' richer
node): bench/ does not import from tests/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kiosk.clock import SystemClock
from kiosk.config import SyncConfig
from kiosk.core.ledger import record_hash
from kiosk.store import open_store
from kiosk.sync.client import SyncClient
from kiosk.sync.outbox import Outbox
from kiosk.sync.topics import Topics

PRODUCTS = [
    ("黄山毛峰", "Huangshan Maofeng", "黄山区"),
    ("六安瓜片", "Lu'an Guapian", "金寨县"),
    ("砀山酥梨", "Dangshan pear", "砀山县"),
    ("岳西茭白", "Yuexi", "岳西县"),
]


def sale_body(kiosk_id: str, seq: int, prev_hash: str, order_no: int) -> dict[str, Any]:
    """A well-formed, hash-chained one-line sale record."""
    name_zh, name_en, county = PRODUCTS[seq % 4]
    price = 1000 + (seq % 4) * 250
    body: dict[str, Any] = {
        "schema": 1,
        "seq": seq,
        "kiosk_id": kiosk_id,
        "order_id": f"{kiosk_id}-{order_no:05d}",
        "state": "completed",
        "lines": [
            {
                "product_id": f"P{(seq % 4) + 1:03d}",
                "name_zh": name_zh,
                "name_en": name_en,
                "certification_no": "AH-FP-2020-0001",
                "origin_county_zh": county,
                "origin_area_code": "341003",
                "price_fen": price,
                "slot_no": (seq % 60) + 1,
                "status": "delivered",
                "tx": seq,
                "outcome": "ok",
            }
        ],
        "payment_method": "wechat",
        "provider_ref": f"wx{seq:010d}",
        "paid_fen": price,
        "delivered_fen": price,
        "refund_due_fen": 0,
        "refund_reason": "",
        "created_at_ms": 1_790_000_000_000 + seq,
        "paid_at_ms": 1_790_000_000_000 + seq,
        "finished_at_ms": 1_790_000_000_000 + seq,
    }
    return {**body, "prev_hash": prev_hash, "record_hash": record_hash(prev_hash, body)}


def sync_config(url: str, ca: Path, cert: Path, key: Path) -> SyncConfig:
    return SyncConfig(
        broker_url=url,
        mqtt_version="5",
        ca_file=ca,
        cert_file=cert,
        key_file=key,
        allow_plaintext=False,
        keepalive_s=10,
    )


class SyncNode:
    """Store + outbox + SyncClient with short reconnect back-off (as the tests' KioskNode)."""

    def __init__(
        self,
        kiosk_id: str,
        data_dir: Path,
        config: SyncConfig,
        *,
        ack_timeout_s: float = 5.0,
        **client_kw: Any,
    ) -> None:
        self.clock = SystemClock()
        self.store = open_store(Path(data_dir))
        boot = self.store.counters.next_value("boot")
        self.outbox = Outbox(self.store, Topics(kiosk_id), self.clock, ack_timeout_s=ack_timeout_s)
        kw: dict[str, Any] = {
            "backoff_base_s": 0.05,
            "backoff_cap_s": 0.5,
            "stable_after_s": 1.0,
            "poll_s": 0.05,
            **client_kw,
        }
        self.client = SyncClient(
            config, kiosk_id, self.outbox, Topics(kiosk_id), self.clock, self._ignore, boot, **kw
        )

    @staticmethod
    def _ignore(topic: str, body: dict[str, Any]) -> None:
        pass

    def pending(self) -> int:
        return sum(self.outbox.depth().values())

    def start(self) -> SyncNode:
        self.client.start()
        return self

    def close(self) -> None:
        self.client.stop()
        self.store.close()
