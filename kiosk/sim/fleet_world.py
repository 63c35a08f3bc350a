"""The parent side of `kiosk fleet-sim`: one Mosquitto (the production config, owned here so a
scenario can stop and start it), the province process and the kiosk worker processes.

`FleetWorld(n, root).start()` issues a client certificate per kiosk (CN = kiosk id), starts the
broker, the province (its own process) and ceil(n / per_worker) kiosk workers (kiosk k in
worker k mod W), builds every kiosk, then `connect()` starts them paced: kiosk k at k /
connect_rate seconds plus jitter (a fleet's boot times are spread); a failed attempt retries with
the client's own full-jitter backoff. Everything else is measured from here: broker CPU and RSS
(/proc/<pid>/stat, status), worker RSS and CPU, connection and drain times.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kiosk.sim.fleet_kiosk import ClientTuning, KioskSpec, kiosk_id_of
from kiosk.sim.fleet_update import SimUpdates
from kiosk.sim.fleet_workers import (
    ProcHandle,
    ProvinceSpec,
    WorkerSpec,
    province_main,
    worker_main,
)

__all__ = ["BrokerSampler", "FleetWorld", "proc_cpu_s", "proc_rss_kib"]


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process, seconds (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class BrokerSampler:
    """Samples the broker's CPU every `every_s` (across restarts: the pid is asked each time)
    and keeps the peak CPU % of one core over one sample interval and the peak RSS."""

    def __init__(self, pid_of: Callable[[], int | None], every_s: float = 1.0) -> None:
        self._pid_of = pid_of
        self.every_s = every_s
        self.peak_cpu_pct = 0.0
        self.peak_rss_kib = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True, name="broker-sampler")

    def __enter__(self) -> BrokerSampler:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(5)

    def _run(self) -> None:
        last: tuple[int, float, float] | None = None
        while not self._stop.wait(self.every_s):
            pid = self._pid_of()
            if pid is None:
                last = None
                continue
            try:
                cpu, rss, now = proc_cpu_s(pid), proc_rss_kib(pid), time.monotonic()
            except OSError:
                last = None
                continue
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            if last is not None and last[0] == pid and now > last[2]:
                pct = 100 * (cpu - last[1]) / (now - last[2])
                self.peak_cpu_pct = max(self.peak_cpu_pct, pct)
            last = (pid, cpu, now)


class FleetWorld:
    def __init__(
        self,
        kiosks: int,
        root: Path,
        *,
        per_worker: int = 125,
        workers: int | None = None,
        connect_rate: float = 50.0,
        tune: ClientTuning | None = None,
        seed: int = 1,
        say: Callable[[str], None] | None = None,
        record_mqtt: list[Any] | None = None,
        updates: SimUpdates | None = None,
        rollout_tick_s: float | None = None,
    ) -> None:
        """`record_mqtt`: a list that receives every MQTT message that crossed the broker
        (kiosk.sim.mqtt_tap.TappedMessage, recorded by a read-only audit subscriber on #),
        filled when the world closes. `updates`: the kiosks take `install_release` commands
        (kiosk.sim.fleet_update); `rollout_tick_s`: the province ticks `<province
        dir>/rollout.json` (kiosk/sim/rollout_shell.py) this often."""
        self.n = kiosks
        self.updates = updates
        self.rollout_tick_s = rollout_tick_s
        self.record_mqtt = record_mqtt
        self._tap: Any = None
        self.root = Path(root)
        self.w = workers or max(1, min(16, math.ceil(kiosks / per_worker)))
        self.connect_rate = connect_rate
        self.tune = tune or ClientTuning()
        self.rng = random.Random(seed)
        self.seed = seed
        self.say = say or (lambda text: None)
        self.broker: Any = None
        self.province: ProcHandle | None = None
        self.workers: list[ProcHandle] = []
        self.province_key = b""
        self.idle_worker_rss_kib = 0  # a worker process with its imports, before any kiosk
        self.built_rss_kib = 0  # all workers after building the kiosks

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FleetWorld:
        from kiosk.sim.broker import Mosquitto, Pki
        from kiosk.sync.signing import generate_keypair

        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        pki = Pki(self.root / "pki")
        specs = []
        for i in range(self.n):
            cert = pki.client(kiosk_id_of(i))
            specs.append(
                KioskSpec(i, self.root / "kiosks" / kiosk_id_of(i), cert.cert_file, cert.key_file)
            )
        from kiosk.sim.mqtt_tap import AUDIT_USER, BrokerTap

        audit = (AUDIT_USER,) if self.record_mqtt is not None else ()
        self.broker = Mosquitto(self.root / "broker", pki, max_inflight=20, audit_identities=audit)
        self.broker.start()
        if self.record_mqtt is not None:
            acert = pki.backend_client(AUDIT_USER)
            self._tap = BrokerTap(
                self.broker.backend_port, pki.ca_file, acert.cert_file, acert.key_file
            ).start()
        pcert = pki.backend_client()
        self.province = ProcHandle(
            "province",
            province_main,
            ProvinceSpec(
                self.broker.province_url,
                pki.ca_file,
                pcert.cert_file,
                pcert.key_file,
                self.root / "province",
                generate_keypair()[0],
                self.root / "logs" / "province.log",
                self.rollout_tick_s,
            ),
        )
        self.province_key = self.province.call("start", 60)["public_key"]
        updates = self.updates
        if updates is not None:
            updates = dataclasses.replace(updates, province_key=self.province_key)
        for w in range(self.w):
            spec = WorkerSpec(
                specs[w :: self.w],
                pki.ca_file,
                self.broker.url,
                self.province_key,
                self.tune,
                self.root / "logs" / f"worker-{w}.log",
                updates,
            )
            self.workers.append(ProcHandle(f"kiosk-worker-{w}", worker_main, spec))
        hello = self._all("hello", 120)
        self.idle_worker_rss_kib = round(sum(h["rss_kib"] for h in hello) / len(hello))
        built = self._all("build", 600)
        self.built_rss_kib = sum(b["rss_kib"] for b in built)
        self.say(f"{self.n} kiosks built in {self.w} worker processes")
        return self

    def close(self) -> None:
        for h in self.workers:  # every worker closes its kiosks at the same time
            with contextlib.suppress(OSError):
                h.send("close")
        for h in self.workers:
            with contextlib.suppress(OSError, EOFError, TimeoutError, RuntimeError):
                h.reply(60)
            h.close()
        self.workers = []
        if self.province is not None:
            self.province.close()
            self.province = None
        if self._tap is not None and self.record_mqtt is not None:
            self._tap.drain()
            self._tap.stop()
            self.record_mqtt.extend(self._tap.messages())
            self._tap = None
        if self.broker is not None:
            self.broker.stop()

    def __enter__(self) -> FleetWorld:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _all(self, cmd: str, timeout: float = 60.0, **args: Any) -> list[dict[str, Any]]:
        for h in self.workers:
            h.send(cmd, **args)
        return [h.reply(timeout) for h in self.workers]

    # --- driving ------------------------------------------------------------------------------

    def connect(self, timeout: float) -> float:
        """Start every kiosk, paced; wait until all are connected (or timeout). Seconds taken."""
        offsets = [i / self.connect_rate + self.rng.uniform(0, 0.5) for i in range(self.n)]
        t0 = time.monotonic()
        for w, h in enumerate(self.workers):
            h.send("start", offsets=offsets[w :: self.w])
        for h in self.workers:
            h.reply(60)
        self.wait(lambda s: s["connected"] == self.n, timeout)
        return time.monotonic() - t0

    def load(self, duration: float, sale_rate: float, telemetry_s: float) -> None:
        """Poisson sales (per kiosk per minute) and telemetry, for `duration`, in the workers."""
        for w, h in enumerate(self.workers):
            h.send(
                "load",
                duration=duration,
                sale_rate=sale_rate,
                telemetry_s=telemetry_s,
                seed=self.seed * 1000 + w,
            )
        for h in self.workers:
            h.reply(60)

    def load_stop(self) -> None:
        """End the running load in every worker now."""
        self._all("load_stop", 60)

    @property
    def province_dir(self) -> Path:
        return self.root / "province"

    def status(self) -> dict[str, Any]:
        """Counts summed over the workers; `oldest_unacked`: the oldest unacked sale's time."""
        parts = self._all("status", 600)  # generous: a shared 2-core box at load 50+
        out: dict[str, Any] = {}
        for k in ("kiosks", "started", "connected", "pending", "unacked_sales", "sold", "acked"):
            out[k] = sum(p[k] for p in parts)
        out["rss_kib"] = sum(p["rss_kib"] for p in parts)
        out["cpu_s"] = sum(p["cpu_s"] for p in parts)
        out["load_done"] = all(p["load_done"] for p in parts)
        old = [p["oldest_unacked"] for p in parts if p["oldest_unacked"] is not None]
        out["oldest_unacked"] = min(old) if old else None
        return out

    def wait(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float, every: float = 0.5
    ) -> tuple[bool, dict[str, Any]]:
        """Poll `status()` until `pred` holds or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.status()
            if pred(s):
                return True, s
            if time.monotonic() >= deadline:
                return False, s
            time.sleep(every)

    def reports(self) -> list[dict[str, Any]]:
        return [k for r in self._all("report", 300) for k in r["kiosks"]]

    def verify(self, reports: list[dict[str, Any]]) -> dict[str, Any]:
        """Loss and duplicates at the province for what the kiosks in `reports` sold."""
        assert self.province is not None
        sold = {r["kiosk_id"]: r["sold"] for r in reports}
        return self.province.call("verify", 300, sold=sold)

    # --- the broker and the province ----------------------------------------------------------

    def broker_pid(self) -> int | None:
        b = self.broker
        return None if b is None or b.proc is None else int(b.proc.pid)

    def broker_cpu_s(self) -> float:
        pid = self.broker_pid()
        return 0.0 if pid is None else proc_cpu_s(pid)

    def broker_rss_kib(self) -> int:
        pid = self.broker_pid()
        return 0 if pid is None else proc_rss_kib(pid)

    def stop_broker(self) -> None:
        self.broker.stop()

    def start_broker(self) -> None:
        self.broker.start(30)

    def stop_province(self) -> None:
        assert self.province is not None
        self.province.call("stop", 60)

    def start_province(self) -> None:
        assert self.province is not None
        self.province.call("start", 120)

    def province_cpu_s(self) -> float:
        assert self.province is not None
        return float(self.province.call("status", 30)["cpu_s"])
