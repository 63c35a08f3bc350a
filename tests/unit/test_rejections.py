"""kiosk.sync.rejections: the names of rejections, and the window rule of their alarms.

Table tests of what/reason naming and of the window rule step by step; a property test over
random sequences of rejections, clock steps and takes: every rejection is in exactly one alarm,
alarms of one pair are at least one window apart, and the first rejection of a quiet pair
raises an alarm at the next take.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.clock import ManualClock
from kiosk.sync.rejections import (
    OVERFLOW,
    RejectionAlarm,
    RejectionLimiter,
    alarm_body,
    clean_reason,
    what_of_topic,
    what_of_trust,
)
from kiosk.sync.topics import Topics

K = "AH-340100-0001"
T = Topics(K)
SHA = "ab" * 32


@pytest.mark.parametrize(
    ("topic", "what"),
    [
        (T.desired("prices"), "desired/prices"),
        (T.desired("planogram"), "desired/planogram"),
        (T.commands, "commands"),
        (T.acks, "acks"),
        (T.payment_confirm, "payment/confirm"),
        (T.order_status_reply, "orders/status/reply"),
        (T.image_reply(SHA), "images/reply"),
        (T.PROVINCE_CATALOG, "province/catalog"),
        (T.PROVINCE_KEYS, "province/keys"),
        (T.province_image(SHA), "province/images"),
        (T.events("sale"), "events/sale"),  # an uplink kind arriving down: named, bounded
        (Topics("AH-340100-0002").commands, "commands"),  # another kiosk's: same kind
        (f"{T.base}/desired/{'x' * 5000}", "unknown"),  # never the raw string
        (f"{T.base}/nonsense", "unknown"),
        ("elsewhere/entirely", "unknown"),
        ("", "unknown"),
    ],
)
def test_what_of_topic(topic: str, what: str) -> None:
    assert what_of_topic(topic, T.prefix) == what


@pytest.mark.parametrize(
    ("trust_what", "what"),
    [
        ("catalog", "province/catalog"),
        ("keys", "province/keys"),
        ("prices", "desired/prices"),
        ("planogram", "desired/planogram"),
        ("config", "desired/config"),
        ("command", "commands"),
        ("command:open_door", "commands"),
        ("ack", "acks"),
        ("command:" + "x" * 1000, "commands"),
        ("something else", "unknown"),
    ],
)
def test_what_of_trust(trust_what: str, what: str) -> None:
    assert what_of_trust(trust_what) == what


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("NOT_JSON", "NOT_JSON"),
        ("unknown_topic", "UNKNOWN_TOPIC"),
        ("bad signature!", "BAD_SIGNATURE"),
        ("", "OTHER"),
        ("42", "OTHER"),
        ("X" * 500, "X" * 48),
    ],
)
def test_clean_reason(raw: str, clean: str) -> None:
    assert clean_reason(raw) == clean


def test_the_window_step_by_step() -> None:
    clock = ManualClock()
    t0 = clock.time()
    lim = RejectionLimiter(clock, window_s=600)
    assert lim.take() == []
    # the first rejection alarms at once, with count 1
    lim.record("desired/prices", "NOT_JSON", "Expecting value")
    assert lim.take() == [
        RejectionAlarm("desired/prices", "NOT_JSON", 1, t0, t0, "Expecting value")
    ]
    # 999 more within the window: counted, no alarm
    for i in range(999):
        clock.advance(0.5)
        lim.record("desired/prices", "NOT_JSON", f"#{i}")
        assert lim.take() == []
    assert lim.pending() == 999
    # another pair is independent: alarms at once
    lim.record("commands", "BAD_SIGNATURE")
    (other,) = lim.take()
    assert (other.what, other.reason, other.count) == ("commands", "BAD_SIGNATURE", 1)
    # the window ends 600 s after the first alarm: one summary with the count
    clock.advance(100)  # 599.5 s after the first alarm
    assert lim.take() == []
    clock.advance(0.5)
    (summary,) = lim.take()
    assert summary.count == 999 and summary.detail == "#998"
    assert summary.first_at == t0 + 0.5 and summary.last_at == t0 + 999 * 0.5
    assert lim.pending() == 0
    # a new window started with the summary; the pair stays rate limited
    clock.advance(1)
    lim.record("desired/prices", "NOT_JSON")
    assert lim.take() == []
    clock.advance(600)
    assert [a.count for a in lim.take()] == [1]
    # quiet for a whole window: forgotten, the next rejection alarms at once
    clock.advance(600)
    assert lim.take() == []
    clock.advance(3600)
    lim.record("desired/prices", "NOT_JSON")
    assert [a.count for a in lim.take()] == [1]
    assert lim.by_reason() == {"BAD_SIGNATURE": 1, "NOT_JSON": 1002}
    assert lim.total == 1003


def test_at_once_after_a_quiet_window_without_a_take_between() -> None:
    clock = ManualClock()
    lim = RejectionLimiter(clock, window_s=10)
    lim.record("acks", "BAD_TYPE")
    clock.advance(10.5)
    lim.record("acks", "BAD_TYPE")
    clock.advance(3)
    assert [(a.count, a.raised_at) for a in lim.take()] == [(1, 0.0), (1, 10.5)]


def test_flush_reports_every_pending_count() -> None:
    clock = ManualClock()
    lim = RejectionLimiter(clock, window_s=600)
    for _ in range(5):
        lim.record("acks", "BAD_TYPE")
        lim.record("commands", "EXPIRED")
    assert sorted((a.what, a.count) for a in lim.take()) == [("acks", 1), ("commands", 1)]
    assert lim.pending() == 8 and lim.take() == []
    lim.record("acks", "BAD_TYPE")
    lim.record("acks", "BAD_TYPE")
    assert sorted((a.what, a.count) for a in lim.flush()) == [("acks", 6), ("commands", 4)]
    assert lim.flush() == [] and lim.pending() == 0


def test_pairs_and_reasons_are_bounded() -> None:
    lim = RejectionLimiter(ManualClock(), window_s=600, max_pairs=4)
    for i in range(100):
        lim.record("commands", f"REASON_{i}")
    alarms = lim.take()
    assert len(alarms) == 5  # 4 pairs and the overflow bucket, each alarmed at once
    assert [a.count for a in alarms] == [1] * 5
    assert lim.pending() == 95
    (rest,) = lim.flush()
    assert (rest.what, rest.reason, rest.count) == (*OVERFLOW, 95)
    assert len(lim.by_reason()) == 5 and lim.by_reason()["OTHER"] == 96
    lim = RejectionLimiter(ManualClock(), window_s=600)
    lim.record("not a topic kind " * 50, "NOT_JSON", "d" * 10_000)
    (a,) = lim.take()
    assert a.what == "unknown" and len(a.detail) == 200


def test_bad_window() -> None:
    with pytest.raises(ValueError):
        RejectionLimiter(ManualClock(), window_s=0)


def test_alarm_body_shape() -> None:
    body = alarm_body(RejectionAlarm("desired/prices", "NOT_JSON", 3, 10.0, 12.5, "oops"))
    assert body == {
        "code": "SYNC_REJECTED",
        "severity": "warning",
        "detail": "3 messages on desired/prices rejected: NOT_JSON (last: oops)",
        "context": {
            "what": "desired/prices",
            "reason": "NOT_JSON",
            "count": 3,
            "first_at": 10.0,
            "last_at": 12.5,
        },
    }
    assert alarm_body(RejectionAlarm("acks", "BAD_TYPE", 1, 1.0, 1.0, ""))["detail"] == (
        "1 message on acks rejected: BAD_TYPE"
    )


# --- the window rule as a property ----------------------------------------------------------

PAIRS = [("desired/prices", "NOT_JSON"), ("commands", "BAD_SIGNATURE"), ("acks", "TOO_BIG")]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("reject"), st.integers(0, len(PAIRS) - 1)),
        st.tuples(st.just("advance"), st.floats(0, 40, allow_nan=False)),
        st.tuples(st.just("take"), st.just(0)),
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(ops=ops, window=st.sampled_from([1.0, 7.5, 30.0, 600.0]))
def test_window_rule_holds_for_any_sequence(ops: list[tuple[str, float]], window: float) -> None:
    clock = ManualClock()
    lim = RejectionLimiter(clock, window_s=window)
    sent: dict[tuple[str, str], list[float]] = defaultdict(list)  # monotonic record times
    raised: dict[tuple[str, str], list[float]] = defaultdict(list)  # alarms' raised_at
    counted: dict[tuple[str, str], int] = defaultdict(int)

    def take() -> None:
        now = clock.monotonic()
        taken = lim.take()
        for a in taken:
            pair = (a.what, a.reason)
            assert a.count >= 1 and a.first_at <= a.last_at and a.raised_at <= now
            if raised[pair]:  # alarms of one pair: at least one window apart
                assert a.raised_at - raised[pair][-1] >= window
            raised[pair].append(a.raised_at)
            counted[pair] += a.count

    for op, arg in ops:
        if op == "reject":
            pair = PAIRS[int(arg)]
            sent[pair].append(clock.monotonic())
            lim.record(*pair)
        elif op == "advance":
            clock.advance(arg)
        else:
            take()
        assert sum(counted.values()) + lim.pending() == sum(len(t) for t in sent.values())
    take()
    for pair, times in sent.items():
        # at once: every rejection has an alarm of its pair raised at it or less than a window
        # before it (the first one after a quiet window raised its own)
        for t in times:
            assert any(t - window < r <= t for r in raised[pair]), (pair, t, raised[pair])
    for a in lim.flush():
        counted[(a.what, a.reason)] += a.count
    # every rejection is in exactly one alarm
    assert counted == {k: len(v) for k, v in sent.items()}
    assert lim.by_reason() == {
        r: sum(len(v) for (_, rr), v in sent.items() if rr == r) for (_, r) in sent
    }
