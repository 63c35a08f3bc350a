"""`SyncClient.start(loop)`: several kiosks' sync clients on one shared loop thread
(kiosk.sync.shared_loop, what the fleet simulator runs), against the real Mosquitto and province:
no thread per client, records arrive exactly once through a connection reset (the loop's
reconnect with the client's backoff), and a clean stop still says "offline"."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from kiosk.sim.broker import TcpProxy
from kiosk.sim.province import ProvinceSimulator
from kiosk.sync.shared_loop import SyncLoop
from tests.support.kiosk_node import KIOSK_A, KIOSK_B, MakeKiosk


def wait_for(cond: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


def test_two_kiosks_on_one_loop_thread_survive_a_reset_and_say_offline(
    proxy: TcpProxy, province: ProvinceSimulator, make_kiosk: MakeKiosk
) -> None:
    loop = SyncLoop("test-loop").start()
    try:
        nodes = [make_kiosk(k, port=proxy.port, start=False) for k in (KIOSK_A, KIOSK_B)]
        before = {t.ident for t in threading.enumerate()}
        for n in nodes:
            n.client.start(loop)
        assert wait_for(lambda: all(n.client.connected for n in nodes), 20)
        new = [
            t.name
            for t in threading.enumerate()
            if t.ident not in before and "_pump" not in t.name  # (the proxy's own threads)
        ]
        assert new == [], f"threads started for clients on a shared loop: {new}"

        ids = {n.kiosk_id: n.sell(300) for n in nodes}
        assert wait_for(lambda: proxy.bytes_up >= 40_000, 20, 0.001)
        assert proxy.cut() >= 1  # mid-stream, both kiosks at once
        for n in nodes:
            assert n.wait_drained(40), f"{n.kiosk_id}: {n.pending()} records left"
            got = [e["event_id"] for e in province.events(n.kiosk_id)]
            assert sorted(got) == sorted(ids[n.kiosk_id])  # all of them, each once
            assert n.client.stats().reconnects >= 1

        assert wait_for(
            lambda: all(
                province.status_seen.get(n.kiosk_id, {}).get("state") == "online" for n in nodes
            ),
            10,
        )
        nodes[0].client.stop()
        assert wait_for(lambda: province.status_seen[KIOSK_A]["state"] == "offline", 5)
        assert province.status_seen[KIOSK_B]["state"] == "online"  # the other one runs on
        assert nodes[1].client.connected
    finally:
        for n in nodes:
            n.client.stop()
        loop.close()
