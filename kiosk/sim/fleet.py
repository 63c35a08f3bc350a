"""`kiosk fleet-sim`: N headless kiosks against one real Mosquitto and the province simulator.

What each simulated kiosk runs (honestly): its own SQLite store, the real Outbox and the real
SyncClient with its OWN client certificate (one MQTT/TLS connection each, CN = kiosk id, the
production broker config and ACL, kiosk.sim.broker), production pacing (full-jitter reconnect
backoff 1..60 s, backlog token bucket, window 20), signed acks checked with the province's key,
and a light sale generator: hash-chained CRITICAL sale records at Poisson times plus coalesced
LOW telemetry every `--telemetry-s` (kiosk.sim.fleet_kiosk). It does NOT run the controller,
the serial link or a board emulator (the vend path is measured by the chaos suite and the vend
benchmarks); per-kiosk MQTT load is the same, since a sale is one ledger record on the wire.

The kiosks are spread over several worker processes and the province runs in its own process
(kiosk.sim.fleet_workers, kiosk.sim.fleet_world), so one interpreter lock no longer limits N.

Measures: messages/s through the broker (uplink records + downlink acks), sale->ack latency on
the kiosk (p50/p99), loss (sales a kiosk made that the province does not hold at the end),
broker CPU and RSS (/proc/<mosquitto pid>), the workers' CPU and RSS (memory per kiosk against
an idle worker), reconnects. Scenarios (reconnect storm, province outages): kiosk.sim.fleet_storm;
`--scenario rollout` (a good and a bad release rolled out in waves by the province):
kiosk.sim.fleet_rollout.

`register(subparsers, common_parent)` adds the `fleet-sim` command; `python -m kiosk.sim.fleet`
runs it standalone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kiosk.sim.fleet_world import FleetWorld

__all__ = ["FleetResult", "cmd_fleet_sim", "main", "percentile", "register", "run_fleet"]


@dataclass
class FleetResult:
    kiosks: int
    duration_s: float
    sale_rate_per_min: float
    telemetry_s: float
    workers: int = 0
    connected: int = 0
    connect_s: float = 0.0
    sales: int = 0
    telemetry: int = 0
    acked_sales: int = 0
    province_sales: int = 0
    lost: int = 0
    duplicates_after_dedupe: int = 0
    reconnects: int = 0
    messages: int = 0
    messages_per_s: float = 0.0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_max_ms: float | None = None
    broker_cpu_pct: float = 0.0  # of one core, during the load
    broker_rss_kib: int = 0  # after the load
    broker_idle_rss_kib: int = 0  # same broker before any kiosk connected
    sim_cpu_pct: float = 0.0  # of one core: all kiosk workers together
    province_cpu_pct: float = 0.0
    worker_rss_kib: int = 0  # all workers, after the load
    idle_worker_rss_kib: int = 0  # one worker with its imports, no kiosk
    kib_per_kiosk: float = 0.0  # (worker RSS - workers x idle worker) / kiosks
    drain_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def zero_loss(self) -> bool:
        return self.lost == 0 and self.connected == self.kiosks and self.acked_sales == self.sales

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["zero_loss"] = self.zero_loss
        return d

    def format(self) -> str:
        p50 = "-" if self.latency_p50_ms is None else f"{self.latency_p50_ms:.0f}"
        p99 = "-" if self.latency_p99_ms is None else f"{self.latency_p99_ms:.0f}"
        return (
            f"fleet-sim: {self.kiosks} kiosks in {self.workers} worker processes "
            f"({self.connected} connected in {self.connect_s:.1f} s), {self.duration_s:.0f} s, "
            f"{self.sale_rate_per_min} sales/min/kiosk, telemetry every {self.telemetry_s} s\n"
            f"  sales {self.sales} (acked {self.acked_sales}, province holds "
            f"{self.province_sales}), telemetry {self.telemetry}, LOST {self.lost}, duplicates "
            f"after dedupe {self.duplicates_after_dedupe}, reconnects {self.reconnects}\n"
            f"  messages/s {self.messages_per_s:.1f} (uplink + acks), latency sale->ack p50 "
            f"{p50} ms, p99 {p99} ms\n"
            f"  CPU (% of one core): mosquitto {self.broker_cpu_pct:.1f}, kiosk workers "
            f"{self.sim_cpu_pct:.1f}, province {self.province_cpu_pct:.1f}; final drain "
            f"{self.drain_s:.1f} s\n"
            f"  RSS: mosquitto {self.broker_rss_kib} KiB (idle {self.broker_idle_rss_kib}), "
            f"workers {self.worker_rss_kib} KiB = {self.kib_per_kiosk:.0f} KiB per kiosk over "
            f"{self.idle_worker_rss_kib} KiB per idle worker"
            + "".join(f"\n  ! {n}" for n in self.notes)
        )


def percentile(sorted_vals: list[float], q: float) -> float:
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
    drain_timeout_s: float = 120.0,
    connect_rate: float = 50.0,
    per_worker: int = 125,
    say: Any = None,
    record_mqtt: list[Any] | None = None,
) -> FleetResult:
    """`record_mqtt`: a list that receives every MQTT message that crossed the broker
    (kiosk.sim.mqtt_tap.TappedMessage), for checking against docs/mqtt-api.yaml."""
    own = workdir is None
    root = Path(tempfile.mkdtemp(prefix="kiosk-fleet-")) if workdir is None else Path(workdir)
    res = FleetResult(kiosks, duration_s, sale_rate_per_min, telemetry_s)
    world = FleetWorld(
        kiosks,
        root,
        per_worker=per_worker,
        connect_rate=connect_rate,
        seed=seed,
        say=say,
        record_mqtt=record_mqtt,
    )
    try:
        world.start()
        res.workers = world.w
        res.idle_worker_rss_kib = world.idle_worker_rss_kib
        res.broker_idle_rss_kib = world.broker_rss_kib()
        res.connect_s = world.connect(max(60.0, 3 * kiosks / connect_rate))
        st = world.status()
        res.connected = st["connected"]
        if say is not None:
            say(f"{res.connected}/{kiosks} kiosks connected in {res.connect_s:.1f} s")
        b0, s0, p0, w0 = world.broker_cpu_s(), st["cpu_s"], world.province_cpu_s(), time.monotonic()
        world.load(duration_s, sale_rate_per_min, telemetry_s)
        time.sleep(duration_s)
        world.wait(lambda s: s["load_done"], 60)
        st = world.status()
        b1, s1, p1, w1 = world.broker_cpu_s(), st["cpu_s"], world.province_cpu_s(), time.monotonic()
        res.broker_cpu_pct = 100 * (b1 - b0) / (w1 - w0)
        res.sim_cpu_pct = 100 * (s1 - s0) / (w1 - w0)
        res.province_cpu_pct = 100 * (p1 - p0) / (w1 - w0)
        res.broker_rss_kib = world.broker_rss_kib()
        res.worker_rss_kib = st["rss_kib"]
        res.kib_per_kiosk = (st["rss_kib"] - world.w * world.idle_worker_rss_kib) / kiosks
        world.wait(lambda s: s["pending"] == 0, drain_timeout_s)
        res.drain_s = time.monotonic() - w1
        summarize(res, world)
    finally:
        world.close()
        if own:
            shutil.rmtree(root, ignore_errors=True)
    return res


def summarize(res: FleetResult, world: FleetWorld) -> list[dict[str, Any]]:
    """Fill sales, acks, latencies, loss and duplicates from the kiosks' reports and the
    province's database; returns the reports."""
    reports = world.reports()
    v = world.verify(reports)
    res.sales = sum(r["sold"] for r in reports)
    res.acked_sales = sum(r["acked"] for r in reports)
    res.telemetry = sum(r["telemetry"] for r in reports)
    res.reconnects = sum(r["reconnects"] for r in reports)
    res.lost = v["lost"]
    res.province_sales = res.sales - v["lost"]
    res.duplicates_after_dedupe = v["duplicates_after_dedupe"]
    res.messages = 2 * (res.sales + res.telemetry)
    res.messages_per_s = res.messages / res.duration_s if res.duration_s else 0.0
    lat = sorted(x for r in reports for x in r["latencies"])
    if lat:
        res.latency_p50_ms = 1000 * percentile(lat, 0.5)
        res.latency_p99_ms = 1000 * percentile(lat, 0.99)
        res.latency_max_ms = 1000 * lat[-1]
    if res.acked_sales < res.sales:
        res.notes.append(f"{res.sales - res.acked_sales} sales not acked by the end of the drain")
    if res.connected < res.kiosks:
        res.notes.append(f"only {res.connected} of {res.kiosks} kiosks connected")
    return reports


