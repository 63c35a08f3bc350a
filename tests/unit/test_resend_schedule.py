"""The resend schedule (kiosk.sync.pacing.ResendSchedule) on a fake clock, and stopping paho's
network thread without leaking the socket (kiosk.sync.client.stop_network)."""

from __future__ import annotations

import itertools
import random
import socket

import pytest

from kiosk.sync.client import stop_network
from kiosk.sync.pacing import ResendSchedule


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def run_until(self, sched: ResendSchedule, end: float, overdue: int) -> list[tuple[float, int]]:
        """Step one second at a time to `end`; at each due round resend min(window, overdue).
        Returns (time, records resent) per round."""
        rounds: list[tuple[float, int]] = []
        while self.t < end:
            self.t += 1.0
            if sched.due(self.t):
                heard = sched.take_round()
                n = min(sched.limit(heard), overdue)
                sched.resent(self.t, n, heard)
                rounds.append((self.t, n))
        return rounds


def test_silent_province_rounds_grow_to_the_cap_with_jitter() -> None:
    clock = FakeClock()
    sched = ResendSchedule(30.0, 600.0, 100, clock.t, random.Random(1))
    assert sched.level == 0 and 15.0 <= sched.next_at - clock.t <= 30.0
    start = clock.t
    rounds = clock.run_until(sched, start + 3600.0, overdue=5000)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(rounds)]
    # gap after the k-th round: min(600, 30 * 2**k) times uniform(0.5, 1), +1 s of stepping
    for k, gap in enumerate(gaps):
        ceiling = min(600.0, 30.0 * 2**k)
        assert ceiling * 0.5 <= gap <= ceiling + 1.0, (k, gap)
    assert max(gaps) <= 601.0 and sched.interval() == 600.0
    assert all(n == 100 for _, n in rounds)  # never more than the window per round
    # an hour without acks: a handful of rounds instead of one every 30 s (120)
    assert 8 <= len(rounds) <= 14


def test_ten_minute_outage_resends_a_bounded_number_of_records() -> None:
    """The fleet scenario: the province away for 10 minutes, a kiosk with 1,000 unacked
    records. The old rule (everything unacked again every 30 s) sent 20,000 copies; the
    schedule sends at most (rounds) x (probe)."""
    clock = FakeClock()
    sched = ResendSchedule(30.0, 600.0, 100, clock.t, random.Random(7), probe=10)
    rounds = clock.run_until(sched, clock.t + 600.0, overdue=1000)
    sent = sum(n for _, n in rounds)
    assert len(rounds) <= 6 and all(n == 10 for _, n in rounds)
    assert sent <= 60 < 1000 * 600 // 30 // 300


def test_the_window_applies_once_the_province_acks_the_probe_while_silent() -> None:
    sched = ResendSchedule(30.0, 600.0, 100, 0.0, random.Random(8), probe=10)
    assert sched.limit(False) == 10 and sched.limit(True) == 100
    assert ResendSchedule(30.0, 600.0, 50, 0.0).limit(False) == 50  # probe defaults to window


def test_nothing_overdue_looks_again_within_a_quarter_base_interval_without_growing() -> None:
    clock = FakeClock()
    sched = ResendSchedule(10.0, 100.0, 50, clock.t, random.Random(2))
    for _ in range(5):
        clock.t = sched.next_at
        assert sched.due(clock.t)
        sched.resent(clock.t, 0)
        assert sched.level == 0 and 1.25 <= sched.next_at - clock.t <= 2.5
    assert not sched.due(clock.t + 1.2)


def test_an_ack_brings_the_base_pace_back() -> None:
    clock = FakeClock()
    sched = ResendSchedule(30.0, 600.0, 100, clock.t, random.Random(3))
    clock.run_until(sched, clock.t + 1200.0, overdue=500)
    assert sched.level >= 4
    far = sched.next_at
    clock.t += 1.0
    sched.acked(clock.t)
    assert sched.level == 0 and sched.next_at <= min(far, clock.t + 30.0)
    assert sched.next_at >= clock.t + 15.0
    # more acks at the base pace change nothing (no random pull-forward on every ack)
    at = sched.next_at
    sched.acked(clock.t + 1.0)
    assert sched.next_at == at
    # the next rounds start again from the base interval
    clock.t = at
    sched.resent(clock.t, 10)
    assert sched.level == 1 and sched.next_at - clock.t <= 30.0


