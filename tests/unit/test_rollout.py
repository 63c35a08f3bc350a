"""Staged rollouts (issue 16 req. 2, the province's decision core; kiosk/sim/rollout.py): 100
simulated cabinets, waves of 1%, 10%, 50%, 100%, a soak time, a failure budget, targeting,
pause / resume. A good release reaches every cabinet wave by wave; a bad one stops after the
first wave. The cabinets here are simulated by what they report (`reported.update`)."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import pytest

from kiosk.sim.rollout import (
    FleetCabinet,
    Rollout,
    RolloutTarget,
    parse_duration,
    parse_fraction,
    parse_waves,
    step,
    wave_members,
)

FLEET = [
    FleetCabinet(f"AH-{i:04d}", "hospital" if i % 2 else "school", "340102" if i < 50 else "340111")
    for i in range(100)
]


def committed(version: str) -> dict[str, object]:
    return {"running": version, "last_result": {"version": version, "result": "committed"}}


def rolled_back(version: str, old: str = "0.1.0") -> dict[str, object]:
    return {"running": old, "last_result": {"version": version, "result": "rolled_back"}}


def run(
    rollout: Rollout, behave: str, ticks: int = 400, dt: float = 60.0
) -> tuple[Rollout, list[list[str]]]:
    """Tick every `dt` seconds; a commanded cabinet reports its outcome at the next tick."""
    reports: dict[str, dict[str, object]] = {}
    sent_per_tick: list[list[str]] = []
    now = 0.0
    for _ in range(ticks):
        rollout, send = step(rollout, FLEET, reports, now)
        sent_per_tick.append(send)
        for k in send:
            reports[k] = (
                committed(rollout.version) if behave == "good" else rolled_back(rollout.version)
            )
        if rollout.status in ("done", "aborted"):
            break
        now += dt
    return rollout, sent_per_tick


def test_parsing() -> None:
    assert parse_waves("1%,10%,50%,100%") == (0.01, 0.1, 0.5, 1.0)
    assert (
        parse_duration("10m") == 600
        and parse_duration("90s") == 90
        and parse_duration("2h") == 7200
    )
    assert parse_fraction("2%") == 0.02
    for bad in ("10%,5%,100%", "1%,50%", ""):
        with pytest.raises(ValueError):
            parse_waves(bad)


def test_a_good_release_reaches_every_cabinet_wave_by_wave() -> None:
    r = Rollout(
        "0.2.0", "https://p/r/", parse_waves("1%,10%,50%,100%"), soak_s=600, max_failures=0.02
    )
    r, sent = run(r, "good")
    assert r.status == "done" and len(r.sent) == 100 and not r.failed
    waves = [s for s in sent if s]
    assert [len(w) for w in waves] == [1, 9, 40, 50]
    # each wave waited for the soak: at 60 s a tick, at least 10 ticks between two waves
    starts = [i for i, s in enumerate(sent) if s]
    assert all(b - a >= 10 for a, b in itertools.pairwise(starts)), starts


def test_a_bad_release_stops_after_the_first_wave() -> None:
    r = Rollout(
        "0.2.1", "https://p/r/", parse_waves("1%,10%,50%,100%"), soak_s=600, max_failures=0.02
    )
    r, sent = run(r, "bad")
    assert r.status == "aborted" and "1 of 1 cabinets failed" in r.reason
    assert len(r.sent) == 1 and sum(map(len, sent)) == 1  # nobody else was commanded
    again, more = step(r, FLEET, {}, 10**6)
    assert again.status == "aborted" and more == []


def test_failures_within_the_budget_do_not_stop_it() -> None:
    r = Rollout("0.2.0", "u", (0.5, 1.0), soak_s=0, max_failures=0.05)
    r, first = step(r, FLEET, {}, 0)
    assert len(first) == 50
    reports = {k: committed("0.2.0") for k in first}
    reports[first[0]] = rolled_back("0.2.0")
    reports[first[1]] = rolled_back("0.2.0")  # 2 of 50 = 4% <= 5%
    r, second = step(r, FLEET, reports, 1)
    assert r.status == "running" and len(r.failed) == 2 and len(second) == 50


def test_targeting_by_site_type_and_county() -> None:
    target = RolloutTarget(site_types=frozenset({"school"}), counties=frozenset({"340111"}))
    r = Rollout("0.2.0", "u", (1.0,), soak_s=0, target=target)
    members = wave_members(r, FLEET, 0)
    assert len(members) == 25
    assert all(int(k[3:]) % 2 == 0 and int(k[3:]) >= 50 for k in members)
    only = Rollout("0.2.0", "u", (1.0,), target=RolloutTarget(kiosk_ids=frozenset({"AH-0007"})))
    assert step(only, FLEET, {}, 0)[1] == ["AH-0007"]


def test_pause_holds_the_next_wave_and_resume_goes_on() -> None:
    r = Rollout("0.2.0", "u", (0.01, 1.0), soak_s=0)
    r, first = step(r, FLEET, {}, 0)
    reports = {first[0]: committed("0.2.0")}
    paused = dataclasses.replace(r, status="paused")
    paused, none = step(paused, FLEET, reports, 1)
    assert none == [] and paused.wave == 0
    _resumed, rest = step(dataclasses.replace(paused, status="running"), FLEET, reports, 2)
    assert len(rest) == 99


class Sent:
    def __init__(self) -> None:
        self.commands: list[tuple[str, str, dict[str, object]]] = []

    def send_command(
        self, kiosk_id: str, command: str, args: dict[str, object] | None = None
    ) -> object:
        self.commands.append((kiosk_id, command, dict(args or {})))
        return None


def test_province_sim_rollout_commands_and_driver(tmp_path: Path) -> None:
    """`province-sim release publish` / `rollout start|pause|resume|status` edit the data dir;
    the driver of `province-sim run` reads each cabinet's newest `reported.update` from the
    province's database and sends `install_release` wave by wave."""
    from kiosk.cli import main
    from kiosk.sim.province import open_db
    from kiosk.sim.rollout_shell import RolloutDriver
    from tests.support.releases import small_release

    rel, _, _ = small_release(tmp_path, version="0.2.0")
    data = tmp_path / "province"
    fleet = tmp_path / "fleet.csv"
    fleet.write_text(
        "kiosk_id,site_type,county\n"
        + "".join(f"{c.kiosk_id},{c.site_type},{c.county}\n" for c in FLEET)
    )
    dd = ("--data-dir", str(data))
    assert (
        main(
            [
                "province-sim",
                "release",
                "publish",
                str(rel),
                "--public-key",
                str(tmp_path / "release.pub"),
                *dd,
            ]
        )
        == 0
    )
    start = [
        "province-sim",
        "rollout",
        "start",
        "0.2.0",
        "--url",
        "https://p.example/releases/0.2.0",
        "--fleet",
        str(fleet),
        "--soak",
        "0",
        *dd,
    ]
    assert main(start) == 0
    sender = Sent()
    driver = RolloutDriver(sender, data)
    first = driver.tick(now=1.0)
    assert len(first) == 1 and sender.commands == [
        (first[0], "install_release", {"url": "https://p.example/releases/0.2.0/"})
    ]
    # the cabinet reports the new version committed -> the next wave goes out
    db = open_db(data)
    db.execute(
        "INSERT INTO events (event_id, kiosk_id, seq, kind, priority, boot, kiosk_time, body, "
        "received_at) VALUES ('r1', ?, 1, 'reported', 'normal', 1, 0, ?, 0)",
        (first[0], json.dumps({"update": committed("0.2.0")})),
    )
    db.close()
    assert main(["province-sim", "rollout", "pause", *dd]) == 0
    assert driver.tick(now=2.0) == []
    assert main(["province-sim", "rollout", "resume", *dd]) == 0
    assert len(driver.tick(now=3.0)) == 9
    assert main(["province-sim", "rollout", "status", *dd]) == 0
    assert main(start) == 1  # one rollout at a time
