"""argparse's own words (usage errors, help headings) follow the user's language like every
other message of `kiosk` and `kiosk-provision` (issue 17 req 8; kiosk/cli_words.py)."""

from __future__ import annotations

import pytest

from kiosk.cli import main as kiosk_main
from provisioning.cli import main as provision_main


def _usage_error(capsys: pytest.CaptureFixture[str], main: object, *argv: str) -> str:
    assert callable(main)
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    assert e.value.code == 2
    return capsys.readouterr().err


def test_a_usage_error_in_chinese_says_what_was_wrong_and_where_help_is(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KIOSK_LANG", "zh")
    err = _usage_error(capsys, kiosk_main, "board", "status", "--bogus")
    assert "用法：kiosk" in err and "无法识别的参数：--bogus" in err, err
    assert "运行 `kiosk --help` 查看用法" in err and "error:" not in err, err
    err = _usage_error(capsys, kiosk_main, "config", "frob")
    assert "无效的选项 'frob'" in err and "可选：'check'" in err, err
    err = _usage_error(capsys, provision_main, "selftest", "--nope")
    assert "kiosk-provision：参数有误" in err and "--nope" in err, err


def test_the_lang_flag_applies_to_an_error_on_the_same_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KIOSK_LANG", "en")
    err = _usage_error(capsys, kiosk_main, "--lang", "zh", "config", "frob")
    assert "参数有误" in err, err
    monkeypatch.setenv("KIOSK_LANG", "zh")
    err = _usage_error(capsys, kiosk_main, "--lang=en", "config", "frob")
    assert "error: argument ACTION: invalid choice: 'frob'" in err, err


def test_english_stays_argparse_english(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KIOSK_LANG", "en")
    err = _usage_error(capsys, kiosk_main, "board", "status", "--bogus")
    assert "usage: kiosk" in err and "error: unrecognized arguments: --bogus" in err, err