def test_with_acks_coming_a_round_resends_only_what_was_overtaken_at_the_base_pace() -> None:
    """The province is back and reading the queue the broker kept for it: records still in
    that queue must not be sent again (they would only add copies behind themselves)."""
    clock = FakeClock()
    sched = ResendSchedule(30.0, 600.0, 100, clock.t, random.Random(5))
    clock.t = sched.next_at
    assert sched.take_round() is False  # nothing heard: the oldest overdue records
    sched.resent(clock.t, 100, False)
    assert sched.level == 1
    clock.t += 5.0
    sched.acked(clock.t)
    assert sched.heard and sched.level == 0
    clock.t = sched.next_at
    assert sched.take_round() is True  # heard: only records an acked one overtook
    assert sched.take_round() is False  # (asked once per round)
    sched.resent(clock.t, 7, True)
    assert sched.level == 0 and 15.0 <= sched.next_at - clock.t <= 30.0  # no growth
    clock.t = sched.next_at
    sched.acked(clock.t)
    assert sched.take_round() is True
    sched.resent(clock.t, 0, True)  # nothing overtaken: look again soon
    assert sched.level == 0 and sched.next_at - clock.t <= 7.5


def test_a_reconnect_restarts_the_timer_but_keeps_the_level() -> None:
    clock = FakeClock()
    sched = ResendSchedule(30.0, 600.0, 100, clock.t, random.Random(4))
    clock.run_until(sched, clock.t + 500.0, overdue=100)
    level = sched.level
    assert level >= 3
    clock.t += 3.0
    sched.reconnected(clock.t)  # the client resent everything at once (reset_sent)
    assert sched.level == level
    gap = sched.next_at - clock.t
    assert sched.interval() * 0.5 <= gap <= sched.interval()


def test_a_fleet_does_not_resend_in_step() -> None:
    """500 kiosks that lost the province at the same moment spread their rounds out."""
    firsts = []
    for i in range(500):
        sched = ResendSchedule(30.0, 600.0, 100, 0.0, random.Random(i))
        sched.resent(sched.next_at, 100)  # the first round
        firsts.append(round(sched.next_at))
    busiest = max(firsts.count(t) for t in set(firsts))
    assert len(set(firsts)) >= 25 and busiest < 50  # over ~30 s, not all 500 in one second


@pytest.mark.parametrize(
    ("base", "cap", "window", "jitter"),
    [(0.0, 10.0, 1, 0.5), (10.0, 5.0, 1, 0.5), (1.0, 10.0, 0, 0.5), (1.0, 10.0, 1, 1.0)],
)
def test_bad_settings_are_refused(base: float, cap: float, window: int, jitter: float) -> None:
    with pytest.raises(ValueError, match="need"):
        ResendSchedule(base, cap, window, 0.0, jitter=jitter)


def test_a_zero_probe_is_refused() -> None:
    with pytest.raises(ValueError, match="probe >= 1"):
        ResendSchedule(1.0, 10.0, 5, 0.0, probe=0)


class RacingPahoClient:
    """Stands in for a paho client whose network thread ended between loop_stop's check of
    `_thread` and its `_thread.join()` (paho issue #872): loop_stop raises AttributeError."""

    def __init__(self, sock: socket.socket, race: bool) -> None:
        self.sock = sock
        self.race = race
        self.stopped = False

    def loop_stop(self) -> int:
        self.stopped = True
        if self.race:
            raise AttributeError("'NoneType' object has no attribute 'join'")
        return 0

    def socket(self) -> socket.socket:
        return self.sock


@pytest.mark.parametrize("race", [True, False])
def test_stop_network_closes_the_socket_even_when_paho_races(race: bool) -> None:
    a, b = socket.socketpair()
    try:
        client = RacingPahoClient(a, race)
        stop_network(client)  # never raises
        assert client.stopped and a.fileno() == -1  # closed: not leaked
    finally:
        a.close()
        b.close()
