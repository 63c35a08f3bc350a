"""`kiosk-provision init`: flags, answers file, prompts, every validation error, safe writing."""

from __future__ import annotations

import argparse
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from kiosk.config import load_config
from kiosk.core.pin import verify_pin
from kiosk.sync.signing import generate_keypair, public_key_pem
from provisioning.cli import build_parser, main
from provisioning.init import run_init
from tests.support.provisioning import KIOSK_ID, PIN, TECHNICIAN, base_args


def test_non_interactive_happy_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ca_file: Path, province_key_file: Path
) -> None:
    cfg_path = tmp_path / "kiosk.toml"
    root_file = tmp_path / "province-root.pem"
    root_file.write_bytes(public_key_pem(generate_keypair()[1]))
    args = base_args(
        tmp_path,
        broker_url="mqtts://broker.example:8883",
        allow_plaintext="no",
        ca_file=str(ca_file),
        province_key=str(province_key_file),
        province_root_key=str(root_file),
        screen="1024x600",
    )
    assert main(["init", "--non-interactive", "--config", str(cfg_path), *args]) == 0
    assert stat.S_IMODE(cfg_path.stat().st_mode) == 0o600
    cfg = load_config(cfg_path)
    assert cfg.identity.kiosk_id == KIOSK_ID
    assert cfg.identity.area_code == "340102"
    assert cfg.identity.latitude == pytest.approx(31.88)
    assert cfg.hardware.rows == 1 and cfg.hardware.cols == 4
    assert cfg.sync.ca_file == ca_file.resolve()
    assert cfg.ui.orientation == "landscape"
    (tech,) = cfg.service.technicians
    assert tech.id == TECHNICIAN and verify_pin(PIN, tech.pin_hash)
    assert cfg.ui.service_pin_hash == ""
    out = capsys.readouterr().out
    assert "CA certificate SHA-256" in out and "Province public key SHA-256" in out
    assert "Province root key   SHA-256" in out
    assert cfg.sync.province_root_key == root_file.resolve()
    assert PIN not in out and PIN not in cfg_path.read_text(encoding="utf-8")


BAD = [
    ("kiosk_id", "AH-34-1", "--kiosk-id", "AH-<6-digit"),
    ("kiosk_id", "AH-110100-0001", "--kiosk-id", "not in Anhui"),
    ("site_name", "  ", "--site-name", "must not be empty"),
    ("site_type", "shop", "--site-type", "must be one of agency"),
    ("gps", "95,117", "--gps", "between -90 and 90"),
    ("gps", "north", "--gps", "LATITUDE,LONGITUDE"),
    ("cabinet", "box", "--cabinet", "spiral, locker"),
    ("boards", "x", "--boards", "board addresses"),
    ("boards", "0,16", "--boards", "0..15"),
    ("rows", "0", "--rows", "between 1 and 20"),
    ("cols", "ten", "--cols", "whole number"),
    ("capacity", "99", "--capacity", "between 1 and 50"),
    ("port", "", "--port", "must not be empty"),
    ("baud", "1234", "--baud", "must be one of 9600"),
    ("broker_url", "http://x", "--broker-url", "mqtt://"),
    ("allow_plaintext", "maybe", "--allow-plaintext", "yes or no"),
    ("pay_url", "ftp://x", "--pay-url", "https://"),
    ("ca_file", "/nonexistent/ca.pem", "--ca-file", "cannot read"),
    ("province_key", "/nonexistent/p.pem", "--province-key", "cannot read"),
    ("province_root_key", "/nonexistent/r.pem", "--province-root-key", "cannot read"),
    ("ca_fingerprint", "abc", "--ca-fingerprint", "SHA-256 fingerprint"),
    ("language", "fr", "--language", "zh, en"),
    ("screen", "big", "--screen", "WIDTHxHEIGHT"),
    ("screen", "100x100", "--screen", "between 320"),
    ("data_dir", "", "--data-dir", "must not be empty"),
    ("pin", "12", "--pin-file", "6 to 12 digits"),
    ("pin", "2468", "--pin-file", "6 to 12 digits, not 4"),
    ("technician", "T 42", "--technician", "letters, digits"),
]


