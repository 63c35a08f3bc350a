"""Signed end-to-end acks and the signed-time high-water marks (issue 14, requirement 3).

Owns: the ack body (`ack_body`), signing it (`sign_ack`, used by the province simulator and the
province guide's vector), checking one (`AckVerifier`), and `SignedTime`: per signing key, the
highest signed province time the kiosk has accepted, persisted in the store, and the rule that
nothing signed more than `SIGNED_TIME_TOLERANCE_S` before it is accepted (acks, commands, the
clock estimate).

An ack is an ordinary signed envelope (kiosk.sync.signing, the same key and domain as commands
and desired state) whose body is

    {"name": "ack", "kiosk_id": <kiosk>, "issued_at": <province time, s>,
     "records": [[<event id>, <seq>], ...]}                   (1..ACK_MAX_RECORDS pairs)

Why each part is there:
- `kiosk_id`: an ack signed for kiosk B, replayed on A's topic, acks nothing at A.
- `records` names each record by event id AND outbox seq. A kiosk never reuses a seq (not after
  an ack, not after a crash), and deletes only a record whose (event id, seq) both match. So a
  replayed old ack can only name records that were already acknowledged and deleted: it cannot
  ack a record the province never stored, even one that reuses an event id (deterministic ids
  such as `alarm-<kiosk>-store-<digest>` are appended again after their ack).
- `issued_at` feeds the clock estimate (signed, unlike the `sent_at` stamps, which the kiosk no
  longer believes) and the freshness rule below.

Freshness: `SignedTime` keeps, per key id, the high-water mark H of accepted `issued_at`s. An
ack, a command or a clock observation signed at t < H - tolerance is refused (STALE_SIGNED_TIME).
The tolerance (300 s) covers clock differences between province nodes signing with one key and
QoS 1 redeliveries arriving out of order; it bounds how far a replayed signed message can pull
the clock estimate back (the median of recent observations moves less). The mark is persisted
(setting `sync.signed_time`) whenever it advanced by more than `persist_step_s` (default 10 s)
since the last write, and at `flush()`, so a restart loses at most that much of it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kiosk.log import log_event
from kiosk.store import Store
from kiosk.sync.signing import (
    Keyring,
    TrustError,
    TrustReason,
    sign_envelope,
    verify_envelope,
)

__all__ = [
    "ACK_MAX_RECORDS",
    "ACK_NAME",
    "SIGNED_TIME_SETTING",
    "SIGNED_TIME_TOLERANCE_S",
    "AckVerifier",
    "AckedRecords",
    "SignedTime",
    "ack_body",
    "sign_ack",
]

_log = logging.getLogger("kiosk.sync.acks")

ACK_NAME = "ack"
ACK_MAX_RECORDS = 1000  # per message (the 64 KiB message limit holds ~1000 uuid-sized pairs)
SIGNED_TIME_TOLERANCE_S = 300.0
SIGNED_TIME_SETTING = "sync.signed_time"
MAX_EVENT_ID_LEN = 200
MAX_SEQ = 2**63 - 1

RejectHook = Callable[[str, TrustError], None]


def ack_body(kiosk_id: str, records: Iterable[tuple[str, int]], issued_at: float) -> dict[str, Any]:
    """The body the province signs: records as [event id, seq] pairs, in the order given."""
    return {
        "name": ACK_NAME,
        "kiosk_id": kiosk_id,
        "issued_at": issued_at,
        "records": [[str(e), int(s)] for e, s in records],
    }


def sign_ack(
    private: bytes,
    kid: str,
    kiosk_id: str,
    records: Iterable[tuple[str, int]],
    issued_at: float,
) -> dict[str, Any]:
    """A signed ack envelope `{"v":1, "kid", "body", "sig"}` (publish it with topics.encode)."""
    return sign_envelope(private, kid, ack_body(kiosk_id, records, issued_at))


def _is_time(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0


class SignedTime:
    """Per signing key: the highest signed province time accepted (the high-water mark).

    `store=None` keeps the marks in memory only (tools and tests without a store)."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        tolerance_s: float = SIGNED_TIME_TOLERANCE_S,
        persist_step_s: float = 10.0,
    ) -> None:
        self.store = store
        self.tolerance_s = tolerance_s
        self.persist_step_s = persist_step_s
        self._marks: dict[str, float] = {}
        self._saved: dict[str, float] = {}
        if store is not None:
            data = store.settings.get_json(SIGNED_TIME_SETTING)
            if isinstance(data, dict):
                for kid, t in data.items():
                    if isinstance(kid, str) and _is_time(t):
                        self._marks[kid] = float(t)
            self._saved = dict(self._marks)

    def high_water(self, kid: str) -> float | None:
        return self._marks.get(kid)

    def check(self, kid: str, signed_at: object) -> float:
        """`signed_at` as a float if it may be accepted for key `kid`; TrustError otherwise
        (MALFORMED: not a finite number > 0; STALE_SIGNED_TIME: older than the mark minus the
        tolerance)."""
        if not _is_time(signed_at):
            raise TrustError(TrustReason.MALFORMED, "issued_at must be a finite number > 0")
        assert isinstance(signed_at, int | float)
        t = float(signed_at)
        mark = self._marks.get(kid)
        if mark is not None and t < mark - self.tolerance_s:
            raise TrustError(
                TrustReason.STALE_SIGNED_TIME,
                f"signed at {t:.0f}, {mark - t:.0f} s before the newest seen from kid {kid} "
                f"(tolerance {self.tolerance_s:.0f} s)",
            )
        return t

    def advance(self, kid: str, signed_at: float) -> None:
        """Raise the mark of `kid` to `signed_at` (a time that passed `check` in a message whose
        signature verified). Persisted when it moved more than `persist_step_s`."""
        if signed_at <= self._marks.get(kid, 0.0):
            return
        self._marks[kid] = signed_at
        if signed_at - self._saved.get(kid, 0.0) > self.persist_step_s:
            self.flush()

    def flush(self) -> None:
        if self.store is None or self._marks == self._saved:
            return
        try:
            self.store.settings.set_json(SIGNED_TIME_SETTING, dict(self._marks))
            self._saved = dict(self._marks)
        except Exception:  # a store that cannot write must not take the link down
            _log.exception("signed_time.save_failed")


