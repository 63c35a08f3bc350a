"""`kiosk fleet-sim` in miniature: 3 kiosks (store + outbox + SyncClient each, own client
certificate) against a real Mosquitto and the province simulator for 10 s: zero loss, and every
message that crossed the broker is what docs/mqtt-api.yaml says (tests/support/mqtt_record.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.sim.fleet import run_fleet
from kiosk.sim.mqtt_tap import TappedMessage
from tests.support.mqtt_record import check_messages, format_violations


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_fleet_sim_three_kiosks_zero_loss(tmp_path: Path) -> None:
    recorded: list[TappedMessage] = []
    res = run_fleet(
        3,
        10.0,
        sale_rate_per_min=30.0,
        telemetry_s=3.0,
        workdir=tmp_path / "fleet",
        record_mqtt=recorded,
    )
    print(res.format())
    assert res.connected == 3
    assert res.sales > 0 and res.telemetry > 0
    assert res.lost == 0, res.format()
    assert res.acked_sales == res.province_sales == res.sales
    assert res.latency_p50_ms is not None and res.latency_p50_ms < 5000
    assert any(m.topic.endswith("/events/sale") for m in recorded)
    violations = check_messages(recorded)
    assert violations == [], format_violations(violations, "in the fleet simulation")
