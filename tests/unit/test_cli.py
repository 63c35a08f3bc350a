"""The `kiosk` command as a technician runs it: a real subprocess, real files."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from kiosk import __version__
from kiosk.log import log_event, setup_logging

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "KIOSK_CONFIG"}
    full_env.update(PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "kiosk.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        cwd=ROOT,
    )


def test_help_and_version() -> None:
    r = run("--help")
    assert r.returncode == 0
    for sub in ("config", "catalog", "planogram", "store"):
        assert sub in r.stdout
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"kiosk {__version__}"


def test_no_command_prints_help_and_fails() -> None:
    r = run()
    assert r.returncode == 2
    assert "usage: kiosk" in r.stdout


def test_config_check_demo_ok() -> None:
    r = run("config", "check", "--config", "kiosk/data/demo.toml")
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout and "AH-340100-0001" in r.stdout


def test_config_check_three_mistakes(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        '[identity]\nkiosk_id = "AH-341524-0001"\nsite_name = "x"\nsite_type = "hospitl"\n'
        'area_code = "341524"\n[hardware]\nbaud = 12345\n[sync]\nbroker_url = "mqtt://h:1"\n'
        "allow_plaintext = true\n[ui]\nlanguag = 'en'\n"
    )
    r = run("config", "check", "--config", str(cfg))
    assert r.returncode == 1
    lines = [ln.strip() for ln in r.stderr.splitlines() if ln.startswith("  ")]
    assert len(lines) == 3, r.stderr
    assert lines[0].startswith(f"{cfg}, line 4: identity.site_type = 'hospitl': must be one of")
    assert lines[1].startswith(f"{cfg}, line 7: hardware.baud = 12345: must be one of")
    assert lines[2].startswith(f"{cfg}, line 12: ui.languag = 'en': unknown key")


def test_config_from_environment(tmp_path: Path) -> None:
    r = run("config", "check", env={"KIOSK_CONFIG": str(tmp_path / "none.toml")})
    assert r.returncode == 1
    assert f"{tmp_path / 'none.toml'}: file not found." in r.stderr
    assert "kiosk-provision init" in r.stderr  # what to do on a new kiosk


def _demo_config(tmp_path: Path) -> Path:
    text = (ROOT / "kiosk/data/demo.toml").read_text(encoding="utf-8")
    text = text.replace(
        'data_dir = "~/.local/share/kiosk-demo"', f'data_dir = "{tmp_path / "data"}"'
    )
    text = text.replace('device_secret_file = "demo-device-secret"', "")
    cfg = tmp_path / "kiosk.toml"
    cfg.write_text(text, encoding="utf-8")
    return cfg


def test_seed_summary_and_planogram_round_trip(tmp_path: Path) -> None:
    cfg = _demo_config(tmp_path)
    r = run("store", "seed-demo", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "data" / "kiosk.db").is_file()
    assert len(list((tmp_path / "data" / "images").glob("*.png"))) >= 24
    r = run("catalog", "summary", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "¥" in r.stdout
    out = tmp_path / "p.csv"
    r = run("planogram", "export", "--config", str(cfg), "--out", str(out))
    assert r.returncode == 0, r.stderr
    text = out.read_text(encoding="utf-8")
    # a BOM so that Excel shows the names; the product names for the reader
    assert text.startswith(
        "\ufeffslot,board,address,kind,row,col,capacity,product_id,product_name\n"
    )
    assert "六安瓜片" in text
    # the same file as Excel on a Chinese Windows saves it (GBK) imports too
    out.write_bytes(text.lstrip("\ufeff").encode("gbk"))
    r = run("planogram", "import", str(out), "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "planogram version 2 applied: 60 slots" in r.stdout
    assert "planogram.imported" not in r.stderr  # one line on the terminal, not two
    r = run("planogram", "import", str(out), "--config", str(cfg), env={"KIOSK_LANG": "zh"})
    assert r.returncode == 0, r.stderr
    assert "货道表第 3 版已生效：60 个货道" in r.stdout and "applied" not in r.stdout
    assert "planogram.imported" not in r.stderr


def test_planogram_import_bad_rows_applies_nothing(tmp_path: Path) -> None:
    cfg = _demo_config(tmp_path)
    assert run("store", "seed-demo", "--config", str(cfg)).returncode == 0
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "slot,board,address,kind,row,col,capacity,product_id\n"
        "10,1,0,spiral,1,0,ten,\n"
        "11,1,1,drawer,1,1,8,\n"
        "12,1,2,spiral,1,2,8,NO-SUCH-PRODUCT\n"
    )
    r = run("planogram", "import", str(bad), "--config", str(cfg))
    assert r.returncode == 1
    assert "row 2: capacity must be a whole number, got 'ten'" in r.stderr
    assert "row 3: kind must be spiral or locker, got 'drawer'" in r.stderr
    assert "row 4: product_id 'NO-SUCH-PRODUCT' is not in the catalog" in r.stderr
    r = run("planogram", "export", "--config", str(cfg))
    assert r.stdout.count("\n") == 61  # header + the 60 demo slots, untouched


def test_provision_planogram_delegates(tmp_path: Path) -> None:
    cfg = _demo_config(tmp_path)
    assert run("store", "seed-demo", "--config", str(cfg)).returncode == 0
    r = subprocess.run(
        [sys.executable, "-m", "provisioning.cli", "planogram", "export", "--config", str(cfg)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("slot,board,")


def test_log_lines_are_key_value_and_redact_secrets() -> None:
    buf = io.StringIO()
    setup_logging("info", "kv", stream=buf)
    log = logging.getLogger("kiosk.test")
    log_event(log, "pay.url", order="K1 2", device_secret="abc123", pin="0000", amount_fen=1280)
    line = buf.getvalue().strip()
    assert "\n" not in line
    assert "event=pay.url" in line and 'order="K1 2"' in line and "amount_fen=1280" in line
    assert "abc123" not in line and "0000" not in line
    assert "device_secret=***" in line and "pin=***" in line
    buf2 = io.StringIO()
    setup_logging("info", "json", stream=buf2)
    log_event(log, "x", token="t0ps3cret", slot=12)
    rec = json.loads(buf2.getvalue())
    assert rec["token"] == "***" and rec["slot"] == 12 and rec["level"] == "info"
    setup_logging("warning", "kv", stream=io.StringIO())


def test_log_fields_never_clobber_standard_keys_and_redaction_is_by_word() -> None:
    buf = io.StringIO()
    setup_logging("info", "json", stream=buf)
    log = logging.getLogger("kiosk.test")
    log_event(log, "x", event="door", level=3, mapping="m", shipping="s", pin_hash="h", sig="q")
    rec = json.loads(buf.getvalue())
    assert rec["event"] == "x" and rec["level"] == "info"
    assert rec["field_event"] == "door" and rec["field_level"] == 3
    assert rec["mapping"] == "m" and rec["shipping"] == "s"
    assert rec["pin_hash"] == "***" and rec["sig"] == "***"
    setup_logging("warning", "kv", stream=io.StringIO())


def test_seed_demo_on_a_full_disk_says_so_without_a_traceback(tmp_path: Path) -> None:
    """A file-size limit stands in for a full disk (the same error reaches SQLite and Python:
    writes fail; SIGXFSZ ignored). The command names the problem and what to do."""
    cfg = _demo_config(tmp_path)
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))\n"
        "from kiosk.cli import main\n"
        f"sys.exit(main(['store', 'seed-demo', '--config', {str(cfg)!r}]))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert "kiosk store seed-demo: the disk is full in" in r.stderr, r.stderr
    assert "run it again" in r.stderr
