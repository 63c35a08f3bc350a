"""`kiosk fleet-sim` in miniature: kiosks spread over worker processes (store + outbox +
SyncClient each, own client certificate, production pacing) and the province in its own
process, against a real Mosquitto with the production config: zero loss in steady load, through
a reconnect storm (the broker stopped and started) and through a province outage; a staged
rollout (a good release wave by wave, a bad one aborted after its first wave). No timing
assertions: zero loss, no duplicates after dedupe and a full drain within generous timeouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kiosk.sim.fleet import run_fleet
from kiosk.sim.fleet_rollout import run_rollout_scenario
from kiosk.sim.fleet_storm import run_day_outage, run_outage
from kiosk.sim.mqtt_tap import TappedMessage
from tests.support.mqtt_record import check_messages, format_violations


@pytest.mark.timeout(180)
def test_fleet_sim_three_kiosks_in_two_workers_zero_loss(tmp_path: Path) -> None:
    """...and every message that crossed the broker is what docs/mqtt-api.yaml says."""
    recorded: list[TappedMessage] = []
    res = run_fleet(
        3,
        10.0,
        sale_rate_per_min=30.0,
        telemetry_s=3.0,
        workdir=tmp_path / "fleet",
        per_worker=2,
        record_mqtt=recorded,
    )
    print(res.format())
    assert res.workers == 2
    assert res.connected == 3
    assert res.sales > 0 and res.telemetry > 0
    assert res.lost == 0, res.format()
    assert res.acked_sales == res.province_sales == res.sales
    assert res.duplicates_after_dedupe == 0
    assert res.latency_p50_ms is not None
    assert any(m.topic.endswith("/events/sale") for m in recorded)
    violations = check_messages(recorded)
    assert violations == [], format_violations(violations, "in the fleet simulation")


@pytest.mark.timeout(600)
def test_reconnect_storm_twenty_kiosks_broker_down_then_province_down(tmp_path: Path) -> None:
    storm = run_outage(
        "broker",
        20,
        5.0,
        sale_rate_per_min=12.0,
        telemetry_s=5.0,
        settle_s=3.0,
        after_s=3.0,
        reconnect_timeout_s=180.0,
        drain_timeout_s=180.0,
        workdir=tmp_path / "storm",
    )
    print(storm.format())
    assert storm.connected_before == 20
    assert storm.sales > 0
    assert storm.reconnect_all_s is not None, storm.format()  # every kiosk came back
    assert storm.drain_s is not None, storm.format()  # every backlog drained
    assert storm.reconnects >= 20  # each kiosk lost its connection and made a new one
    assert storm.lost == 0 and storm.duplicates_after_dedupe == 0, storm.format()
    assert storm.ok and not storm.notes, storm.format()

    down = run_outage(
        "province",
        20,
        5.0,
        sale_rate_per_min=12.0,
        telemetry_s=5.0,
        settle_s=3.0,
        after_s=3.0,
        drain_timeout_s=180.0,
        workdir=tmp_path / "province",
    )
    print(down.format())
    assert down.backlog_at_restart > 0  # nothing was acked while the province was away
    assert down.drain_s is not None, down.format()
    assert down.lost == 0 and down.duplicates_after_dedupe == 0, down.format()
    assert down.ok and not down.notes, down.format()


@pytest.mark.timeout(300)
def test_a_day_without_the_province_drops_nothing_critical(tmp_path: Path) -> None:
    day = run_day_outage(4, 8.0, sales_per_day=40, telemetry_per_day=20, workdir=tmp_path / "d")
    print(day.format())
    assert day.sales > 0 and day.backlog_max > 0
    assert 0 < day.outbox_bytes_max <= day.budget_bytes
    assert day.critical_dropped == 0
    assert day.drain_s is not None, day.format()
    assert day.lost == 0 and day.duplicates_after_dedupe == 0, day.format()
    assert day.ok and not day.notes, day.format()


@pytest.mark.timeout(300)
def test_rollout_good_release_wave_by_wave_bad_release_stops_after_wave_one(
    tmp_path: Path,
) -> None:
    """`kiosk fleet-sim --scenario rollout` at 12 kiosks: the province process ticks the real
    rollout driver; `rollout start` (the real command) for a good release, then a bad one."""
    recorded: list[TappedMessage] = []
    res = run_rollout_scenario(
        12,
        waves="10%,50%,100%",
        soak="1s",
        sale_rate_per_min=30.0,
        telemetry_s=5.0,
        install_s=0.2,
        switch_s=0.1,
        health_s=0.2,
        tick_s=0.25,
        workdir=tmp_path / "rollout",
        record_mqtt=recorded,
    )
    print(res.format())
    good, bad = res.good, res.bad
    assert good is not None and bad is not None
    assert res.connected == 12
    # the good release reached every kiosk, wave by wave (cumulative 10 %, 50 %, 100 %)
    assert good.status == "done", res.format()
    assert [(w.targeted, w.received, w.updated, w.failed) for w in good.waves] == [
        (2, 2, 2, 0),
        (4, 4, 4, 0),
        (6, 6, 6, 0),
    ], res.format()
    # each wave's first command came after every kiosk of the previous wave had reported
    # healthy on the new version (province's clock of arrival) for the soak time
    for w in good.waves[1:]:
        assert w.after_healthy_s is not None and w.after_healthy_s >= 1.0, res.format()
    # the bad release: wave 1 rolled back by itself, the rollout aborted, nobody else got it
    assert bad.status == "aborted" and "failed" in bad.reason, res.format()
    # (the first failure may already abort it: 1 of 2 is over 2 %)
    assert len(bad.waves) == 1 and bad.waves[0].failed >= 1 and bad.waves[0].updated == 0
    assert bad.received_outside == 0
    wave1 = set(bad.waves[0].kiosk_ids)
    got_bad = {
        env["body"]["kiosk_id"]
        for m in recorded
        if m.topic.endswith("/commands")
        for env in [json.loads(m.payload)]
        if env["body"]["command"] == "install_release" and bad.version in env["body"]["args"]["url"]
    }
    assert got_bad == wave1, (got_bad, wave1)
    rolled_back = {
        json.loads(m.payload)["kiosk_id"]
        for m in recorded
        if m.topic.endswith("/events/alarm")
        and json.loads(m.payload)["body"]["code"] == "UPDATE_ROLLED_BACK"
    }
    assert rolled_back == wave1
    # sales went on through both rollouts; nothing lost
    assert good.sales_during > 0 and bad.sales_during > 0
    assert res.lost == 0 and res.duplicates_after_dedupe == 0, res.format()
    assert res.ok and not res.notes, res.format()
    violations = check_messages(recorded)
    assert violations == [], format_violations(violations, "in the rollout simulation")
