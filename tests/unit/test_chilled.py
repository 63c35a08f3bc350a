"""The chilled-goods decision (kiosk.core.chilled): durations, hysteresis, sensor failure and
silence, several limits, restart with persisted blocked limits; and the catalog field."""

from __future__ import annotations

import dataclasses

import pytest

from kiosk.core import chilled
from kiosk.core.catalog import Catalog, CatalogError, Category, Product
from kiosk.core.chilled import BackInRange, ChilledRules, Reading, TooWarm

RULES = ChilledRules(too_warm_for_s=60, back_for_s=120, hysteresis_c=0.5, silent_after_s=20)
MILK = Product(
    product_id="MILK-1",
    name_zh="酸奶",
    name_en="Yoghurt",
    certification_no="FP-1",
    origin_county_zh="金寨县",
    origin_county_en="Jinzhai",
    origin_area_code="341524",
    producer_zh="合作社",
    producer_en="Cooperative",
    category=Category.HEALTH,
    price_fen=500,
    spec_zh="200克",
    spec_en="200 g",
    shelf_life_days=14,
    chilled_max_c=8,
)
TEA = dataclasses.replace(MILK, product_id="TEA-1", chilled_max_c=None)
CHEESE = dataclasses.replace(MILK, product_id="CHEESE-1", chilled_max_c=4.0)
CATALOG = Catalog.of(1, [MILK, TEA, CHEESE])


class Run:
    """Feeds readings at given times, collecting transitions."""

    def __init__(self, limits: frozenset[float] = frozenset({8.0}), start: float = 0.0) -> None:
        self.state = chilled.new_state(start)
        self.limits = limits
        self.seen: list[chilled.Transition] = []

    def read(self, t: float, celsius: float | None) -> list[chilled.Transition]:
        self.state, out = chilled.step(self.state, t, self.limits, RULES, Reading(celsius, t))
        self.seen += out
        return out

    def tick(self, t: float) -> list[chilled.Transition]:
        self.state, out = chilled.step(self.state, t, self.limits, RULES)
        self.seen += out
        return out

    @property
    def blocked(self) -> frozenset[float]:
        return chilled.blocked_limits(self.state)


def test_catalog_field_normalised_and_validated() -> None:
    assert MILK.chilled_max_c == 8.0 and isinstance(MILK.chilled_max_c, float)
    assert TEA.chilled_max_c is None
    for bad in (31, -31.0, True, "8"):
        with pytest.raises(CatalogError, match="chilled_max_c"):
            dataclasses.replace(MILK, chilled_max_c=bad)  # type: ignore[arg-type]
    assert chilled.chilled_limits(CATALOG) == {8.0, 4.0}


def test_too_warm_must_last_the_configured_time() -> None:
    r = Run()
    assert r.read(0, 5.0) == []
    assert r.read(10, 9.0) == []  # starts counting
    assert r.read(40, 9.5) == []
    assert r.read(65, 8.5) == []  # 55 s: not yet
    assert r.read(70, 9.0) == [TooWarm(8.0, 9.0)]  # 60 s above
    assert r.blocked == {8.0}
    assert r.read(80, 12.0) == []  # no second alarm


def test_a_short_excursion_does_not_stop_sales() -> None:
    r = Run()
    r.read(0, 9.0)
    r.read(50, 9.0)
    r.read(55, 7.0)  # back before 60 s: the count starts again
    r.read(60, 9.0)
    assert r.read(110, 9.0) == []
    assert r.read(120, 9.0) == [TooWarm(8.0, 9.0)]


def test_exactly_at_the_limit_is_in_range() -> None:
    r = Run()
    for t in range(0, 600, 10):
        assert r.read(t, 8.0) == []


