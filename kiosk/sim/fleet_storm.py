"""Fleet scenarios beyond the steady load (kiosk.sim.fleet): outages and what follows them.

- `run_outage("broker", ...)`, the reconnect storm: N kiosks connected and selling, the broker
  stopped (SIGTERM: it saves its persistence) for `outage_s`, started again on the same port.
  Measured: time from the restart until every kiosk is connected again (the kiosks' own
  full-jitter backoff paces them), until every backlog is drained (no sale made before the
  restart is still unacked), records lost (must be 0), duplicate rows after the province's
  dedupe (0), duplicates the dedupe dropped, the broker's peak CPU (1 s samples).
- `run_outage("province", ...)`: the same with the province simulator disconnected while the
  broker stays up (its persistent session keeps queueing what the kiosks send).
- `run_day_outage(...)`: the province down for a day, simulated at accelerated rates: a day's
  sales and telemetry per kiosk compressed into `day_s`; then each kiosk's backlog, its outbox
  bytes and store files on disk against the outbox budget, CRITICAL records dropped (must be 0),
  and the drain time once the province is back (the client's paced drain).
Sales keep coming during every outage (the load spans it).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kiosk.sim.fleet_world import BrokerSampler, FleetWorld

__all__ = ["DayOutageResult", "OutageResult", "run_day_outage", "run_outage"]


@dataclass
class OutageResult:
    what: str  # "broker" or "province"
    kiosks: int
    outage_s: float
    connected_before: int = 0
    backlog_at_restart: int = 0  # unacked sale records over all kiosks
    reconnect_all_s: float | None = None  # restart -> every kiosk connected (None: never)
    drain_s: float | None = None  # restart -> no sale from before the restart unacked
    sales: int = 0
    lost: int = 0
    duplicates_after_dedupe: int = 0
    duplicates_received: int = 0
    reconnects: int = 0
    resent: int = 0  # records sent again by resend rounds on the same connection
    broker_peak_cpu_pct: float = 0.0
    broker_rss_before_kib: int = 0  # when the outage began (the queue shows as growth)
    broker_peak_rss_kib: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.duplicates_after_dedupe == 0
            and self.reconnect_all_s is not None
            and self.drain_s is not None
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def format(self) -> str:
        def s(v: float | None) -> str:
            return "NEVER" if v is None else f"{v:.1f} s"

        return (
            f"{self.what} outage of {self.outage_s:.0f} s, {self.kiosks} kiosks "
            f"({self.connected_before} connected before)\n"
            f"  backlog at restart {self.backlog_at_restart} sales; all connected after "
            f"{s(self.reconnect_all_s)}, backlog drained after {s(self.drain_s)}\n"
            f"  sales {self.sales}, LOST {self.lost}, duplicates after dedupe "
            f"{self.duplicates_after_dedupe} (dedupe dropped {self.duplicates_received}), "
            f"reconnects {self.reconnects}, resent in rounds {self.resent}\n"
            f"  mosquitto peak CPU {self.broker_peak_cpu_pct:.0f} % of a core, RSS "
            f"{self.broker_rss_before_kib} KiB at the outage, peak {self.broker_peak_rss_kib} KiB"
            + "".join(f"\n  ! {n}" for n in self.notes)
        )


def _world(kiosks: int, workdir: Path | None, **kw: Any) -> tuple[FleetWorld, Path, bool]:
    own = workdir is None
    root = Path(tempfile.mkdtemp(prefix="kiosk-fleet-")) if workdir is None else Path(workdir)
    return FleetWorld(kiosks, root, **kw), root, own


def run_outage(
    what: str,
    kiosks: int,
    outage_s: float,
    *,
    sale_rate_per_min: float = 6.0,
    telemetry_s: float = 30.0,
    settle_s: float = 10.0,
    after_s: float = 20.0,
    reconnect_timeout_s: float = 300.0,
    drain_timeout_s: float = 600.0,
    workdir: Path | None = None,
    connect_rate: float = 50.0,
    seed: int = 1,
    say: Any = None,
) -> OutageResult:
    """Stop the broker (`what="broker"`) or the province (`"province"`) for `outage_s` while
    N kiosks sell (the load runs `settle_s` before, through, and `after_s` after the outage)."""
    if what not in ("broker", "province"):
        raise ValueError(f"what must be 'broker' or 'province', got {what!r}")
    res = OutageResult(what, kiosks, outage_s)
    world, root, own = _world(kiosks, workdir, connect_rate=connect_rate, seed=seed, say=say)
    try:
        world.start()
        world.connect(max(60.0, 3 * kiosks / connect_rate))
        res.connected_before = world.status()["connected"]
        with BrokerSampler(world.broker_pid) as sampler:
            world.load(settle_s + outage_s + after_s, sale_rate_per_min, telemetry_s)
            time.sleep(settle_s)
            res.broker_rss_before_kib = world.broker_rss_kib()
            (world.stop_broker if what == "broker" else world.stop_province)()
            time.sleep(outage_s)
            res.backlog_at_restart = world.status()["unacked_sales"]
            (world.start_broker if what == "broker" else world.start_province)()
            t_up, t_up_wall = time.monotonic(), time.time()
            ok, _ = world.wait(lambda s: s["connected"] == kiosks, reconnect_timeout_s)
            res.reconnect_all_s = time.monotonic() - t_up if ok else None
            ok, _ = world.wait(
                lambda s: s["oldest_unacked"] is None or s["oldest_unacked"] > t_up_wall,
                drain_timeout_s,
            )
            res.drain_s = time.monotonic() - t_up if ok else None
            world.wait(lambda s: s["load_done"] and s["pending"] == 0, drain_timeout_s)
        res.broker_peak_cpu_pct = sampler.peak_cpu_pct
        res.broker_peak_rss_kib = sampler.peak_rss_kib
        _verify(res, world)
    finally:
        world.close()
        if own:
            shutil.rmtree(root, ignore_errors=True)
    return res


def _verify(res: OutageResult | DayOutageResult, world: FleetWorld) -> list[dict[str, Any]]:
    reports = world.reports()
    v = world.verify(reports)
    res.sales = sum(r["sold"] for r in reports)
    res.lost = v["lost"]
    res.duplicates_after_dedupe = v["duplicates_after_dedupe"]
    res.duplicates_received = v["duplicates_received"]
    unacked = sum(r["sold"] - r["acked"] for r in reports)
    if unacked:
        res.notes.append(f"{unacked} sales still unacked at the end")
    if isinstance(res, OutageResult):
        res.reconnects = sum(r["reconnects"] for r in reports)
        res.resent = sum(int(r.get("resent", 0)) for r in reports)
    return reports


@dataclass
class DayOutageResult:
    kiosks: int
    day_s: float  # the accelerated "day"
    sales_per_day: int
    telemetry_per_day: int
    sales: int = 0
    backlog_max: int = 0  # records queued in one kiosk's outbox when the province came back
    backlog_mean: float = 0.0
    outbox_bytes_max: int = 0
    disk_bytes_max: int = 0  # the kiosk's store files (database + WAL)
    budget_bytes: int = 0
    critical_dropped: int = 0
    low_dropped: int = 0
    drain_s: float | None = None
    lost: int = 0
    duplicates_after_dedupe: int = 0
    duplicates_received: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.critical_dropped == 0
            and self.duplicates_after_dedupe == 0
            and self.drain_s is not None
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def format(self) -> str:
        pct = 100 * self.outbox_bytes_max / self.budget_bytes if self.budget_bytes else 0.0
        drain = "NEVER" if self.drain_s is None else f"{self.drain_s:.1f} s"
        return (
            f"province down for a day ({self.sales_per_day} sales, {self.telemetry_per_day} "
            f"telemetry per kiosk, compressed into {self.day_s:.0f} s), {self.kiosks} kiosks\n"
            f"  backlog per kiosk: max {self.backlog_max}, mean {self.backlog_mean:.0f} records;"
            f" outbox {self.outbox_bytes_max} B max = {pct:.2f} % of the "
            f"{self.budget_bytes} B budget; store files {self.disk_bytes_max} B max\n"
            f"  dropped: CRITICAL {self.critical_dropped}, LOW {self.low_dropped}; drain after "
            f"the province is back {drain}; LOST {self.lost}, duplicates after dedupe "
            f"{self.duplicates_after_dedupe} (dedupe dropped {self.duplicates_received})"
            + "".join(f"\n  ! {n}" for n in self.notes)
        )


def run_day_outage(
    kiosks: int,
    day_s: float,
    *,
    sales_per_day: int = 150,
    telemetry_per_day: int = 288,
    drain_timeout_s: float = 900.0,
    workdir: Path | None = None,
    connect_rate: float = 50.0,
    seed: int = 1,
    say: Any = None,
) -> DayOutageResult:
    """The province down while a day's records (accelerated into `day_s`) pile up."""
    res = DayOutageResult(kiosks, day_s, sales_per_day, telemetry_per_day)
    world, root, own = _world(kiosks, workdir, connect_rate=connect_rate, seed=seed, say=say)
    try:
        world.start()
        world.connect(max(60.0, 3 * kiosks / connect_rate))
        world.stop_province()
        world.load(day_s, 60.0 * sales_per_day / day_s, day_s / telemetry_per_day)
        time.sleep(day_s)
        world.wait(lambda s: s["load_done"], 120)
        before = world.reports()
        backlog = [sum(r["pending"].values()) for r in before]
        res.backlog_max = max(backlog)
        res.backlog_mean = sum(backlog) / len(backlog)
        res.outbox_bytes_max = max(r["outbox_bytes"] for r in before)
        res.disk_bytes_max = max(r["disk_bytes"] for r in before)
        res.budget_bytes = before[0]["budget_bytes"]
        res.critical_dropped = sum(r["dropped"]["CRITICAL"] for r in before)
        res.low_dropped = sum(r["dropped"]["LOW"] for r in before)
        world.start_province()
        t_up = time.monotonic()
        ok, _ = world.wait(lambda s: s["pending"] == 0, drain_timeout_s)
        res.drain_s = time.monotonic() - t_up if ok else None
        _verify(res, world)
    finally:
        world.close()
        if own:
            shutil.rmtree(root, ignore_errors=True)
    return res