@dataclass(frozen=True)
class AckedRecords:
    """A verified ack: the (event id, seq) pairs it acknowledges and its signed time."""

    kid: str
    issued_at: float
    records: list[tuple[str, int]]


class AckVerifier:
    """Checks ack envelopes for one kiosk: signature (a key in `keyring()`, read at each call, so
    rotations apply at once), name, kiosk id, shape, freshness. Every refusal is logged
    (`trust.rejected`, what = "ack") and handed to `on_reject` (the kiosk's rejection path)
    before the TrustError is raised."""

    def __init__(
        self,
        kiosk_id: str,
        keyring: Callable[[], Keyring],
        signed_time: SignedTime,
        *,
        on_reject: RejectHook | None = None,
    ) -> None:
        self.kiosk_id = kiosk_id
        self.keyring = keyring
        self.signed_time = signed_time
        self.on_reject = on_reject

    @classmethod
    def for_key(cls, kiosk_id: str, public_key: bytes, store: Store | None = None) -> AckVerifier:
        """A verifier trusting one province public key (tools, simulators, tests)."""
        ring = Keyring([public_key])
        return cls(kiosk_id, lambda: ring, SignedTime(store))

    def verify(self, env: object) -> AckedRecords:
        """The verified ack; the high-water mark of its key is advanced. Raises TrustError
        (MALFORMED, UNKNOWN_KEY, BAD_SIGNATURE, WRONG_NAME, WRONG_KIOSK, STALE_SIGNED_TIME)."""
        try:
            acked = self._check(env)
        except TrustError as e:
            self._reject(e)
            raise
        self.signed_time.advance(acked.kid, acked.issued_at)
        return acked

    def _check(self, env: object) -> AckedRecords:
        body = verify_envelope(env, self.keyring())
        assert isinstance(env, Mapping)
        kid = str(env["kid"])
        if body.get("name") != ACK_NAME:
            raise TrustError(TrustReason.WRONG_NAME, f"body is for {body.get('name')!r}")
        if body.get("kiosk_id") != self.kiosk_id:
            raise TrustError(TrustReason.WRONG_KIOSK, f"ack for {body.get('kiosk_id')!r}")
        records = _records(body.get("records"))
        issued_at = self.signed_time.check(kid, body.get("issued_at"))
        return AckedRecords(kid, issued_at, records)

    def _reject(self, err: TrustError) -> None:
        log_event(
            _log,
            "trust.rejected",
            logging.WARNING,
            what="ack",
            reason=err.reason.value,
            detail=err.detail,
        )
        if self.on_reject is not None:
            try:
                self.on_reject("ack", err)
            except Exception:  # an alarm that cannot be raised must not crash the kiosk
                _log.exception("ack.on_reject failed")


def _records(value: object) -> list[tuple[str, int]]:
    if not isinstance(value, list) or not 1 <= len(value) <= ACK_MAX_RECORDS:
        raise TrustError(
            TrustReason.MALFORMED, f"records must be a list of 1..{ACK_MAX_RECORDS} pairs"
        )
    out: list[tuple[str, int]] = []
    for item in value:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not isinstance(item[0], str)
            or not 1 <= len(item[0]) <= MAX_EVENT_ID_LEN
            or not isinstance(item[1], int)
            or isinstance(item[1], bool)
            or not 1 <= item[1] <= MAX_SEQ
        ):
            raise TrustError(TrustReason.MALFORMED, f"not an [event id, seq] pair: {item!r:.80}")
        out.append((item[0], item[1]))
    return out
