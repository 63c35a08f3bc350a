"""`kiosk-provision selftest` against the in-process board emulator (emu://, time_scale 0.01)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from kiosk.clock import SystemClock
from kiosk.config import load_config
from kiosk.store import open_store
from kiosk.sync.outbox import Outbox
from kiosk.sync.topics import Topics
from provisioning.cli import main
from provisioning.selftest import ProgressBar, check_clock
from tests.support.store import seed_store

SKIP = ["--skip", "broker", "--skip", "font", "--skip", "screen"]


def test_jammed_slot_fails_and_is_named(
    make_config: Callable[..., Path],
    emulator: Callable[..., str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = emulator(jammed={2})
    cfg_path = make_config(port="/dev/null-not-used")
    report = tmp_path / "report.json"
    rc = main(
        [
            "selftest",
            "--config",
            str(cfg_path),
            "--port",
            url,
            "--slot-timeout",
            "5",
            "--report",
            str(report),
            "--drop",
            "--yes",
            *SKIP,
        ]
    )
    out = capsys.readouterr()
    assert rc == 1
    data = json.loads(report.read_text())
    assert data["ok"] is False
    # no planogram in the store yet: the slot is named by its bus address
    assert data["failed_slots"] == [
        {"board": "board0", "slot": 2, "slot_no": None, "outcome": "JAMMED"}
    ]
    assert "board0.slots" in data["failed"]
    assert "address 2 JAMMED" in out.out and "FAIL" in out.out
    assert "board0 slots [" in out.err  # the progress bar
    cfg = load_config(cfg_path)
    assert (cfg.store.data_dir / "selftest" / "selftest-latest.json").exists()
    store = open_store(cfg.store.data_dir)
    try:
        recs = Outbox(store, Topics(cfg.identity.kiosk_id), SystemClock()).records()
    finally:
        store.close()
    assert [r.kind for r in recs] == ["selftest"]
    record = json.loads(recs[0].payload)
    assert record["event_id"].startswith(f"selftest-{cfg.identity.kiosk_id}-")
    body = record["body"]
    assert body["source"] == "provisioning" and body["ok"] is False
    assert body["started_at"] <= body["finished_at"] and body["technician"] == ""
    results = {s["slot_no"]: s["result"] for s in body["slots"]}
    assert results == {0: "ok", 1: "ok", 2: "jammed", 3: "ok"}, body
    assert "not in the planogram" in body["slots"][2]["detail"]  # no planogram in this store


def test_all_good_passes(
    make_config: Callable[..., Path],
    emulator: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = emulator()
    cfg_path = make_config(port=url)
    capsys.readouterr()
    rc = main(["selftest", "--config", str(cfg_path), "--slot-timeout", "5", "--json", *SKIP])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0, data
    names = {c["name"]: c["status"] for c in data["checks"]}
    assert names["board0"] == "ok" and names["board0.slots"] == "ok"
    assert names["clock"] == "ok" and names["disk"] == "ok"
    assert names["screen"] == "skip"


def test_unreachable_board_and_broker_fail(
    make_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg_path = make_config(port="emu://nobody")
    capsys.readouterr()
    rc = main(
        [
            "selftest",
            "--config",
            str(cfg_path),
            "--connect-timeout",
            "0.3",
            "--json",
            "--skip",
            "font",
            "--no-queue",
        ]
    )
    data = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert set(data["failed"]) >= {"board", "broker"}


def test_progress_bar_and_clock() -> None:
    s = io.StringIO()
    bar = ProgressBar(4, "slots", s, width=8)
    bar.update("slot 0: DELIVERED")
    bar.update("slot 1: JAMMED")
    assert s.getvalue().splitlines()[-1].startswith("slots [####....]   2/4  slot 1: JAMMED")
    assert check_clock(1_500_000_000).status == "fail"
    assert check_clock().status == "ok"


def test_jammed_slot_is_named_by_its_planogram_number(
    make_config: Callable[..., Path],
    emulator: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The number on the restock screen (12号) is the number the self-test says (issue 17)."""
    url = emulator(jammed={2})
    cfg_path = make_config(port="/dev/null-not-used")
    data = load_config(cfg_path).store.data_dir
    levels0 = seed_store(data)  # demo planogram: address 2 is slot 12
    argv = ["selftest", "--config", str(cfg_path), "--port", url, "--slot-timeout", "5", *SKIP]
    rc = main([*argv, "--drop", "--yes"])
    out = capsys.readouterr()
    assert rc == 1
    assert "failed: 12 JAMMED (address 2)" in out.out, out.out
    assert "slot 12 (address 2): JAMMED" in out.err  # the progress line
    assert "ONE ITEM DROPS FROM EACH" in out.out  # said before the first slot ran
    # issue 17 req. 6: every item that dropped came off the kiosk's count (a test vend)
    store = open_store(data)
    try:
        levels = store.stock.levels()
    finally:
        store.close()
    changed = {n: levels0[n] - levels[n] for n in levels0 if levels[n] != levels0[n]}
    assert changed == {n: 1 for n in (10, 11, 13) if levels0[n] > 0}, changed


def test_default_checks_slots_without_running_them(
    make_config: Callable[..., Path],
    emulator: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = emulator(jammed={2})  # a jam shows only when the motor runs
    cfg_path = make_config(port=url)
    seed_store(load_config(cfg_path).store.data_dir)
    capsys.readouterr()
    rc = main(["selftest", "--config", str(cfg_path), "--json", "--no-queue", *SKIP])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0, data
    (slots,) = [c for c in data["checks"] if c["name"] == "board0.slots"]
    assert "checked without running" in slots["detail"] and slots["data"]["mode"] == "check"
    results = slots["data"]["results"]
    assert [(r["slot_no"], r["outcome"]) for r in results] == [
        (10, "READY"),
        (11, "READY"),
        (12, "READY"),
        (13, "READY"),
    ]