# --- CLI --------------------------------------------------------------------------------------


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scenario",
        choices=("load", "rollout"),
        default="load",
        help="load: steady sales (default); rollout: a good and a bad release in waves",
    )
    p.add_argument(
        "--kiosks", type=int, default=None, help="simulated kiosks (10; 100 for rollout)"
    )
    p.add_argument("--duration", type=float, default=60.0, help="load duration, seconds")
    p.add_argument("--sale-rate", type=float, default=2.0, help="sales per kiosk per minute")
    p.add_argument("--telemetry-s", type=float, default=60.0, help="telemetry period, seconds")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--connect-rate", type=float, default=50.0, help="kiosks started per second (paced)"
    )
    p.add_argument("--per-worker", type=int, default=125, help="kiosks per worker process")
    p.add_argument("--json", action="store_true", help="also print FLEET_JSON {...}")
    r = p.add_argument_group("rollout scenario (seconds, scaled down for the simulation)")
    r.add_argument("--waves", default="1%,10%,50%,100%", help="cumulative shares of the fleet")
    r.add_argument("--soak", default="5s", help="healthy this long before the next wave")
    r.add_argument("--max-failures", default="2%", help="abort above this share failed")
    r.add_argument("--install-s", type=float, default=2.0, help="simulated install time")


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
    if args.scenario == "rollout":
        return _cmd_rollout(args)
    res = run_fleet(
        args.kiosks or 10,
        args.duration,
        sale_rate_per_min=args.sale_rate,
        telemetry_s=args.telemetry_s,
        seed=args.seed,
        connect_rate=args.connect_rate,
        per_worker=args.per_worker,
        say=print,
    )
    print(res.format())
    if args.json:
        print("FLEET_JSON " + json.dumps(res.as_dict()))
    return 0 if res.zero_loss else 1


def _cmd_rollout(args: argparse.Namespace) -> int:
    from kiosk.sim.fleet_rollout import rollout_json, run_rollout_scenario

    res = run_rollout_scenario(
        args.kiosks or 100,
        waves=args.waves,
        soak=args.soak,
        max_failures=args.max_failures,
        sale_rate_per_min=args.sale_rate,
        telemetry_s=args.telemetry_s,
        install_s=args.install_s,
        per_worker=args.per_worker,
        connect_rate=args.connect_rate,
        seed=args.seed,
        say=print,
    )
    print(res.format())
    if args.json:
        print(rollout_json(res))
    return 0 if res.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kiosk.sim.fleet")
    _add_args(p)
    return cmd_fleet_sim(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
