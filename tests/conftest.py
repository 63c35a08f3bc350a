"""Test-wide settings and the one test world (tests/support/).

- Hypothesis profiles: `ci` (derandomized, no deadline, prints the failing example's blob) and
  `dev` (random, no deadline), loaded from $HYPOTHESIS_PROFILE (.ci/run sets `ci`; without
  it `ci` when $CI is set, else `dev`).
- Markers by folder: every test under tests/hil is `hil`, tests/integration `integration`,
  tests/ui `ui`; folders in SLOW_FOLDERS and the unit tests in SLOW_UNIT (each takes seconds)
  are also `slow`. `make test-fast` runs `-m "not slow"` on tests/unit.
- The broker / PKI / province / kiosk fixtures of tests/support/fixtures.py, for every folder.
- SDL without a display.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.support.fixtures import (  # noqa: F401  (fixtures, registered here for every folder)
    kiosk_world,
    make_kiosk,
    mosquitto,
    pki,
    province,
    province_keys,
    province_root,
    proxy,
)

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)

TESTS = Path(__file__).resolve().parent

# folder under tests/ -> the marker every test in it gets
FOLDER_MARKERS = {"hil": "hil", "integration": "integration", "ui": "ui"}
# folders whose every test is `slow`
SLOW_FOLDERS = frozenset({"hil", "integration", "chaos"})
# unit tests ("file.py" or "file.py::test_name") that take seconds each (measured on 2 cores,
# 3-15 s): not in `make test-fast`, still in scripts/test.sh
SLOW_UNIT = frozenset(
    {
        "test_salvage.py::test_recover_carries_rows_forward_and_never_repeats_an_id",
        "test_sale_props.py::test_any_input_sequence_keeps_the_invariants",
        "test_store_crash.py::test_kill_9_leaves_a_consistent_database",
        "test_cli.py::test_seed_summary_and_planogram_round_trip",
        "test_cli.py::test_planogram_import_bad_rows_applies_nothing",
        "test_cli.py::test_provision_planogram_delegates",
        "test_cli_store_modes.py",
        "test_wheelhouse.py::test_build_install_with_require_hashes_and_refuse_a_tampered_wheel",
        # real-time VMC link scenarios (3-18 s each) and real release builds (9 s set-up)
        "test_vmc_driver.py",
        "test_release.py",
        "test_cli_board.py::test_vend_waits_for_a_board_that_stopped_answering_and_asks",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.path)).resolve()
        try:
            parts = path.relative_to(TESTS).parts
        except ValueError:
            continue
        if len(parts) < 2:
            continue
        folder = parts[0]
        if folder in FOLDER_MARKERS:
            item.add_marker(getattr(pytest.mark, FOLDER_MARKERS[folder]))
        name = getattr(item, "originalname", item.name)
        if folder in SLOW_FOLDERS or (
            folder == "unit" and (path.name in SLOW_UNIT or f"{path.name}::{name}" in SLOW_UNIT)
        ):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep


@pytest.fixture(autouse=True)
def _no_log_handler_outlives_its_test() -> Any:
    """A command run in-process (`kiosk.cli.main`) points the root logger at the sys.stderr
    of that moment, which pytest's capture closes when the test ends; a thread of a later test
    logging there printed "--- Logging error --- I/O operation on closed file". Remove the
    root handlers a test added, as a process's exit would."""
    import logging

    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    yield
    for h in list(root.handlers):
        if h not in before:
            root.removeHandler(h)
    root.setLevel(level)
