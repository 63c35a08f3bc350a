"""Chilled goods: when products marked chilled (`Product.chilled_max_c`) stop and start selling.

Owns: the decision, per temperature limit, whether the cabinet has been too warm for long
enough that products with that limit must stop selling, and whether it has been back in range
for long enough that they may sell again (`step`), the transitions that raise the
TEMPERATURE_HIGH / TEMPERATURE_OK alarms, and which products are blocked (`blocked_products`).

Rules (docs/sales.md, "Chilled goods"):
- too warm for a limit: the reading is above the limit, or there is no reading (the sensor
  failed, or has been silent for longer than `ChilledRules.silent_after_s`). Only chilled
  products are affected; everything else sells on.
- a selling limit stops after `too_warm_for_s` of continuous "too warm";
- a stopped limit returns after `back_for_s` of continuous readings at or below
  `limit - hysteresis_c` (a reading between the two neither starts nor ends the wait: the
  clock that counts is reset).

Pure: time comes in as `now` (monotonic seconds); no I/O. The shell (kiosk.controller.chilled)
feeds readings and ticks, persists the blocked limits and raises the alarms.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from kiosk.core.catalog import Catalog

__all__ = [
    "BackInRange",
    "ChilledRules",
    "ChilledState",
    "LimitState",
    "Reading",
    "TooWarm",
    "Transition",
    "blocked_limits",
    "blocked_products",
    "chilled_limits",
    "current_celsius",
    "new_state",
    "step",
]


@dataclass(frozen=True, slots=True)
class ChilledRules:
    too_warm_for_s: float = 300.0
    back_for_s: float = 300.0
    hysteresis_c: float = 0.5
    silent_after_s: float = 30.0  # no reading for this long counts as a failed sensor


@dataclass(frozen=True, slots=True)
class Reading:
    """One sensor reading: `celsius` None means the sensor answered it has failed, or could
    not be read. `at` is monotonic seconds."""

    celsius: float | None
    at: float


@dataclass(frozen=True, slots=True)
class LimitState:
    blocked: bool = False
    since: float | None = None  # when the condition that would flip `blocked` started


@dataclass(frozen=True, slots=True)
class ChilledState:
    limits: Mapping[float, LimitState] = field(default_factory=dict)
    last: Reading | None = None
    started: float = 0.0  # monotonic time the watch started (silence before the first reading)


@dataclass(frozen=True, slots=True)
class TooWarm:
    limit: float
    celsius: float | None  # None: no reading (sensor failed or silent)


@dataclass(frozen=True, slots=True)
class BackInRange:
    limit: float
    celsius: float


Transition = TooWarm | BackInRange


def chilled_limits(catalog: Catalog) -> frozenset[float]:
    """The distinct maximum temperatures of the catalog's chilled products."""
    return frozenset(p.chilled_max_c for p in catalog if p.chilled_max_c is not None)


def new_state(now: float, blocked: Iterable[float] = ()) -> ChilledState:
    """The state at start: `blocked` are the limits stopped before a restart (persisted); they
    need `back_for_s` of good readings from now on to return."""
    return ChilledState({lim: LimitState(blocked=True) for lim in blocked}, None, now)


def current_celsius(state: ChilledState, now: float, rules: ChilledRules) -> float | None:
    """The reading that counts now: None when there is none or it is older than
    `silent_after_s`."""
    last = state.last
    if last is None or now - last.at > rules.silent_after_s:
        return None
    return last.celsius


def step(
    state: ChilledState,
    now: float,
    limits: Iterable[float],
    rules: ChilledRules,
    reading: Reading | None = None,
) -> tuple[ChilledState, list[Transition]]:
    """Take a new `reading` (or just the passing of time, for a tick) and return the new state
    and the limits that changed, in ascending limit order. `limits`: those in the catalog now
    (a limit that left the catalog is forgotten; a new one starts selling)."""
    if reading is not None:
        state = replace(state, last=reading)
    celsius = current_celsius(state, now, rules)
    if state.last is None and now - state.started <= rules.silent_after_s:
        celsius_known = False  # just started: give the sensor its first poll
    else:
        celsius_known = True
    out: dict[float, LimitState] = {}
    transitions: list[Transition] = []
    for limit in sorted(set(limits)):
        old = state.limits.get(limit, LimitState())
        new, change = _one(old, limit, celsius, celsius_known, now, rules)
        out[limit] = new
        if change is not None:
            transitions.append(change)
    return replace(state, limits=out), transitions


def _one(
    s: LimitState,
    limit: float,
    celsius: float | None,
    known: bool,
    now: float,
    rules: ChilledRules,
) -> tuple[LimitState, Transition | None]:
    if not s.blocked:
        too_warm = known and (celsius is None or celsius > limit)
        if not too_warm:
            return LimitState(False, None), None
        since = now if s.since is None else s.since
        if now - since >= rules.too_warm_for_s:
            return LimitState(True, None), TooWarm(limit, celsius)
        return LimitState(False, since), None
    cool = celsius is not None and celsius <= limit - rules.hysteresis_c
    if not cool:
        return LimitState(True, None), None
    assert celsius is not None
    since = now if s.since is None else s.since
    if now - since >= rules.back_for_s:
        return LimitState(False, None), BackInRange(limit, celsius)
    return LimitState(True, since), None


def blocked_limits(state: ChilledState) -> frozenset[float]:
    return frozenset(lim for lim, s in state.limits.items() if s.blocked)


def blocked_products(catalog: Catalog, state: ChilledState) -> frozenset[str]:
    """The chilled products that must not sell now."""
    stopped = blocked_limits(state)
    return frozenset(
        p.product_id for p in catalog if p.chilled_max_c is not None and p.chilled_max_c in stopped
    )
