"""Staged rollouts of a release across the fleet, as a pure state machine (the province's side).

Owns: which cabinets a rollout targets (kiosk ids, site types, counties), the waves (fractions
of the targeted cabinets, cumulative: 1%, 10%, 50%, 100%), when a wave is done (every cabinet
of it reported healthy on the new version for the soak time, or failed), when the rollout
aborts (failures above `max_failures` of the cabinets commanded so far) and pause / resume /
abort. `step(rollout, fleet, reports, now)` returns the new rollout and the cabinets to send
the `install_release` command to now; it reads no clock, sends nothing and stores nothing
(a province shell does, each tick). A cabinet is healthy on the version when its `reported`
says `update.running == version` and `last_result` committed it; failed when `last_result`
says it rolled back or refused that version (the cabinet itself rolls back: kiosk/update).

The shell is kiosk/sim/rollout_shell.py (`kiosk province-sim release publish`, `rollout
start|pause|resume|abort|status`, the driver `province-sim run` ticks); tests/unit/test_rollout.py
runs the machine over 100 simulated cabinets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FleetCabinet",
    "Rollout",
    "RolloutTarget",
    "cabinet_report",
    "parse_duration",
    "parse_fraction",
    "parse_waves",
    "step",
    "wave_members",
]

STATUSES = ("running", "paused", "aborted", "done")


@dataclass(frozen=True)
class FleetCabinet:
    kiosk_id: str
    site_type: str = ""
    county: str = ""  # the 6-digit area code


@dataclass(frozen=True)
class RolloutTarget:
    """Empty filters match every cabinet; given ones must all match."""

    kiosk_ids: frozenset[str] = frozenset()
    site_types: frozenset[str] = frozenset()
    counties: frozenset[str] = frozenset()

    def matches(self, c: FleetCabinet) -> bool:
        return (
            (not self.kiosk_ids or c.kiosk_id in self.kiosk_ids)
            and (not self.site_types or c.site_type in self.site_types)
            and (not self.counties or c.county in self.counties)
        )


@dataclass(frozen=True)
class Rollout:
    version: str
    url: str
    waves: tuple[float, ...] = (0.01, 0.1, 0.5, 1.0)
    soak_s: float = 600.0
    max_failures: float = 0.02
    target: RolloutTarget = field(default_factory=RolloutTarget)
    status: str = "running"
    wave: int = 0
    sent: Mapping[str, int] = field(default_factory=dict)  # kiosk id -> wave it was sent in
    healthy_since: Mapping[str, float] = field(default_factory=dict)
    failed: frozenset[str] = frozenset()
    reason: str = ""

    def summary(self) -> dict[str, Any]:
        healthy = sum(1 for k in self.sent if k in self.healthy_since)
        return {
            "version": self.version,
            "status": self.status,
            "wave": f"{self.wave + 1}/{len(self.waves)}",
            "commanded": len(self.sent),
            "healthy": healthy,
            "failed": len(self.failed),
            "reason": self.reason,
        }


def parse_fraction(text: str) -> float:
    """ "2%" or "0.02" -> 0.02."""
    t = text.strip()
    value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    if not 0 <= value <= 1:
        raise ValueError(f"{text!r}: a share between 0% and 100%")
    return value


def parse_waves(text: str) -> tuple[float, ...]:
    """ "1%,10%,50%,100%" -> growing cumulative fractions ending at 1."""
    waves = tuple(parse_fraction(w) for w in text.split(",") if w.strip())
    if not waves or any(b <= a for a, b in itertools.pairwise(waves)) or waves[-1] != 1:
        raise ValueError(f"{text!r}: waves must grow and end at 100%")
    return waves


def parse_duration(text: str) -> float:
    """ "90s", "10m", "2h" or seconds -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if m is None:
        raise ValueError(f"{text!r}: a duration such as 90s, 10m, 2h")
    return float(m[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[m[2]]


def wave_members(rollout: Rollout, fleet: Iterable[FleetCabinet], wave: int) -> list[str]:
    """The cabinets of waves 0..`wave` (cumulative), in a spread order that does not change
    between ticks (hash of version and kiosk id, not the list order)."""
    ids = sorted(
        (c.kiosk_id for c in fleet if rollout.target.matches(c)),
        key=lambda k: hashlib.sha256(f"{rollout.version}/{k}".encode()).hexdigest(),
    )
    n = max(1, math.ceil(rollout.waves[wave] * len(ids))) if ids else 0
    return ids[:n]


def cabinet_report(reported_update: Mapping[str, Any] | None, version: str) -> str:
    """ "healthy", "failed" or "pending" for one cabinet's `reported.update`."""
    if not reported_update:
        return "pending"
    last = reported_update.get("last_result") or {}
    if last.get("version") == version and last.get("result") in ("rolled_back", "refused"):
        return "failed"
    if reported_update.get("running") == version and last.get("result") == "committed":
        return "healthy"
    return "pending"


def step(
    rollout: Rollout,
    fleet: Sequence[FleetCabinet],
    reports: Mapping[str, Mapping[str, Any] | None],
    now: float,
) -> tuple[Rollout, list[str]]:
    """One tick: record what the commanded cabinets report, abort on too many failures, move to
    the next wave once this one soaked, and name the cabinets to command now."""
    if rollout.status in ("aborted", "done"):
        return rollout, []
    healthy = dict(rollout.healthy_since)
    failed = set(rollout.failed)
    for k in rollout.sent:
        seen = cabinet_report(reports.get(k), rollout.version)
        if seen == "healthy":
            healthy.setdefault(k, now)
        elif seen == "failed":
            failed.add(k)
            healthy.pop(k, None)
        else:
            healthy.pop(k, None)  # it must stay healthy for the whole soak
    r = dataclasses.replace(rollout, healthy_since=healthy, failed=frozenset(failed))
    if r.sent and len(failed) / len(r.sent) > r.max_failures:
        reason = f"{len(failed)} of {len(r.sent)} cabinets failed (> {r.max_failures:.0%})"
        return dataclasses.replace(r, status="aborted", reason=reason), []
    if r.status == "paused":
        return r, []
    members = wave_members(r, fleet, r.wave)
    soaked = all(
        k in failed or (k in healthy and now - healthy[k] >= r.soak_s)
        for k in members
        if k in r.sent
    )
    if members and all(k in r.sent for k in members) and soaked:
        if r.wave + 1 == len(r.waves):
            return dataclasses.replace(r, status="done"), []
        r = dataclasses.replace(r, wave=r.wave + 1)
        members = wave_members(r, fleet, r.wave)
    send = [k for k in members if k not in r.sent]
    if send:
        r = dataclasses.replace(r, sent={**r.sent, **dict.fromkeys(send, r.wave)})
    return r, send