@pytest.mark.parametrize(("field", "value", "flag", "problem"), BAD, ids=[b[0] for b in BAD])
def test_every_field_is_validated(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    field: str,
    value: str,
    flag: str,
    problem: str,
) -> None:
    cfg_path = tmp_path / "kiosk.toml"
    rc = main(
        [
            "init",
            "--non-interactive",
            "--config",
            str(cfg_path),
            *base_args(tmp_path, **{field: value}),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 2
    assert flag in out and problem in out
    assert not cfg_path.exists()


def test_the_root_key_must_not_be_the_signing_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], province_key_file: Path
) -> None:
    cfg_path = tmp_path / "kiosk.toml"
    same = str(province_key_file)
    args = base_args(tmp_path, province_key=same, province_root_key=same)
    assert main(["init", "--non-interactive", "--config", str(cfg_path), *args]) == 2
    out = capsys.readouterr().out
    assert "--province-root-key" in out and "the root key must be separate" in out
    assert not cfg_path.exists()


@pytest.mark.parametrize(
    ("over", "flag", "problem"),
    [
        (
            {"broker_url": "mqtts://b.example:8883", "allow_plaintext": "no"},
            "--ca-file",
            "required with mqtts://",
        ),
        ({"allow_plaintext": "no"}, "--broker-url", "plaintext MQTT is refused"),
        ({"cabinet": "locker"}, "--capacity", "a locker holds 1 item"),
        ({"screen": "1920x1080x"}, "--screen", "WIDTHxHEIGHT"),
    ],
)
def test_whole_config_checks_name_the_flag(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    over: dict[str, str],
    flag: str,
    problem: str,
) -> None:
    cfg_path = tmp_path / "kiosk.toml"
    rc = main(
        ["init", "--non-interactive", "--config", str(cfg_path), *base_args(tmp_path, **over)]
    )
    out = capsys.readouterr().out
    assert rc == 2 and flag in out and problem in out
    assert not cfg_path.exists() and not list(tmp_path.glob(".kiosk.toml*"))


def test_missing_required_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = base_args(tmp_path)
    i = args.index("--site-name")
    del args[i : i + 2]
    assert main(["init", "--non-interactive", "--config", str(tmp_path / "k.toml"), *args]) == 2
    assert "--site-name: required" in capsys.readouterr().out


def test_fingerprint_mismatch_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ca_file: Path
) -> None:
    args = base_args(
        tmp_path,
        broker_url="mqtts://b.example",
        allow_plaintext="no",
        ca_file=str(ca_file),
        ca_fingerprint="AB" * 32,
    )
    assert main(["init", "--non-interactive", "--config", str(tmp_path / "k.toml"), *args]) == 2
    assert "--ca-fingerprint: does not match" in capsys.readouterr().out


def test_answers_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], ca_file: Path) -> None:
    answers = tmp_path / "answers.toml"
    answers.write_text(
        f'kiosk_id = "{KIOSK_ID}"\nsite_name = "黄山风景区 南门"\nsite_type = "scenic_spot"\n'
        'cabinet = "locker"\nrows = 4\ncols = 6\ncapacity = 1\nboards = [0, 1]\n'
        'broker_url = "mqtts://broker.example:8883"\nca_file = "' + str(ca_file) + '"\n'
        'pay_url = "https://pay.example.invalid/p"\npin = "135790"\n'
        f'data_dir = "{tmp_path / "data"}"\n',
        encoding="utf-8",
    )
    cfg_path = tmp_path / "kiosk.toml"
    assert main(["init", "--answers", str(answers), "--config", str(cfg_path)]) == 0
    cfg = load_config(cfg_path)
    assert cfg.hardware.cabinet == "locker" and cfg.hardware.boards == (0, 1)
    assert cfg.service.technicians[0].id == "default"
    assert verify_pin("135790", cfg.service.technicians[0].pin_hash)
    # errors name the answers-file key; flags override the file
    answers.write_text(
        answers.read_text(encoding="utf-8") + 'language = "fr"\ncolour = "red"\n', encoding="utf-8"
    )
    rc = main(["init", "--answers", str(answers), "--config", str(tmp_path / "k2.toml")])
    out = capsys.readouterr().out
    assert rc == 2
    assert f"language in {answers} = 'fr'" in out
    assert f"colour in {answers}: unknown answer" in out
    rc = main(["init", "--answers", str(answers), "--config", str(tmp_path / "k2.toml")])
    assert rc == 2


