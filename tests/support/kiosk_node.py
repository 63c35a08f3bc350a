"""A kiosk's sync side, without UI or hardware: store + outbox + SyncClient, for the tests.

Also runnable as a child process (`python -m tests.support.kiosk_node DATA_DIR KIOSK_ID CONF_JSON`
with the repository on PYTHONPATH), so a
test can kill -9 a kiosk in the middle of draining and start it again on the same store.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kiosk.clock import SystemClock
from kiosk.config import SyncConfig
from kiosk.core.ledger import GENESIS_HASH
from kiosk.sim.fleet_kiosk import sale_body as fleet_sale_body
from kiosk.sim.province import load_device_secret
from kiosk.store import open_store
from kiosk.sync.acks import AckVerifier
from kiosk.sync.client import SyncClient
from kiosk.sync.outbox import Outbox, OutboxItem, Priority
from kiosk.sync.topics import Topics
from tests.support.paths import SECRET_FILE

# Shared by the tests: import these from here, never from a conftest or a test module.
KIOSK_A = "AH-340100-0001"
KIOSK_B = "AH-340100-0002"
DEMO_SECRET = load_device_secret(SECRET_FILE)

LEDGER_SETTING = "test.ledger"


def sale_body(kiosk_id: str, seq: int, prev_hash: str, order_no: int) -> dict[str, Any]:
    """A well-formed, hash-chained sale record at a fixed time (kiosk.sim.fleet_kiosk)."""
    return fleet_sale_body(kiosk_id, seq, prev_hash, order_no, 1_790_000_000_000 + seq)


def sync_config(
    url: str, ca: Path | None, cert: Path | None, key: Path | None, **kw: Any
) -> SyncConfig:
    return SyncConfig(
        broker_url=url,
        mqtt_version=kw.pop("mqtt_version", "5"),
        ca_file=ca,
        cert_file=cert,
        key_file=key,
        allow_plaintext=kw.pop("allow_plaintext", False),
        keepalive_s=kw.pop("keepalive_s", 10),
    )


class KioskNode:
    def __init__(
        self,
        kiosk_id: str,
        data_dir: Path,
        config: SyncConfig,
        *,
        ack_timeout_s: float = 5.0,
        topics: Topics | None = None,
        province_key: bytes | None = None,
        **client_kw: Any,
    ) -> None:
        self.kiosk_id = kiosk_id
        self.clock = SystemClock()
        self.store = open_store(Path(data_dir))
        self.boot = self.store.counters.next_value("boot")
        self.topics = topics or Topics(kiosk_id)
        self.outbox = Outbox(self.store, self.topics, self.clock, ack_timeout_s=ack_timeout_s)
        self.messages: list[tuple[str, dict[str, Any]]] = []
        # called (in paho's thread) for every decoded downlink message, after it is recorded
        self.hook: Callable[[str, dict[str, Any]], None] | None = None
        self._msg_lock = threading.Lock()
        kw: dict[str, Any] = {
            "backoff_base_s": 0.05,
            "backoff_cap_s": 0.5,
            "stable_after_s": 1.0,
            "poll_s": 0.05,
        }
        if province_key is not None:  # signed acks (kiosk.sync.acks); without a key none count
            kw["acks"] = AckVerifier.for_key(kiosk_id, province_key, self.store)
        kw.update(client_kw)
        self.client = SyncClient(
            config,
            kiosk_id,
            self.outbox,
            Topics(kiosk_id),
            self.clock,
            self._on_message,
            self.boot,
            **kw,
        )

    def _on_message(self, topic: str, body: dict[str, Any]) -> None:
        with self._msg_lock:
            self.messages.append((topic, body))
        if self.hook is not None:
            self.hook(topic, body)

    def received(self, suffix: str) -> list[dict[str, Any]]:
        with self._msg_lock:
            return [b for t, b in self.messages if t.endswith(suffix)]

    def sell(self, n: int, priority: Priority = Priority.CRITICAL) -> list[str]:
        """Append n chained sale records in one transaction; returns their event ids."""
        state = self.store.settings.get_json(LEDGER_SETTING) or {"seq": 0, "hash": GENESIS_HASH}
        assert isinstance(state, dict)
        seq, prev = int(state["seq"]), str(state["hash"])
        items = []
        for _ in range(n):
            seq += 1
            body = sale_body(self.kiosk_id, seq, prev, seq)
            prev = body["record_hash"]
            items.append(OutboxItem("sale", body, priority, f"sale-{self.kiosk_id}-{seq}"))
        with self.store.transaction() as conn:
            recs = self.outbox.append_many(items, conn=conn)
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) "
                "DO UPDATE SET value = excluded.value",
                (LEDGER_SETTING, json.dumps({"seq": seq, "hash": prev})),
            )
        self.client.wake()
        return [r.event_id for r in recs]

    def pending(self) -> int:
        return sum(self.outbox.depth().values())

    def wait_drained(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pending() == 0:
                return True
            time.sleep(0.05)
        return self.pending() == 0

    def start(self) -> KioskNode:
        self.client.start()
        return self

    def close(self) -> None:
        self.client.stop()
        self.store.close()


def _child_main(argv: list[str]) -> None:
    """Child process: open the kiosk, optionally queue N sales, drain; print progress lines."""
    data_dir, kiosk_id, conf_json = argv[1], argv[2], json.loads(argv[3])
    cfg = sync_config(
        conf_json["url"],
        Path(conf_json["ca"]),
        Path(conf_json["cert"]),
        Path(conf_json["key"]),
    )
    key = conf_json.get("province_key")
    node = KioskNode(
        kiosk_id,
        Path(data_dir),
        cfg,
        ack_timeout_s=conf_json.get("ack_timeout", 5),
        province_key=bytes.fromhex(key) if key else None,
    )
    queue_n = int(conf_json.get("queue", 0))
    if queue_n:
        node.sell(queue_n)
    print(f"queued {node.pending()}", flush=True)
    node.start()
    while True:
        s = node.client.stats()
        print(f"stats published={s.published} pending={node.pending()}", flush=True)
        time.sleep(0.02)


if __name__ == "__main__":
    _child_main(sys.argv)


MakeKiosk = Callable[..., "KioskNode"]
