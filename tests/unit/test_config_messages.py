"""The config's problems and `kiosk-provision init` in the user's words (issue 17 req. 8): every
message in Chinese and English with the same fields, every key the code uses translated, the
line of each key found, and the real commands fed broken input in both languages: each problem
names the file, its line and the key, in Chinese with no English rule sentence, and no
traceback."""

from __future__ import annotations

import os
import re
import string
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path

import pytest

from kiosk import textfile
from kiosk.config import ConfigError, load_config
from kiosk.config_text import CONFIG_MESSAGES, key_lines
from kiosk.hardware.cli_text import BOARD_MESSAGES
from provisioning.cli import main as provision
from provisioning.init_text import INIT_MESSAGES
from tests.support.config import kiosk_config, render_config
from tests.support.paths import ROOT
from tests.support.provisioning import base_args

TABLES: dict[str, Mapping[str, tuple[str, str]]] = {
    "kiosk/config.py": CONFIG_MESSAGES,
    "provisioning/init.py": INIT_MESSAGES,
}
CJK = re.compile(r"[\u4e00-\u9fff\uff08\uff09\uff1a]")  # Han, and full-width （）：
# the words of an English rule sentence: none may be left in a Chinese problem line
ENGLISH = re.compile(r"\b(must|unknown|required|allowed|refused|line|missing|not)\b")


