"""The SyncClient's pure parts (no broker): backoff with full jitter, the token bucket, URL
and plaintext rules. Here because they belong to the integration suite's subject."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from kiosk.config import SyncConfig
from kiosk.sync.client import Backoff, SyncConfigError, TokenBucket, broker_address


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    b = Backoff(1.0, 60.0, random.Random(1))
    ceilings = []
    for _ in range(12):
        ceilings.append(b.ceiling())
        d = b.next_delay()
        assert 0 <= d <= ceilings[-1]
    assert ceilings[:7] == [1, 2, 4, 8, 16, 32, 60] and ceilings[-1] == 60
    b.reset()
    assert b.ceiling() == 1


def test_30000_kiosks_do_not_stampede_after_an_outage() -> None:
    """Every kiosk has failed ~10 times during a long outage (ceiling = cap = 60 s). Their next
    attempts spread evenly over the minute: no second gets more than ~2x its fair share."""
    rng = random.Random(7)
    per_second: Counter[int] = Counter()
    for _ in range(30_000):
        b = Backoff(1.0, 60.0, rng)
        b.attempt = 10
        per_second[int(b.next_delay())] += 1
    fair = 30_000 / 60
    assert len(per_second) == 60
    assert max(per_second.values()) < 1.3 * fair
    assert min(per_second.values()) > 0.7 * fair


def test_token_bucket_paces_and_bursts() -> None:
    t = 0.0
    bucket = TokenBucket(rate=10, burst=5, now=t)
    assert sum(bucket.take(t) for _ in range(20)) == 5  # the burst, then nothing
    assert bucket.wait_s(t) == pytest.approx(0.1)
    t += 1.0
    assert sum(bucket.take(t) for _ in range(20)) == 5  # capped at the burst again
    t += 0.25
    assert sum(bucket.take(t) for _ in range(20)) == 2


def test_broker_url_rules() -> None:
    assert broker_address(SyncConfig(broker_url="mqtts://h.example:8884")).port == 8884
    assert broker_address(SyncConfig(broker_url="mqtts://h.example")).port == 8883
    assert broker_address(SyncConfig(broker_url="mqtt://h", allow_plaintext=True)).port == 1883
    with pytest.raises(SyncConfigError, match="plaintext"):
        broker_address(SyncConfig(broker_url="mqtt://h"))
    with pytest.raises(SyncConfigError):
        broker_address(SyncConfig(broker_url="http://h"))
