"""Service PINs in kiosk-provision: never a flag value; `kiosk-provision pin` sets, replaces
and removes one technician's PIN; a field (mqtts) config refuses the demo PIN."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest

from kiosk.config import load_config
from kiosk.core.pin import DEMO_PIN, verify_pin
from provisioning.cli import main
from provisioning.init import ENV_PIN
from provisioning.pins import run_pin
from tests.support.provisioning import PIN, TECHNICIAN, base_args


def _without_pin_file(args: list[str]) -> list[str]:
    i = args.index("--pin-file")
    return args[:i] + args[i + 2 :]


def test_the_pin_is_not_a_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [*_without_pin_file(base_args(tmp_path)), "--pin", "802461"]
    with pytest.raises(SystemExit) as e:
        main(["init", "--non-interactive", "--config", str(tmp_path / "k.toml"), *args])
    assert e.value.code == 2
    assert "unrecognized arguments: --pin" in capsys.readouterr().err


def test_pin_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "k.toml"
    args = _without_pin_file(base_args(tmp_path))
    assert main(["init", "--non-interactive", "--config", str(cfg), *args]) == 2
    assert "--pin-file: required" in capsys.readouterr().out
    monkeypatch.setenv(ENV_PIN, "975310")
    assert main(["init", "--non-interactive", "--config", str(cfg), *args]) == 0
    assert verify_pin("975310", load_config(cfg).service.technicians[0].pin_hash)
    monkeypatch.setenv(ENV_PIN, "1234")
    cfg.unlink()
    assert main(["init", "--non-interactive", "--config", str(cfg), *args]) == 2
    assert f"${ENV_PIN} = (hidden): a service PIN is 6 to 12 digits" in capsys.readouterr().out


def _pin_args(cfg: Path, *extra: str) -> argparse.Namespace:
    from provisioning.cli import build_parser

    ns = build_parser().parse_args(["pin", "--config", str(cfg), *extra])
    assert isinstance(ns, argparse.Namespace)
    return ns


def _asks(*answers: str) -> Callable[[str], str]:
    it = iter(answers)
    return lambda _prompt: next(it)


def test_set_replace_and_remove_technicians(
    make_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_config()
    out: list[str] = []
    pin_file = tmp_path / "t2.pin"
    pin_file.write_text("11223344\n", encoding="utf-8")
    assert (
        run_pin(_pin_args(cfg, "--id", "T0099", "--pin-file", str(pin_file)), out=out.append) == 0
    )
    techs = {t.id: t.pin_hash for t in load_config(cfg).service.technicians}
    assert set(techs) == {TECHNICIAN, "T0099"}
    assert verify_pin(PIN, techs[TECHNICIAN]) and verify_pin("11223344", techs["T0099"])
    assert "11223344" not in "\n".join(out) and "11223344" not in cfg.read_text(encoding="utf-8")
    # a prompt (twice, no echo) replaces T0042's PIN
    args = _pin_args(cfg, "--id", TECHNICIAN, "--interactive")
    assert run_pin(args, ask_secret=_asks("123", "55667788", "55667788"), out=out.append) == 0
    assert "6 to 12 digits, not 3" in "\n".join(out)
    techs = {t.id: t.pin_hash for t in load_config(cfg).service.technicians}
    assert verify_pin("55667788", techs[TECHNICIAN]) and not verify_pin(PIN, techs[TECHNICIAN])
    assert run_pin(_pin_args(cfg, "--id", "T0099", "--remove"), out=out.append) == 0
    assert [t.id for t in load_config(cfg).service.technicians] == [TECHNICIAN]


def test_no_terminal_and_no_pin_is_refused(
    make_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_config()
    before = cfg.read_bytes()
    monkeypatch.delenv(ENV_PIN, raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    out: list[str] = []
    assert run_pin(_pin_args(cfg, "--id", "T0100"), out=out.append) == 2
    assert f"--pin-file FILE or ${ENV_PIN}" in out[-1]
    assert cfg.read_bytes() == before


def test_field_config_refuses_the_demo_pin(
    make_config: Callable[..., Path],
    ca_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = make_config(
        broker_url="mqtts://broker.example:8883", allow_plaintext="no", ca_file=str(ca_file)
    )
    before = cfg.read_bytes()
    monkeypatch.setenv(ENV_PIN, DEMO_PIN)
    out: list[str] = []
    assert run_pin(_pin_args(cfg, "--id", "T0100"), out=out.append) == 2
    text = "\n".join(out)
    assert "service.technicians[2].pin_hash" in text and "published demo PIN" in text
    assert cfg.read_bytes() == before
    # and init says so by the name the technician used
    args = base_args(
        Path(str(cfg.parent)),
        broker_url="mqtts://broker.example:8883",
        allow_plaintext="no",
        ca_file=str(ca_file),
        pin=DEMO_PIN,
    )
    rc = main(["init", "--non-interactive", "--config", str(cfg.parent / "k2.toml"), *args])
    assert rc == 2
    assert "--pin-file" in capsys.readouterr().out