def _fields(text: str) -> set[str]:
    return {f"{name}!{conv}" for _, name, _, conv in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("module", TABLES)
def test_every_message_in_both_languages_with_the_same_fields(module: str) -> None:
    for key, (zh, en) in TABLES[module].items():
        assert _fields(zh) == _fields(en), key
        assert CJK.search(zh), (key, zh)  # a missing translation (English copied) fails
        assert not CJK.search(en), (key, en)


@pytest.mark.parametrize("module", TABLES)
def test_every_key_the_code_uses_is_worded_and_every_word_used(module: str) -> None:
    source = (ROOT / module).read_text(encoding="utf-8")
    table = TABLES[module]
    used = set(
        re.findall(r'(?:_p|_bad|said|_regex\(.*?,|_check\(.*?,)\(?\s*"([a-z0-9_]+)"', source)
    )
    used |= set(re.findall(r'"(prompt_[a-z_]+)"', source))
    assert used, module
    assert used <= set(table), sorted(used - set(table))
    quoted = set(re.findall(r'"([a-z0-9_]+)"', source))
    dynamic = ("fp_", "what_")  # said(f"fp_{field}"): province_key, province_root_key
    unused = {k for k in table if k not in quoted and not k.startswith(dynamic)}
    assert not unused, sorted(unused)


def test_key_lines() -> None:
    text = (
        "# a comment = no key\n"  # 1
        "[identity]\n"  # 2
        'kiosk_id = "AH-340102-0007"\n'  # 3
        'address = """\n'  # 4
        "rows = 5\n"  # 5: inside the string
        '"""\n'  # 6
        "[hardware]  # the cabinet\n"  # 7
        "rows = 0\n"  # 8
        "[[board]]\n"  # 9
        "address = 0\n"  # 10
        "[[board]]\n"  # 11
        "  port = '/dev/ttyUSB1'\n"  # 12
        "ui.width = 800\n"  # 13: a dotted key inside [[board]] 2
    )
    lines = key_lines(text)
    assert lines["identity"] == 2 and lines["identity.kiosk_id"] == 3
    assert lines["identity.address"] == 4 and "identity.rows" not in lines
    assert lines["hardware"] == 7 and lines["hardware.rows"] == 8
    assert lines["board[1].address"] == 10 and lines["board[2].port"] == 12
    assert lines["board[2].ui.width"] == 13


def _run(module: str, *args: str, lang: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KIOSK_CONFIG", "LANGUAGE")}
    env.update(PYTHONPATH=str(ROOT), LANG="C.UTF-8", LC_ALL="C.UTF-8", KIOSK_LANG=lang)
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
    )


def _problem_lines(out: str) -> list[str]:
    return [ln.strip() for ln in out.splitlines() if ln.startswith("  ")]


def test_a_config_with_many_bad_fields_in_both_languages(tmp_path: Path) -> None:
    """`kiosk config check` on per-key mistakes and `kiosk run` on keys that contradict each
    other (checked once every key is fine): each problem line names the file, the line of its
    key and the key, in the chosen language."""
    bad = kiosk_config(
        port=tmp_path / "board",
        data_dir=tmp_path / "data",
        identity={"kiosk_id": "AH-3401-1"},
        hardware={"rows": 0, "baud": 1234, "cabinet": "drawer", "languag": 1},
        ui={"orientation": "sideways"},
    )
    fields = render_config(bad) + '\n[[board]]\naddress = 16\nprotocol = "kiosk"\n'
    cross = kiosk_config(
        port=tmp_path / "board",
        data_dir=tmp_path / "data",
        hardware={"cabinet": "locker", "default_capacity": 5},
        ui={"width": 1920, "height": 1080, "idle_timeout_s": 120, "dim_after_s": 60},
    )
    paths = {"fields": tmp_path / "fields.toml", "cross": tmp_path / "cross.toml"}
    paths["fields"].write_text(fields, encoding="utf-8")
    paths["cross"].write_text(render_config(cross), encoding="utf-8")
    commands = {"fields": ("config", "check"), "cross": ("run", "--headless")}
    runs = [  # 4 short processes at once
        (case, lang, _run("kiosk.cli", *commands[case], "--config", str(path), lang=lang))
        for case, path in paths.items()
        for lang in ("zh", "en")
    ]
    for case, lang, proc in runs:
        out, _ = proc.communicate(timeout=300)  # generous: a loaded 2-core box
        assert "Traceback" not in out and proc.returncode in (1, 2), (case, lang, out)
        path = paths[case]
        lines = key_lines(path.read_text(encoding="utf-8"))
        found = _problem_lines(out)
        assert len(found) >= (6 if case == "fields" else 2), (case, out)
        for problem in found:
            key = re.search(r"([a-z_]+(?:\[\d+\])?\.[a-z_.]+) = ", problem)
            assert key is not None and problem.startswith(str(path)), problem
            at = lines.get(key[1])
            if lang == "zh":
                assert CJK.search(problem) and not ENGLISH.search(problem), problem
                assert at is None or f"{path} 第 {at} 行：{key[1]} = " in problem, problem
            else:
                assert problem.isascii(), problem
                assert at is None or f"{path}, line {at}: {key[1]} = " in problem, problem
        if case == "fields":  # the kiosk id, in each language
            zh, en = "格式必须是 AH-<6 位行政区划代码>", "must be AH-<6-digit GB/T 2260 area code>"
            assert (zh if lang == "zh" else en) in out, out


BAD_INIT = {"kiosk_id": "AH-34-1", "rows": "0", "screen": "big", "pin": "12", "baud": "1234"}


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_init_refuses_bad_answers_in_the_users_language(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, lang: str
) -> None:
    """`kiosk-provision init` (the real command, in-process) with bad flags and an answers file
    with an unknown key and a syntax error: every refusal in the chosen language."""
    monkeypatch.setenv("KIOSK_LANG", lang)
    cfg = tmp_path / "kiosk.toml"
    answers = tmp_path / "answers.toml"
    answers.write_text('colour = "red"\n', encoding="utf-8")
    cmd = ["init", "--non-interactive", "--config", str(cfg), "--answers", str(answers)]
    assert provision([*cmd, *base_args(tmp_path, **BAD_INIT)]) == 2
    found = _problem_lines(capsys.readouterr().out)
    assert len(found) == len(BAD_INIT) + 1, found
    for problem in (p.replace(str(tmp_path), "") for p in found):
        assert bool(CJK.search(problem)) == (lang == "zh"), problem
        if lang == "zh":
            assert not ENGLISH.search(problem), problem
    assert any("--rows = '0'" in p for p in found) and not cfg.exists()
    answers.write_text('kiosk_id = "AH-1\n', encoding="utf-8")  # the quote never closed
    assert provision(["init", "--config", str(cfg), "--answers", str(answers)]) == 2
    out = capsys.readouterr().out
    expect = "第 1 行第 17 列不是有效的 TOML" if lang == "zh" else "line 1, column 17: not valid"
    assert str(answers) in out and expect in out, out


def test_init_with_the_lang_flag_and_input_that_ends(tmp_path: Path) -> None:
    """`--lang zh` beats $KIOSK_LANG; input that ends before every question is answered is a
    clear refusal (nothing written), not a traceback."""
    cfg = tmp_path / "kiosk.toml"
    args = ("--lang", "zh", "init", "--interactive", "--config", str(cfg))
    out, _ = _run("provisioning.cli", *args, lang="en").communicate(timeout=300)
    assert "Traceback" not in out and "柜号" in out and "输入已结束" in out, out
    assert not cfg.exists()


@pytest.mark.parametrize(
    "table", [textfile._MESSAGES, BOARD_MESSAGES], ids=["kiosk/textfile.py", "board"]
)
def test_command_messages_in_both_languages_with_the_same_fields(
    table: Mapping[str, tuple[str, str]],
) -> None:
    wide = re.compile(r"[\u4e00-\u9fff\uff01-\uff5e]")  # Han and full-width punctuation
    for key, (zh, en) in table.items():
        assert _fields(zh) == _fields(en), key
        assert wide.search(zh), (key, zh)
        assert not wide.search(en), (key, en)


def test_board_words_the_code_uses_are_worded() -> None:
    used: set[str] = set()
    for module in (
        "kiosk/hardware/cli_board.py",
        "kiosk/hardware/cli_target.py",
        "provisioning/selftest.py",
    ):
        source = (ROOT / module).read_text(encoding="utf-8")
        used |= set(re.findall(r'said\(\s*"([a-z0-9_]+)"', source))
    assert used and used <= set(BOARD_MESSAGES), sorted(used - set(BOARD_MESSAGES))


# tomllib's common errors: each in our own words with its own hint, never the parser's English
TOML_KINDS = [
    ('[identity]\nkiosk_id = "a"\nkiosk_id = "b"\n', "toml_dup_key", 3, "已经写过"),
    ("[identity]\n[identity]\n", "toml_dup_table", 2, "[identity] 出现了两次"),
    ("[identity]\nsite_name = 测试\n", "toml_bad_value", 2, "英文双引号"),
    ('[identity]\nsite_name = "abc\n', "toml_unterminated", 2, "没有结束"),
    ("[identity]\nkiosk_id 1\n", "toml_expected_eq", 2, "等号"),
    ("[identity]\nx = 1 y = 2\n", "toml_expected_newline", 2, "一行只能写一个"),
    ("[identity\nkiosk_id = 1\n", "toml_table_header", 1, "右方括号"),
    ("[identity]\nx = [1, 2\n", "toml_unclosed", 2, "没有结束"),
    ('[store]\ndata_dir = "C:\\data"\n', "toml_backslash", 2, "反斜杠"),
]


@pytest.mark.parametrize(("text", "key", "line", "zh"), TOML_KINDS)
def test_toml_errors_in_our_own_words(text: str, key: str, line: int, zh: str) -> None:
    with pytest.raises(tomllib.TOMLDecodeError) as ei:
        tomllib.loads(text)
    found, fields = textfile.toml_error_words(ei.value, text)
    assert (found, fields["line"]) == (key, line), fields
    said_zh = textfile.say(found, "zh", **fields)
    said_en = textfile.say(found, "en", **fields)
    assert f"第 {line} 行" in said_zh and zh in said_zh, said_zh
    assert f"line {line}, column" in said_en and "not valid TOML" in said_en, said_en
    parser = str(ei.value).split(" (at ")[0]
    assert parser not in said_zh and parser not in said_en  # no parser English left
    # only the hint of that kind: not the catch-all list of usual causes
    assert "常见原因" not in said_zh and "Common causes" not in said_en


def test_an_empty_config_or_one_without_identity(tmp_path: Path) -> None:
    for text, en, zh in (
        ("", "the config file is empty", "配置文件是空的"),
        ("# nothing yet\n", "the config file is empty", "配置文件是空的"),
        ("[store]\ndata_dir = 'x'\n", "no [identity] section", "没有 [identity] 节"),
    ):
        path = tmp_path / "kiosk.toml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError) as ei:
            load_config(path)
        (issue,) = ei.value.issues
        for lang, words in (("en", en), ("zh", zh)):
            message = issue.message(lang)
            assert str(path) in message and words in message, message
            assert "kiosk-provision init" in message and "（未填写）" not in message, message