def test_return_needs_hysteresis_and_duration() -> None:
    r = Run()
    r.read(0, 10.0)
    r.read(60, 10.0)
    assert r.blocked == {8.0}
    r.read(100, 7.8)  # in range but not below limit - hysteresis: does not count
    assert r.read(300, 7.8) == []
    r.read(310, 7.5)  # counts from here
    assert r.read(420, 7.0) == []  # 110 s
    r.read(425, 7.6)  # above 7.5 again: reset
    r.read(430, 7.0)
    assert r.read(549, 7.0) == []
    assert r.read(550, 7.2) == [BackInRange(8.0, 7.2)]
    assert r.blocked == frozenset()


def test_failed_sensor_counts_as_too_warm() -> None:
    r = Run()
    r.read(0, None)
    assert r.read(59, None) == []
    assert r.read(60, None) == [TooWarm(8.0, None)]
    r.read(61, 3.0)  # a good reading again: needs back_for_s
    assert r.read(180, 3.0) == []
    assert r.read(181, 3.0) == [BackInRange(8.0, 3.0)]


def test_silent_sensor_counts_as_too_warm() -> None:
    r = Run()
    r.read(0, 4.0)
    assert r.tick(20) == []  # still fresh
    r.tick(21)  # silent from now on: counting
    assert r.tick(80) == []
    assert r.tick(81) == [TooWarm(8.0, None)]


def test_no_reading_after_start_waits_for_silence_then_counts() -> None:
    r = Run(start=100)
    assert r.tick(110) == []
    assert r.tick(120) == []  # silent_after_s not passed: the first poll may be late
    r.tick(121)
    assert r.tick(180) == []
    assert r.tick(181) == [TooWarm(8.0, None)]


def test_limits_are_independent() -> None:
    r = Run(limits=frozenset({8.0, 4.0}))
    r.read(0, 6.0)
    assert r.read(60, 6.0) == [TooWarm(4.0, 6.0)]
    assert r.blocked == {4.0}
    assert chilled.blocked_products(CATALOG, r.state) == {"CHEESE-1"}
    r.read(61, 9.0)
    assert r.read(121, 9.0) == [TooWarm(8.0, 9.0)]
    assert chilled.blocked_products(CATALOG, r.state) == {"CHEESE-1", "MILK-1"}
    r.read(122, 3.0)
    assert r.read(242, 3.0) == [BackInRange(4.0, 3.0), BackInRange(8.0, 3.0)]


def test_non_chilled_products_are_never_blocked() -> None:
    r = Run(limits=chilled.chilled_limits(CATALOG))
    r.read(0, None)
    r.read(100, None)
    assert "TEA-1" not in chilled.blocked_products(CATALOG, r.state)


def test_restart_keeps_blocked_limits_until_back_in_range() -> None:
    state = chilled.new_state(1000.0, blocked=[8.0])
    state, out = chilled.step(state, 1000.0, {8.0}, RULES, Reading(3.0, 1000.0))
    assert out == [] and chilled.blocked_limits(state) == {8.0}
    state, out = chilled.step(state, 1120.0, {8.0}, RULES, Reading(3.0, 1120.0))
    assert out == [BackInRange(8.0, 3.0)]


def test_a_limit_that_leaves_the_catalog_is_forgotten() -> None:
    r = Run()
    r.read(0, 10.0)
    r.read(60, 10.0)
    r.limits = frozenset({4.0})
    r.read(61, 10.0)
    assert r.blocked == frozenset()
    assert list(r.state.limits) == [4.0]


def test_nothing_else_to_sell_says_temperature_not_sold_out() -> None:
    from kiosk.core.service import ServiceFacts, out_of_service_reasons

    assert out_of_service_reasons(ServiceFacts(True, sellable_units=0)) == ["sold_out"]
    warm = ServiceFacts(True, sellable_units=0, chilled_stopped=True)
    assert out_of_service_reasons(warm) == ["temperature"]
    both = ServiceFacts(
        True, sellable_units=0, chilled_stopped=True, temperature_c=9, max_temperature_c=8
    )
    assert out_of_service_reasons(both) == ["temperature"]
