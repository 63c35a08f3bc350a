"""The kiosk's estimate of how far its clock is from the province's.

Owns: the offset estimate (province time - kiosk time). Pure: times come in as arguments; the
callers pass only SIGNED province times that passed the signed-time high-water check
(kiosk.sync.acks: verified acks' and accepted commands' `issued_at`), never an unsigned
`sent_at`, which anyone able to publish on the broker could forge. A kiosk whose clock is years off
still sells: records carry kiosk time AND this estimate, and expiry checks of province
commands use `province_now()`. Robust to a single wild stamp (median of recent observations)
and follows a real clock step (NTP fixing the kiosk clock) after `step_confirm` agreeing
observations.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from typing import Any

__all__ = ["ClockOffset"]


class ClockOffset:
    def __init__(
        self,
        window: int = 15,
        *,
        step_threshold_s: float = 60.0,
        step_confirm: int = 3,
        step_tolerance_s: float = 10.0,
    ) -> None:
        if window < 1 or step_confirm < 1:
            raise ValueError("window and step_confirm must be >= 1")
        self.window = window
        self.step_threshold_s = step_threshold_s
        self.step_confirm = step_confirm
        self.step_tolerance_s = step_tolerance_s
        self._obs: deque[float] = deque(maxlen=window)

    def observe(self, province_time: float, kiosk_time_at_receive: float) -> bool:
        """Add one observation; False (ignored) if either time is not a finite number > 0."""
        for t in (province_time, kiosk_time_at_receive):
            if (
                not isinstance(t, int | float)
                or isinstance(t, bool)
                or not math.isfinite(t)
                or t <= 0
            ):
                return False
        self._obs.append(float(province_time) - float(kiosk_time_at_receive))
        self._follow_step()
        return True

    def _follow_step(self) -> None:
        n = self.step_confirm
        if len(self._obs) <= n:
            return
        recent = list(self._obs)[-n:]
        older = list(self._obs)[:-n]
        med_old = statistics.median(older)
        med_new = statistics.median(recent)
        agree = max(recent) - min(recent) <= self.step_tolerance_s
        if agree and abs(med_new - med_old) > self.step_threshold_s:
            self._obs = deque(recent, maxlen=self.window)  # the clock stepped: forget the past

    def offset(self) -> float | None:
        """province - kiosk, seconds (median of recent observations); None before any."""
        if not self._obs:
            return None
        return float(statistics.median(self._obs))

    def province_now(self, kiosk_now: float) -> float:
        """The province's time now, estimated (kiosk time when nothing was observed yet)."""
        off = self.offset()
        return kiosk_now + (off if off is not None else 0.0)

    def __len__(self) -> int:
        return len(self._obs)

    def to_json(self) -> dict[str, Any]:
        return {"observations": list(self._obs)}

    @classmethod
    def from_json(cls, data: object, window: int = 15) -> ClockOffset:
        est = cls(window)
        if isinstance(data, dict) and isinstance(data.get("observations"), list):
            for x in data["observations"][-window:]:
                if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x):
                    est._obs.append(float(x))
        return est
