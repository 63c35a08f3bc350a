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
from kiosk.sim.fleet_kiosk import sale_body as fleet_sale_body
from kiosk.store import open_store
from kiosk.sync.client import SyncClient
from kiosk.sync.outbox import Outbox
from kiosk.sync.topics import Topics


def sale_body(kiosk_id: str, seq: int, prev_hash: str, order_no: int) -> dict[str, Any]:
    """A well-formed, hash-chained one-line sale record (kiosk.sim.fleet_kiosk)."""
    return fleet_sale_body(kiosk_id, seq, prev_hash, order_no, 1_790_000_000_000 + seq)


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
