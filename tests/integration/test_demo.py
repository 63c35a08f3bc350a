"""`kiosk demo --headless` end to end, and its clean shutdown on SIGINT midway.

Runs `python -m kiosk.sim.demo` as a child (real Mosquitto, province simulator, board emulator on a
pty, the kiosk), then checks the printed summary, the province's database, the screenshots,
every MQTT message that crossed the demo's broker against docs/mqtt-api.yaml (`--record-mqtt`,
tests/support/mqtt_record.py), and that no process the demo started is still alive
(os.kill(pid, 0)).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from kiosk.core.pin import DEMO_PIN, verify_pin
from kiosk.sim.board_emulator import read_physical_log
from kiosk.sim.broker import find_mosquitto
from kiosk.sim.mqtt_tap import load_recording
from kiosk.sim.province import chain_reports, open_db, sales_report
from tests.support.mqtt_record import check_messages, format_violations

ROOT = Path(__file__).parents[2]
DEMO_TIMEOUT = 110.0
KIOSK_ID = "AH-340100-0001"


@pytest.fixture(autouse=True)
def _needs_mosquitto() -> None:
    find_mosquitto()  # fails with instructions when missing; never skips


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK_CRASH")}
    env["PYTHONPATH"] = str(ROOT)
    env.pop("DISPLAY", None)
    env["SDL_VIDEODRIVER"] = "dummy"
    env["SDL_AUDIODRIVER"] = "dummy"
    return env


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped by its parent) is not running
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children_of_demo(workdir: Path, exclude: int = 0) -> list[int]:
    """Every process the demo started that can still be seen: its kiosk/emulator children
    (command line mentions the work dir) and the broker (its config is in the work dir)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(d.name) != exclude and str(workdir) in cmd and _alive(int(d.name)):
            pids.append(int(d.name))
    return pids


@pytest.mark.parametrize("board", ["kiosk", "vmc"])
def test_headless_demo_makes_three_sales(tmp_path: Path, board: str) -> None:
    """The same demo and SUMMARY on our own board and on a VMC (`--board vmc`)."""
    work = tmp_path / "demo"
    record = tmp_path / "mqtt.jsonl"
    t0 = time.monotonic()
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "kiosk.sim.demo",
            "--headless",
            "--workdir",
            str(work),
            "--board",
            board,
            "--record-mqtt",
            str(record),
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
    )
    elapsed = time.monotonic() - t0
    out = p.stdout
    assert p.returncode == 0, f"exit {p.returncode}\n{out}\n{p.stderr}"
    print(f"demo took {elapsed:.1f} s")
    m = re.search(
        r"SUMMARY orders=(\d+) refunds=(\d+) offline_code_sales=(\d+) "
        r"province_sale_records=(\d+) chain=(\w+) screenshots=(\d+)",
        out,
    )
    assert m is not None, out
    orders, refunds, offline, records, chain, shots = m.groups()
    assert (orders, refunds, offline, records, chain) == ("3", "1", "1", "3", "OK"), out
    assert "pay at http://127.0.0.1:" in out
    assert "nothing left running" in out, out
    # a service PIN of its own (its config is mqtts://, which refuses the published demo PIN)
    pin = re.search(r"service PIN\s+(\d{6}) ", out)
    assert pin is not None and pin.group(1) != DEMO_PIN, out
    techs = tomllib.loads((work / "kiosk.toml").read_text(encoding="utf-8"))["service"]
    assert verify_pin(pin.group(1), techs["technicians"][0]["pin_hash"])

    # The province really has the three sale records, chained, with the jam's refund.
    db = open_db(work / "province")
    try:
        rep = sales_report(db)
        chains = chain_reports(db)
    finally:
        db.close()
    assert [c.kiosk_id for c in chains] == [KIOSK_ID]
    assert chains[0].records == 3 and chains[0].ok
    assert rep.by_kiosk[0][1] == 3
    assert rep.refund_due_fen > 0

    # The cabinet dropped exactly the three delivered products, one motor run each.
    physical = read_physical_log(work / "board-physical.jsonl")
    assert sum(1 for e in physical if e["event"] == "motor_run" and e["dropped"]) == 3, physical

    # Screenshots of the main screens.
    pngs = sorted(x.name for x in (work / "screens").glob("*.png"))
    assert int(shots) == len(pngs) >= 10, pngs
    for screen in ("payment", "dispensing", "done", "problem", "offline-code"):
        assert any(screen in n for n in pngs), (screen, pngs)
    assert all((work / "screens" / n).stat().st_size > 1000 for n in pngs)

    # Every message the kiosk and the province exchanged is what docs/mqtt-api.yaml says.
    messages = load_recording(record)
    topics = {m.topic for m in messages}
    for kind in ("events/sale", "events/refund_due", "status", "reported", "acks"):
        assert f"kiosk/v1/{KIOSK_ID}/{kind}" in topics, (kind, sorted(topics))
    violations = check_messages(messages)
    assert violations == [], format_violations(violations, "in the headless demo")

    # Nothing left: no process, no pty symlink.
    assert _children_of_demo(work) == []
    assert not (work / "board").exists()


def test_sigint_midway_stops_everything(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kiosk.sim.demo", "--headless", "--workdir", str(work)],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    seen: list[int] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            lines.append(line)
            if "Purchase 2" in line or time.monotonic() > deadline:
                break
        assert any("Purchase 2" in ln for ln in lines), "".join(lines)
        seen = _children_of_demo(work, exclude=proc.pid)
        assert len(seen) >= 2, seen  # at least the broker and the emulator are running
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        stop_s = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(lines) + rest
    print(f"stopped {stop_s:.1f} s after SIGINT")
    assert proc.returncode == 130, out
    assert "SIGINT: stopping everything" in out, out
    assert "nothing left running" in out, out
    assert [pid for pid in seen if _alive(pid)] == []
    assert _children_of_demo(work) == []
    assert not (work / "board").exists()
    assert stop_s < 20