def test_refuses_overwrite_and_keeps_backup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg_path = tmp_path / "kiosk.toml"
    cmd = ["init", "--non-interactive", "--config", str(cfg_path)]
    assert main([*cmd, *base_args(tmp_path)]) == 0
    first = cfg_path.read_bytes()
    assert main([*cmd, *base_args(tmp_path, site_name="Other")]) == 1
    assert "use --force" in capsys.readouterr().out
    assert cfg_path.read_bytes() == first
    assert main([*cmd, "--force", *base_args(tmp_path, site_name="Other")]) == 0
    backups = list(tmp_path.glob("kiosk.toml.bak-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == first
    assert stat.S_IMODE(backups[0].stat().st_mode) == 0o600
    assert load_config(cfg_path).identity.site_name == "Other"
    # a failed --force leaves the config and no extra backup
    assert main([*cmd, "--force", *base_args(tmp_path, rows="0")]) == 2
    assert load_config(cfg_path).identity.site_name == "Other"


def _scripted(answers: list[str]) -> Callable[[str], str]:
    it = iter(answers)

    def ask(prompt: str) -> str:
        return next(it)

    return ask


def test_interactive_reasks_until_valid(tmp_path: Path, ca_file: Path) -> None:
    cfg_path = tmp_path / "kiosk.toml"
    args = build_parser().parse_args(
        ["init", "--interactive", "--config", str(cfg_path), "--data-dir", str(tmp_path / "d")]
    )
    assert isinstance(args, argparse.Namespace)
    prompts = [
        "AH-1",  # bad id
        KIOSK_ID,
        "",  # empty site name: re-asked
        "合肥站",
        "station",
        "",  # address default
        "",  # gps skipped
        "vending",  # bad cabinet
        "",  # spiral
        "",  # boards 0
        "2",
        "5",
        "",  # capacity 10
        "/tmp/kiosk-board",
        "",  # baud
        "mqtt://127.0.0.1:1883",  # plaintext refused by the whole-config check -> re-ask
        "https://pay.example.invalid/p",
        "",  # ca file
        "",  # province key
        "",  # province root key
        "en",
        "800x480",
        "T0007",  # technician id (the data dir came as a flag)
        "mqtts://b.example:8883",  # re-asked after the whole-config check
        str(ca_file),  # mqtts needs a CA: re-asked
        "y",  # fingerprints confirmed
    ]
    out: list[str] = []
    rc = run_init(
        args,
        ask=_scripted(prompts),
        ask_secret=_scripted(["4321", "432100", "432100"]),
        out=out.append,
    )
    text = "\n".join(out)
    assert "AH-<6-digit" in text and "must not be empty" in text
    assert "must be one of spiral, locker" in text
    assert "6 to 12 digits, not 4" in text
    assert "Province broker URL" in text and "plaintext MQTT is refused" in text
    assert "CA certificate file" in text and "required with mqtts://" in text
    assert rc == 0
    cfg = load_config(cfg_path)
    assert cfg.sync.broker_url == "mqtts://b.example:8883"
    assert cfg.service.technicians[0].id == "T0007"


def test_interactive_success(tmp_path: Path) -> None:
    cfg_path = tmp_path / "kiosk.toml"
    args = build_parser().parse_args(
        [
            "init",
            "--interactive",
            "--config",
            str(cfg_path),
            "--allow-plaintext",
            "yes",
            "--data-dir",
            str(tmp_path / "d"),
        ]
    )
    prompts = [
        KIOSK_ID,
        "合肥站",
        "station",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "/tmp/kiosk-board",
        "",
        "mqtt://127.0.0.1:1883",
        "https://pay.example.invalid/p",
        "",
        "",
        "",
        "",
        "",
    ]
    rc = run_init(
        args,
        ask=_scripted([*prompts, ""]),  # technician id: default
        ask_secret=_scripted(["432100", "432100"]),
        out=lambda s: None,
    )
    assert rc == 0
    cfg = load_config(cfg_path)
    assert cfg.hardware.port == "/tmp/kiosk-board" and cfg.ui.language == "zh"
