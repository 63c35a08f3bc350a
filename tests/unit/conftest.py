"""Fixtures for the unit tests: the whole app on the in-process board emulator
(tests/support/kiosk_app.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk.core.planogram import SlotKind
from tests.support.kiosk_app import Kiosk, running_kiosk


@pytest.fixture
def kiosk(tmp_path: Path) -> Iterator[Kiosk]:
    yield from running_kiosk(tmp_path, SlotKind.SPIRAL)


@pytest.fixture
def locker_kiosk(tmp_path: Path) -> Iterator[Kiosk]:
    yield from running_kiosk(tmp_path, SlotKind.LOCKER)
