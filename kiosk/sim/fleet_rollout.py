"""`kiosk fleet-sim --scenario rollout`: a staged rollout over N simulated kiosks (issue 16).

The fleet of kiosk.sim.fleet_world (real broker, each kiosk its own store, Outbox, SyncClient
and client certificate, the province simulator in its own process) with two additions: the
province process ticks `<province dir>/rollout.json` with the real driver
(kiosk/sim/rollout_shell.py `RolloutDriver`, deciding with kiosk/sim/rollout.py), and each
kiosk answers the signed `install_release` command as a kiosk does (kiosk.sim.fleet_update:
checked, then `events/update` steps, `reported.update`, an alarm after a rollback; no wheel is
installed).

The scenario: a release key; two small signed releases (manifest and a lock file, no wheels:
the kiosks install nothing), `GOOD` and `BAD` (the kiosks' stand-in for a version that crashes
at start), each published with the real `kiosk province-sim release publish` command; sales
throughout (the load runs from before the first rollout to after the second); `rollout start
GOOD --waves W --soak S --max-failures F` (the real command, writing the file the province
process ticks) until done, then the same for BAD until it aborts. Reported per rollout and per
wave: kiosks targeted, updated (running the version at the end), failed, the time the wave took
(from its first command to the next wave's or the end), and for each wave after the first, how
long after the previous wave's last healthy report its first command came (>= the soak). At the
end: records lost (sold by a kiosk, not held by the province), duplicates, and the kiosks
outside BAD's first wave that received it (must be none).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import shutil
import sqlite3
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kiosk.sim.fleet_kiosk import kiosk_id_of
from kiosk.sim.fleet_update import SimUpdates
from kiosk.sim.fleet_world import FleetWorld
from kiosk.sim.rollout import Rollout, parse_duration

__all__ = ["RolloutRun", "RolloutScenario", "WaveRow", "run_rollout_scenario"]


@dataclass
class WaveRow:
    wave: int  # 1-based
    targeted: int  # commanded in this wave
    received: int  # kiosks that got the install_release command
    updated: int  # running the version at the end
    failed: int
    seconds: float  # first command of the wave -> next wave's first command (or the end)
    after_healthy_s: float | None = None  # earlier waves all healthy -> this wave's 1st command
    kiosk_ids: list[str] = field(default_factory=list)


@dataclass
class RolloutRun:
    version: str
    status: str = ""
    reason: str = ""
    seconds: float = 0.0  # `rollout start` -> done / aborted
    waves: list[WaveRow] = field(default_factory=list)
    sales_during: int = 0
    received_outside: int = 0  # kiosks that got the command but were never targeted


@dataclass
class RolloutScenario:
    kiosks: int
    waves: str
    soak_s: float
    max_failures: str
    workers: int = 0
    connected: int = 0
    good: RolloutRun | None = None
    bad: RolloutRun | None = None
    sales: int = 0
    not_selling: int = 0  # sales a switching kiosk could not make
    lost: int = 0
    duplicates_after_dedupe: int = 0
    rejected_commands: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        g, b = self.good, self.bad
        return (
            g is not None
            and b is not None
            and g.status == "done"
            and sum(w.updated for w in g.waves) == self.kiosks
            and all(
                w.after_healthy_s is not None and w.after_healthy_s >= self.soak_s
                for w in g.waves[1:]
                if w.targeted
            )
            and b.status == "aborted"
            and len(b.waves) == 1
            and b.received_outside == 0
            and g.sales_during > 0
            and b.sales_during > 0
            and self.lost == 0
            and self.duplicates_after_dedupe == 0
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def format(self) -> str:
        out = [
            f"rollout scenario: {self.kiosks} kiosks in {self.workers} worker processes "
            f"({self.connected} connected), waves {self.waves}, soak {self.soak_s:g} s, "
            f"max failures {self.max_failures}"
        ]
        for run in (self.good, self.bad):
            if run is None:
                continue
            out.append(
                f"  {run.version}: {run.status.upper()} after {run.seconds:.1f} s"
                + (f" ({run.reason})" if run.reason else "")
                + f"; {run.sales_during} sales during it; kiosks outside its waves that got "
                f"it: {run.received_outside}"
            )
            out.append(
                "    wave | targeted | received | updated | failed | seconds | after healthy"
            )
            for w in run.waves:
                gap = "-" if w.after_healthy_s is None else f"{w.after_healthy_s:.1f} s"
                out.append(
                    f"    {w.wave:>4} | {w.targeted:>8} | {w.received:>8} | {w.updated:>7} | "
                    f"{w.failed:>6} | {w.seconds:>7.1f} | {gap}"
                )
        out.append(
            f"  sales {self.sales} (not made while switching: {self.not_selling}), LOST "
            f"{self.lost}, duplicates after dedupe {self.duplicates_after_dedupe}, commands "
            f"refused by kiosks {self.rejected_commands}"
        )
        out.append(f"  {'OK' if self.ok else 'NOT OK'}")
        return "\n".join(out + [f"  ! {n}" for n in self.notes])


# --- the province's commands, as typed ------------------------------------------------------


def province_cli(data_dir: Path, *argv: str) -> tuple[int, str]:
    """Run `kiosk province-sim ARGV --data-dir DATA_DIR` (release / rollout actions) with
    the real parser and command functions; (exit code, what it printed)."""
    from kiosk.sim.rollout_shell import add_rollout_parsers

    p = argparse.ArgumentParser(prog="kiosk province-sim")
    sub = p.add_subparsers(dest="command", required=True)
    add_rollout_parsers(sub, lambda sp: sp.add_argument("--data-dir", type=Path))
    args = p.parse_args([*argv, "--data-dir", str(data_dir)])
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        rc = int(args.func(args))
    return rc, buf.getvalue()


def make_sim_release(out: Path, key: Path, version: str, store_schema: int, notes: str) -> Path:
    """A signed release with a lock file and no wheels (simulated kiosks install nothing)."""
    from kiosk.update.release import WHEELS, write_manifest
    from kiosk.update.wheelhouse import LOCK_NAME

    (out / WHEELS).mkdir(parents=True)
    (out / WHEELS / LOCK_NAME).write_text(f"# fleet-sim release {version}: no wheels\n")
    write_manifest(out, key, version=version, store_schema=(0, store_schema), notes=notes)
    return out


def _check(rc_out: tuple[int, str], what: str) -> str:
    rc, out = rc_out
    if rc != 0:
        raise RuntimeError(f"{what} failed ({rc}): {out.strip()}")
    return out


# --- measuring one rollout --------------------------------------------------------------------


def _read(data_dir: Path) -> Rollout | None:
    from kiosk.sim.rollout_shell import read_rollout

    loaded = read_rollout(data_dir)
    return None if loaded is None else loaded[0]


def _wait_end(data_dir: Path, version: str, timeout: float) -> Rollout:
    deadline = time.monotonic() + timeout
    while True:
        r = _read(data_dir)
        if r is not None and r.version == version and r.status in ("done", "aborted"):
            return r
        if time.monotonic() >= deadline:
            raise TimeoutError(f"rollout of {version} did not end within {timeout:.0f} s: {r}")
        time.sleep(0.1)


def _healthy_at(data_dir: Path, version: str) -> dict[str, float]:
    """kiosk id -> when the province received its first report healthy on `version`."""
    from kiosk.sim.province import DB_FILENAME

    conn = sqlite3.connect(f"file:{data_dir / DB_FILENAME}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute(
            "SELECT kiosk_id, MIN(received_at) FROM events WHERE kind = 'reported' "
            "AND json_extract(body, '$.update.running') = ? "
            "AND json_extract(body, '$.update.last_result.result') = 'committed' "
            "GROUP BY kiosk_id",
            (version,),
        ).fetchall()
    finally:
        conn.close()
    return {str(k): float(t) for k, t in rows}


def _measure(
    run: RolloutRun,
    r: Rollout,
    reports: list[dict[str, Any]],
    healthy: dict[str, float],
    end: float,
) -> None:
    got: dict[str, float] = {}  # kiosk id -> when it received the command for this version
    running: dict[str, str] = {}
    for rep in reports:
        u = rep["update"] or {}
        running[rep["kiosk_id"]] = u.get("running", "")
        times = [t for v, t in u.get("commands", []) if v == run.version]
        if times:
            got[rep["kiosk_id"]] = min(times)
    run.status, run.reason = r.status, r.reason
    run.received_outside = sum(1 for k in got if k not in r.sent)
    n_waves = r.wave + 1 if r.sent else 0  # a wave may add nobody (1 % and 10 % of 5 kiosks)
    members = [sorted(k for k, w in r.sent.items() if w == i) for i in range(n_waves)]
    starts = [min((got[k] for k in m if k in got), default=None) for m in members]
    for i, m in enumerate(members):
        start, gap = starts[i], None
        # waves are cumulative: every kiosk commanded before must have soaked healthy
        earlier = [healthy.get(k) for j in range(i) for k in members[j] if k not in r.failed]
        if start is not None and earlier and all(t is not None for t in earlier):
            gap = start - max(t for t in earlier if t is not None)
        nxt = next((t for t in starts[i + 1 :] if t is not None), end)
        run.waves.append(
            WaveRow(
                wave=i + 1,
                targeted=len(m),
                received=sum(1 for k in m if k in got),
                updated=sum(1 for k in m if running.get(k) == run.version),
                failed=sum(1 for k in m if k in r.failed),
                seconds=0.0 if start is None else nxt - start,
                after_healthy_s=gap,
                kiosk_ids=m,
            )
        )


def _one_rollout(
    world: FleetWorld, version: str, fleet_csv: Path, args: list[str], timeout: float
) -> RolloutRun:
    run = RolloutRun(version)
    d = world.province_dir
    sold0, t0 = world.status()["sold"], time.monotonic()
    _check(
        province_cli(
            d,
            *("rollout", "start", version, "--url", f"https://province.sim/releases/{version}/"),
            *("--fleet", str(fleet_csv), *args),
        ),
        f"rollout start {version}",
    )
    r = _wait_end(d, version, timeout)
    end_wall = time.time()
    run.seconds = time.monotonic() - t0
    time.sleep(3 * (world.rollout_tick_s or 1.0))  # a few more ticks: nothing else is sent
    deadline = time.monotonic() + 120  # every commanded kiosk committed or rolled back
    reports = world.reports()
    while any((k["update"] or {}).get("busy") for k in reports) and time.monotonic() < deadline:
        time.sleep(0.2)
        reports = world.reports()
    run.sales_during = world.status()["sold"] - sold0
    _measure(run, r, reports, _healthy_at(d, version), end_wall)
    return run


# --- the scenario -------------------------------------------------------------------------


def run_rollout_scenario(
    kiosks: int = 100,
    *,
    waves: str = "1%,10%,50%,100%",
    soak: str = "5s",
    max_failures: str = "2%",
    sale_rate_per_min: float = 6.0,
    telemetry_s: float = 30.0,
    install_s: float = 2.0,
    switch_s: float = 1.0,
    health_s: float = 2.0,
    tick_s: float = 0.5,
    per_worker: int = 125,
    connect_rate: float = 50.0,
    workdir: Path | None = None,
    seed: int = 1,
    say: Any = None,
    record_mqtt: list[Any] | None = None,
) -> RolloutScenario:
    from kiosk import __version__
    from kiosk.update.release import generate_release_key
    from kiosk.update.supervisor import store_schema

    res = RolloutScenario(kiosks, waves, parse_duration(soak), max_failures)
    good, bad = f"{__version__}+sim.good", f"{__version__}+sim.bad"
    own = workdir is None
    root = Path(tempfile.mkdtemp(prefix="kiosk-rollout-")) if workdir is None else Path(workdir)
    updates = SimUpdates(
        bad_versions=frozenset({bad}), install_s=install_s, switch_s=switch_s, health_s=health_s
    )
    world = FleetWorld(
        kiosks,
        root,
        per_worker=per_worker,
        connect_rate=connect_rate,
        seed=seed,
        say=say,
        record_mqtt=record_mqtt,
        updates=updates,
        rollout_tick_s=tick_s,
    )
    try:
        world.start()
        res.workers = world.w
        world.connect(max(60.0, 3 * kiosks / connect_rate))
        res.connected = world.status()["connected"]
        rel = root / "releases"
        rel.mkdir()
        key, pub = rel / "release.pem", rel / "release.pub"
        generate_release_key(key, pub)
        schema = store_schema(root / "kiosks" / kiosk_id_of(0))
        for v, notes in ((good, "healthy"), (bad, "crashes at start (simulated)")):
            make_sim_release(rel / v, key, v, schema, notes)
            _check(
                province_cli(
                    world.province_dir, "release", "publish", str(rel / v), "--public-key", str(pub)
                ),
                f"release publish {v}",
            )
        fleet_csv = root / "fleet.csv"
        with fleet_csv.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["kiosk_id", "site_type", "county"])
            for i in range(kiosks):
                w.writerow([kiosk_id_of(i), ("hospital", "school", "station")[i % 3], "340100"])
        args = ["--waves", waves, "--soak", soak, "--max-failures", max_failures]
        n_waves = len(waves.split(","))
        timeout = 120.0 + n_waves * (res.soak_s + install_s + switch_s + health_s + 30.0)
        world.load(2 * timeout, sale_rate_per_min, telemetry_s)  # ended below
        time.sleep(min(2.0, 1.0 + tick_s))  # selling before the first command
        if say is not None:
            say(f"rollout of {good} (good) starts")
        res.good = _one_rollout(world, good, fleet_csv, args, timeout)
        if say is not None:
            say(f"rollout of {bad} (crashes at start) starts")
        res.bad = _one_rollout(world, bad, fleet_csv, args, timeout)
        world.load_stop()
        world.wait(lambda s: s["load_done"] and s["pending"] == 0, 300)
        reports = world.reports()
        held = world.verify(reports)
        res.sales = sum(r["sold"] for r in reports)
        res.not_selling = sum(r["not_selling"] for r in reports)
        res.rejected_commands = sum(
            (r["update"] or {}).get("rejected_commands", 0) for r in reports
        )
        res.lost, res.duplicates_after_dedupe = held["lost"], held["duplicates_after_dedupe"]
        unacked = sum(r["sold"] - r["acked"] for r in reports)
        if unacked:
            res.notes.append(f"{unacked} sales still unacked at the end")
        if res.connected < kiosks:
            res.notes.append(f"only {res.connected} of {kiosks} kiosks connected")
    finally:
        world.close()
        if own:
            shutil.rmtree(root, ignore_errors=True)
    return res


def rollout_json(res: RolloutScenario) -> str:
    return "ROLLOUT_JSON " + json.dumps(res.as_dict())
