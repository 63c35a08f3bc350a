"""The checks before a release may be installed on a cabinet (issue 16 req. 3): each refusal
names why, is an update step (`refused`, sent as events/update), and leaves the running version
and the state as they were. Hand-made releases (tests/support/releases.py `small_release`):
every refusal here happens before pip; tests/integration/test_update_rollback.py installs real
ones."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kiosk.update.installer import InstallError, Staging, stage_release
from kiosk.update.supervisor import add_step, load_state, save_state
from tests.support.releases import small_release


def store_at(data: Path, schema: int) -> Path:
    data.mkdir(parents=True, exist_ok=True)
    c = sqlite3.connect(data / "kiosk.db")
    c.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at, description)")
    c.executemany(
        "INSERT INTO schema_version VALUES (?, 0, 'v')", [(v,) for v in range(1, schema + 1)]
    )
    c.commit()
    c.close()
    return data


def staging(tmp_path: Path, public: bytes, schema: int = 5, min_free_mb: int = 0) -> Staging:
    return Staging(
        root=tmp_path / "opt",
        config=tmp_path / "kiosk.toml",
        data_dir=store_at(tmp_path / "data", schema),
        public_key=public,
        min_free_mb=min_free_mb,
    )


def refused(s: Staging, rel: Path, match: str) -> dict[str, object]:
    with pytest.raises(InstallError, match=match):
        stage_release(rel, s, say=lambda _t: None)
    state = load_state(s.root)
    assert state["last_result"]["result"] == "refused"
    assert state["history"][-1]["step"] == "refused"
    assert state["pending"] is None and not (s.root / "versions").exists()
    return state


def test_a_store_newer_than_the_release_knows_is_refused(tmp_path: Path) -> None:
    rel, public, _ = small_release(tmp_path, schema=(0, 5))
    refused(
        staging(tmp_path, public, schema=6),
        rel,
        "store is at schema 6; version 9.9.9 knows up to 5",
    )


def test_a_store_older_than_the_release_migrates_from_is_refused(tmp_path: Path) -> None:
    rel, public, _ = small_release(tmp_path, schema=(4, 7))
    refused(staging(tmp_path, public, schema=3), rel, "needs at least 4")


def test_a_release_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    rel, public, _ = small_release(tmp_path)
    refused(staging(tmp_path, public, min_free_mb=10**9), rel, "not enough disk")


def test_no_second_update_while_one_is_on_trial(tmp_path: Path) -> None:
    rel, public, _ = small_release(tmp_path)
    s = staging(tmp_path, public)
    state = load_state(s.root)
    state.update(phase="trial", pending={"version": "9.9.8", "migrates": False})
    add_step(state, "switch", "9.9.8")
    save_state(s.root, state)
    with pytest.raises(InstallError, match="update is in progress"):
        stage_release(rel, s, say=lambda _t: None)
    after = load_state(s.root)
    assert after["phase"] == "trial" and after["pending"]["version"] == "9.9.8"


def test_now_with_an_order_still_open_is_refused(tmp_path: Path) -> None:
    """`update apply --now` on a stopped kiosk: a version on trial must not resume an order
    (a vend, a ledger record) into a store a rollback may put back."""
    rel, public, _ = small_release(tmp_path)
    s = staging(tmp_path, public)
    c = sqlite3.connect(s.data_dir / "kiosk.db")
    c.execute("CREATE TABLE orders (order_id TEXT, seq INTEGER, state TEXT)")
    c.execute("INSERT INTO orders VALUES ('K-0001', 1, 'completed'), ('K-0002', 2, 'dispensing')")
    c.commit()
    c.close()
    with pytest.raises(InstallError, match=r"order K-0002 \(dispensing\) is still open"):
        stage_release(rel, s, switch_now=True, say=lambda _t: None)
    assert load_state(s.root)["last_result"]["result"] == "refused"


def test_an_unsigned_or_altered_release_is_refused_before_anything(tmp_path: Path) -> None:
    rel, public, _ = small_release(tmp_path)
    (rel / "wheels" / "dep-1.0-py3-none-any.whl").write_bytes(b"altered")
    refused(staging(tmp_path, public), rel, "does not match the manifest")


def test_the_service_menu_lists_the_update_history(tmp_path: Path) -> None:
    from kiosk.update.gate import UpdateHistory

    root = tmp_path / "opt"
    history = UpdateHistory(root)
    assert history.lines() == ()  # no update state yet
    state = load_state(root)
    for step, version in (("staged", "0.2.0"), ("switch", "0.2.0"), ("committed", "0.2.0")):
        add_step(state, step, version)
    add_step(state, "rolled_back", "0.2.1")
    save_state(root, state)
    lines = history.lines()
    assert [ln.split(" ", 2)[2] for ln in lines] == [
        "0.2.1 rolled_back",
        "0.2.0 committed",
        "0.2.0 staged",
    ]
