"""The registration token never goes on a command line (issue 14 req. 5): `kiosk-provision
register` reads it from a file, $KIOSK_REGISTRATION_TOKEN, a prompt that does not echo, or a
piped standard input; `--token` is refused. The end-to-end registration with a token file and
the environment is in test_register_mqtt.py."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from provisioning.register import TOKEN_ENV, RegisterError, read_token
from tests.support.paths import ROOT

TOKEN = "Zq3-vKp9_wXy7LmN2rT4"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_from_a_file_first_non_empty_line(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text(f"\n  {TOKEN}  \nignored\n")
    assert read_token(str(f), environ={TOKEN_ENV: "other"}) == TOKEN
    assert read_token("-", environ={}, stdin=io.StringIO(TOKEN + "\n")) == TOKEN


def test_from_the_environment_then_the_prompt_then_stdin() -> None:
    assert read_token(None, environ={TOKEN_ENV: TOKEN}, stdin=Tty()) == TOKEN
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return TOKEN

    assert read_token(None, environ={}, stdin=Tty(), ask=ask) == TOKEN
    assert asked and "token" in asked[0]
    assert read_token(None, environ={}, stdin=io.StringIO(TOKEN + "\n")) == TOKEN


def test_missing_or_empty_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RegisterError, match="cannot read the token file"):
        read_token(str(tmp_path / "nope"), environ={})
    (tmp_path / "empty").write_text("\n \n")
    with pytest.raises(RegisterError, match="no registration token in the token file"):
        read_token(str(tmp_path / "empty"), environ={})
    with pytest.raises(RegisterError, match="no registration token in standard input"):
        read_token(None, environ={}, stdin=io.StringIO(""))


def test_token_on_the_command_line_is_refused_and_not_printed(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "provisioning.cli", "register", "--token", TOKEN],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert r.returncode == 2, r
    assert "--token is refused" in r.stdout and "--token-file" in r.stdout
    assert TOKEN not in r.stdout + r.stderr
