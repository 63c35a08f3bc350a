"""Asset label (PNG size, QR content, PDF), status sections, and the systemd unit install."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from provisioning.cli import main
from tests.support.provisioning import KIOSK_ID


def test_label_png_qr_and_pdf(make_config: Callable[..., Path], tmp_path: Path) -> None:
    cfg = make_config()
    stem = tmp_path / "out" / "label"
    assert (
        main(
            [
                "label",
                "--config",
                str(cfg),
                "--out",
                str(stem),
                "--url",
                "https://kiosk.example/k/{kiosk_id}",
            ]
        )
        == 0
    )
    img = Image.open(stem.with_suffix(".png"))
    assert img.size == (591, 354)
    codes = zxingcpp.read_barcodes(img)
    assert [c.text for c in codes] == [f"https://kiosk.example/k/{KIOSK_ID}"]
    assert stem.with_suffix(".pdf").read_bytes().startswith(b"%PDF")


def test_status_sections_offline_board(
    make_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = make_config(port="emu://nobody-here")
    assert main(["status", "--config", str(cfg), "--timeout", "0.3"]) == 0
    out = capsys.readouterr().out
    for title in (
        "IDENTITY",
        "REGISTRATION",
        "BROKER",
        "QUEUE",
        "BOARD",
        "STOCK",
        "LAST SALE",
        "SOFTWARE",
    ):
        assert f"== {title}" in out
    assert KIOSK_ID in out
    assert "not registered" in out
    assert "offline" in out
    assert "NOT reachable" in out


def test_status_with_board_and_store(
    make_config: Callable[..., Path],
    emulator: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kiosk.config import load_config
    from kiosk.store import open_store

    url = emulator()
    cfg_path = make_config(port=url)
    open_store(load_config(cfg_path).store.data_dir).close()
    assert main(["status", "--config", str(cfg_path), "--timeout", "3"]) == 0
    out = capsys.readouterr().out
    assert "online at emu://" in out and "4 slots" in out
    assert "waiting" in out  # outbox depth read from the store


def test_install_service(make_config: Callable[..., Path], tmp_path: Path) -> None:
    cfg = make_config()
    dest = tmp_path / "units"
    assert (
        main(
            [
                "install-service",
                "--config",
                str(cfg),
                "--dest",
                str(dest),
                "--exe",
                "/opt/kiosk/venv/bin/kiosk",
                "--plain",
            ]
        )
        == 0
    )
    unit = (dest / "kiosk.service").read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=30",
        "Restart=on-failure",
        "User=kiosk",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ReadWritePaths={tmp_path / 'data'}",
        f"ExecStart=/opt/kiosk/venv/bin/kiosk run --config {cfg.resolve()}",
    ):
        assert line in unit.splitlines()
    assert "dialout" in next(ln for ln in unit.splitlines() if ln.startswith("Supplementary"))


def test_install_service_writes_the_exe_it_was_given_even_with_a_kiosk_on_path(
    make_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "bin"
    other.mkdir()
    (other / "kiosk").write_text("#!/bin/sh\n")
    (other / "kiosk").chmod(0o755)
    monkeypatch.setenv("PATH", f"{other}:{os.environ.get('PATH', '')}")
    cfg = make_config()
    dest = tmp_path / "units"
    target = "/opt/kiosk/releases/9.9.9/venv/bin/kiosk"  # not there yet
    argv = ["install-service", "--config", str(cfg), "--dest", str(dest), "--exe", target]
    assert main([*argv, "--plain"]) == 0
    unit = (dest / "kiosk.service").read_text()
    assert f"ExecStart={target} run --config {cfg.resolve()}" in unit.splitlines()


@pytest.mark.parametrize("flag", [[], ["--supervised"]])
def test_install_service_runs_the_update_supervisor_by_default(
    make_config: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flag: list[str],
) -> None:
    """Under the plain unit a staged release would stay staged: the supervised unit is the
    default (`--supervised` still accepted), `--plain` the exception."""
    cfg = make_config()
    dest = tmp_path / "units"
    argv = ["install-service", "--config", str(cfg), "--dest", str(dest), *flag]
    assert main(argv) == 0
    unit = (dest / "kiosk.service").read_text().splitlines()
    c = cfg.resolve()
    want = (
        f"ExecStart=/usr/bin/python3 -I /opt/kiosk/supervisor.py --config {c} -- run --config {c}"
    )
    assert want in unit
    assert f"ReadWritePaths={tmp_path / 'data'} /opt/kiosk" in unit
    out = capsys.readouterr().out
    assert "update install-supervisor" in out and "/opt/kiosk/current" in out
    if flag:
        with pytest.raises(SystemExit):  # one or the other
            main([*argv, "--plain"])
