"""Broken input files fed to the real `kiosk` command (issue 17 req. 8): every one gets a
clear message naming the file, the place and what to do, in Chinese or English by the locale,
a usage exit code, and never a traceback."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

from kiosk.cli import main as kiosk_main
from kiosk.hardware.board import BoardDriver, BoardInfo, BoardStatus, Cabinet
from kiosk.hardware.cli_board import board_lines, confirmed
from kiosk.hardware.cli_target import Target
from kiosk.hardware.protocol import CabinetKind, SlotGroup, WireSlotKind
from kiosk.update.release import generate_release_key
from provisioning.cli import main as provision_main
from tests.support.config import kiosk_config, write_config
from tests.support.paths import ROOT


def kiosk(*args: str, lang: str = "en_US.UTF-8") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KIOSK_CONFIG", "KIOSK_LANG")}
    env.update(PYTHONPATH=str(ROOT), LANG=lang, LC_ALL=lang)
    return subprocess.run(
        [sys.executable, "-m", "kiosk.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=ROOT,
    )


def _clean(r: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    assert "codec can't decode" not in r.stderr, r.stderr


pytestmark = pytest.mark.slow  # ~30 real `kiosk` processes


def _config(tmp_path: Path) -> dict[str, object]:
    return kiosk_config(port=tmp_path / "board", data_dir=tmp_path / "data")


GOOD = '[identity]\nsite_name = "测试"\n'  # a Chinese value: GBK bytes differ from UTF-8


@pytest.mark.parametrize(
    ("data", "expect_en", "expect_zh"),
    [
        (GOOD.encode("gbk"), "line 2, column 14 is not UTF-8 text (byte 0xb2)", "第 2 行第 14 列"),
        (
            b"\xff\xfe\x00garbage",
            "line 1, column 1 is not UTF-8 text (byte 0xff)",
            "第 1 行第 1 列",
        ),
        (b"[identity\nkiosk_id = 1\n", "not valid TOML", "不是有效的 TOML"),
        (
            b"[identity]\nsite_name = \xe6\xb5\x8b\xe8\xaf\x95\n",
            "not valid TOML",
            "不是有效的 TOML",
        ),
    ],
)
@pytest.mark.parametrize("command", [("config", "check"), ("run", "--headless")])
def test_broken_configs(
    tmp_path: Path, data: bytes, expect_en: str, expect_zh: str, command: tuple[str, ...]
) -> None:
    cfg = tmp_path / "kiosk.toml"
    cfg.write_bytes(data)
    r = kiosk(*command, "--config", str(cfg))
    _clean(r)
    assert r.returncode in (1, 2), r.stderr
    assert str(cfg) in r.stderr and expect_en in r.stderr, r.stderr
    r = kiosk(*command, "--config", str(cfg), lang="zh_CN.UTF-8")
    _clean(r)
    assert expect_zh in r.stderr, r.stderr


def test_a_config_saved_with_a_bom_is_read(tmp_path: Path) -> None:
    """Notepad saves UTF-8 with a BOM: that is a UTF-8 file like any other."""
    path = write_config(tmp_path / "kiosk.toml", _config(tmp_path))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    r = kiosk("config", "check", "--config", str(path))
    _clean(r)
    assert r.returncode == 0 and ": OK" in r.stdout, r.stderr
    assert "data dir" in r.stdout and "broker" in r.stdout, r.stdout
    r = kiosk("config", "check", "--config", str(path), lang="zh_CN.UTF-8")
    _clean(r)
    assert r.returncode == 0 and "：配置无误" in r.stdout, r.stderr
    assert "数据目录" in r.stdout and "data dir" not in r.stdout, r.stdout


def test_no_config_points_to_provisioning(tmp_path: Path) -> None:
    for lang, hint in (("en_US.UTF-8", "run `kiosk-provision init`"), ("zh_CN.UTF-8", "请先运行")):
        r = kiosk("run", "--headless", "--config", str(tmp_path / "none.toml"), lang=lang)
        _clean(r)
        assert r.returncode == 2 and hint in r.stderr and "kiosk-provision init" in r.stderr


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = write_config(tmp_path / "kiosk.toml", _config(tmp_path))
    assert kiosk("store", "seed-demo", "--config", str(path)).returncode == 0
    return path


def test_planogram_csv_encodings(cfg: Path, tmp_path: Path) -> None:
    out = tmp_path / "export.csv"
    assert kiosk("planogram", "export", "--config", str(cfg), "--out", str(out)).returncode == 0
    text = out.read_text(encoding="utf-8-sig")
    for name, data in (
        ("utf8.csv", text.encode("utf-8")),
        ("bom.csv", text.encode("utf-8-sig")),
        ("gbk.csv", text.encode("gbk")),
    ):
        f = tmp_path / name
        f.write_bytes(data)
        r = kiosk("planogram", "import", str(f), "--config", str(cfg))
        _clean(r)
        assert r.returncode == 0 and "applied: 60 slots" in r.stdout, (name, r.stderr)
    junk = tmp_path / "junk.csv"
    junk.write_bytes(text.encode("utf-8")[:200] + b"\xff\x80\xff" + b"\n")
    for lang, expect in (
        ("en_US.UTF-8", "is neither UTF-8 nor GBK text (byte 0xff)"),
        ("zh_CN.UTF-8", "既不是 UTF-8 也不是 GBK"),
    ):
        r = kiosk("planogram", "import", str(junk), "--config", str(cfg), lang=lang)
        _clean(r)
        assert r.returncode == 2 and str(junk) in r.stderr and expect in r.stderr, r.stderr


@pytest.mark.parametrize(
    ("what", "expect"),
    [
        ("missing", "file not found"),
        ("directory", "cannot be read"),
        ("header", "missing column(s) product_id"),
    ],
)
def test_planogram_csv_broken_files(cfg: Path, tmp_path: Path, what: str, expect: str) -> None:
    f = tmp_path / "p.csv"
    if what == "directory":
        f.mkdir()
    elif what == "header":
        f.write_text("slot,board,address,kind,row,col,capacity\n1,0,0,spiral,1,0,5\n")
    r = kiosk("planogram", "import", str(f), "--config", str(cfg))
    _clean(r)
    assert r.returncode in (1, 2) and expect in r.stderr, r.stderr


def test_a_missing_serial_port_is_said_once(tmp_path: Path) -> None:
    r = kiosk("board", "status", "--port", "/dev/nonexistent-kiosk-port")
    _clean(r)
    assert r.returncode == 3
    lines = [ln for ln in r.stderr.splitlines() if "/dev/nonexistent-kiosk-port" in ln]
    assert len(lines) == 1 and "does not exist" in lines[0], r.stderr
    assert "ls /dev/ttyUSB*" in lines[0]
    r = kiosk("board", "status", "--port", "/dev/nonexistent-kiosk-port", lang="zh_CN.UTF-8")
    assert "串口 /dev/nonexistent-kiosk-port 不存在" in r.stderr, r.stderr


def _start(module: str, *args: str, kiosk_lang: str) -> subprocess.Popen[str]:
    """`kiosk` / `kiosk-provision` with $KIOSK_LANG deciding the language (the locale says C)."""
    env = {k: v for k, v in os.environ.items() if k not in ("KIOSK_CONFIG", "LANGUAGE")}
    env.update(PYTHONPATH=str(ROOT), LANG="C.UTF-8", LC_ALL="C.UTF-8", KIOSK_LANG=kiosk_lang)
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
    )


def _has_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def test_every_command_says_its_errors_in_the_users_language(tmp_path: Path) -> None:
    """Bad input to `kiosk` and `kiosk-provision` subcommands (issue 17 req. 8): the kiosk's
    own message in Chinese with KIOSK_LANG=zh and in English with KIOSK_LANG=en, a failure
    exit status, never a traceback (a path that cannot be written included)."""
    cfg = write_config(tmp_path / "kiosk.toml", _config(tmp_path))
    junk = tmp_path / "junk.txt"
    junk.write_text("not a key\n", encoding="utf-8")
    none, k, p = str(tmp_path / "none"), "kiosk.cli", "provisioning.cli"
    out_csv, bad_csv = f"{none}/x.csv", tmp_path / "bad.csv"
    bad_csv.write_text("slot,board\n1,0\n", encoding="utf-8")
    header = "row 1: header must name the columns"
    cases: list[tuple[str, tuple[str, ...], str, str]] = [
        (k, ("planogram", "export", "--config", str(cfg), "--out", out_csv), "不存在", "no such"),
        (k, ("run", "--script", "buy3", "--config", str(cfg)), "--headless", "needs --headless"),
        (k, ("planogram", "import", str(bad_csv), "--config", str(cfg)), "第 1 行：第一行", header),
        (k, ("release", "verify", str(tmp_path), "--public-key", str(junk)), "已拒绝", "REFUSED"),
        (p, ("keys", "--config", f"{none}.toml"), "请先运行", "run `kiosk-provision init` first"),
        (p, ("pin", "--id", "bad id!"), "技术员编号", "must be 1-32 letters"),
        (p, ("register", "--config", str(cfg)), "没有设备私钥", "no device key"),
        (p, ("install-service", "--config", str(cfg), "--dest", f"{junk}/d"), "目录", "directory"),
    ]
    runs = [  # all at once: each is a short process, mostly Python start-up
        (args, lang, expect, _start(module, *args, kiosk_lang=lang))
        for module, args, zh, en in cases
        for lang, expect in (("zh", zh), ("en", en))
    ]
    for args, lang, expect, proc in runs:
        out, _ = proc.communicate(timeout=300)  # generous: 16 processes on a loaded 2-core box
        assert "Traceback" not in out, (args, out)
        assert proc.returncode != 0 and expect in out, (lang, args, out)
        assert _has_cjk(out) == (lang == "zh"), (lang, args, out)


def test_a_missing_or_malformed_device_secret(tmp_path: Path) -> None:
    """payments.device_secret_file not set, or a file that is not 64 hex digits: `kiosk config
    check` says so (exit 1) and `kiosk run` stops with the same words (exit 2), naming the key
    and `kiosk-provision register`, in the user's language, never a traceback."""
    bad = tmp_path / "device-secret"
    bad.write_bytes(b"AB19CC\r\n")  # retyped by hand in a Windows editor
    configs = {
        shown: write_config(
            tmp_path / f"kiosk-{i}.toml",
            kiosk_config(
                port=tmp_path / "board",
                data_dir=tmp_path / "data",
                payments={"device_secret_file": secret},  # None: the key is left out
            ),
        )
        for i, (shown, secret) in enumerate((("(missing)", None), (repr(str(bad)), bad)))
    }
    check, run = ("config", "check"), ("run", "--headless")
    runs = [  # each case through each command, each language: 4 processes at once
        (shown, cfg, cmd, lang, _start("kiosk.cli", *cmd, "--config", str(cfg), kiosk_lang=lang))
        for (shown, cfg), pairs in zip(
            configs.items(),
            (((check, "en"), (run, "zh")), ((check, "zh"), (run, "en"))),
            strict=True,
        )
        for cmd, lang in pairs
    ]
    for shown, cfg, cmd, lang, proc in runs:
        out, _ = proc.communicate(timeout=300)  # generous: 4 processes on a loaded 2-core box
        assert "Traceback" not in out, (cmd, out)
        assert proc.returncode == (1 if cmd[0] == "config" else 2), (cmd, out)
        # the file, the line of the key (of [payments] when it is left out), the key, the value
        line = next(
            n
            for n, text in enumerate(cfg.read_text(encoding="utf-8").splitlines(), 1)
            if text.startswith("device_secret_file" if shown != "(missing)" else "[payments]")
        )
        where = {
            "zh": f"{cfg} 第 {line} 行：payments.device_secret_file = {shown}：",
            "en": f"{cfg}, line {line}: payments.device_secret_file = {shown}: ",
        }[lang]
        assert where.replace("(missing)", "（未填写）" if lang == "zh" else "(missing)") in out
        assert "kiosk-provision register" in out, out
        expect = "运行柜机" if shown == "(missing)" else "64 个十六进制字符"
        if lang == "en":
            expect = "required to run the kiosk" if shown == "(missing)" else "64 hex digits"
        assert expect in out, (lang, out)


# --- in-process: each technician command fed broken input, in Chinese and in English -------
# (issue 17 req. 8, the outside review). In-process: the language comes from $KIOSK_LANG at the
# moment of each message, so no subprocess is needed; an exception would fail the test itself.


class _Terminal(io.StringIO):
    """Typed answers on a terminal (stdin that says it is a tty)."""

    def isatty(self) -> bool:
        return True


Main = Callable[[list[str]], int]


def _call(
    main: Main,
    argv: list[str],
    lang: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stdin: io.StringIO | None = None,
) -> tuple[int, str]:
    monkeypatch.setenv("KIOSK_LANG", lang)
    monkeypatch.delenv("KIOSK_CONFIG", raising=False)
    monkeypatch.setattr(sys, "stdin", stdin if stdin is not None else io.StringIO(""))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out + err


def _in_lang(text: str, lang: str) -> None:
    assert _has_cjk(text) == (lang == "zh"), (lang, text)


LANGS = ("zh", "en")


def test_a_missing_config_port_is_said_once_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The config's port does not exist: one line naming the port, the config file, its key
    and what to check, before any link starts (no errno repeated by retries), exit 3."""
    port = "/dev/nonexistent-kiosk-cfg-port"
    cfg = write_config(tmp_path / "kiosk.toml", kiosk_config(port=port, data_dir=tmp_path / "data"))
    board = [("status",), ("vend", "--slot", "10"), ("selftest",)]
    for lang in LANGS:
        for action in board:
            code, out = _call(
                kiosk_main, ["board", *action, "--config", str(cfg)], lang, monkeypatch, capsys
            )
            assert code == 3, (action, out)
            lines = [ln for ln in out.splitlines() if port in ln]
            assert len(lines) == 1 and str(cfg) in lines[0], (action, out)
            assert "ls /dev/ttyUSB*" in lines[0] and "[hardware] port" in lines[0]
            assert "Errno" not in out and "link.open_failed" not in out, out
            _in_lang(out, lang)
        skip = [f"--skip={c}" for c in ("broker", "clock", "disk", "font", "screen")]
        argv = ["selftest", "--config", str(cfg), "--headless", "--no-queue", *skip]
        code, out = _call(provision_main, argv, lang, monkeypatch, capsys)
        assert code == 1 and sum(port in ln for ln in out.splitlines()) == 1, out
        assert "Errno" not in out and "cannot open" not in out, out
        heads = ("检查项", "结果", "失败", "跳过") if lang == "zh" else ("CHECK", "RESULT", "FAIL")
        assert all(h in out for h in heads), out
        if lang == "zh":
            assert "SKIP" not in out and "FAIL" not in out and "PASS" not in out, out


def test_a_drop_asks_first_and_a_script_needs_yes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--drop` says what will drop and waits for a `y` on a terminal (anything else aborts
    before any motor turns); without a terminal it needs `--yes`."""
    cfg = write_config(tmp_path / "kiosk.toml", _config(tmp_path))
    argv = ["selftest", "--config", str(cfg), "--headless", "--no-queue", "--drop"]
    reports = tmp_path / "data" / "selftest"
    for lang in LANGS:
        code, out = _call(provision_main, argv, lang, monkeypatch, capsys)
        assert code == 2 and "--yes" in out and not reports.exists(), out
        _in_lang(out, lang)
        code, out = _call(provision_main, argv, lang, monkeypatch, capsys, _Terminal("n\n"))
        warning = "每个螺旋货道掉出一件商品" if lang == "zh" else "ONE ITEM DROPS FROM EACH"
        aborted = "已取消" if lang == "zh" else "aborted"
        assert code == 2 and out.index(warning) < out.index(aborted), out
        assert not reports.exists()  # nothing ran: no check, no report
        code, out = _call(
            kiosk_main,
            ["board", "selftest", "--config", str(cfg), "--drop"],
            lang,
            monkeypatch,
            capsys,
        )
        assert code == 2 and "--yes" in out, out
        _in_lang(out, lang)
    for typed, expect in (("y\n", True), ("Y\n", True), ("\n", False), ("", False)):
        monkeypatch.setattr(sys, "stdin", _Terminal(typed))
        assert confirmed() is expect, typed


class _Silent:
    """A board the status lines only look up (the lines are made from its info and status)."""

    def subscribe(self, listener: object) -> Callable[[], None]:
        return lambda: None


def test_board_status_names_slots_as_the_screen_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`kiosk board status` with a planogram: the screen's slot numbers only (10-69), never
    the bus addresses 0-59 next to them."""
    planogram = {10 + i: (0, i) for i in range(60)}
    target = Target(Cabinet({0: cast(BoardDriver, _Silent())}, planogram), None, "/dev/x", True)
    info = BoardInfo(
        0,
        "M1",
        "SN1",
        (1, 0, 0),
        1,
        CabinetKind.SPIRAL,
        False,
        True,
        True,
        64,
        (SlotGroup(0, 60, WireSlotKind.SPIRAL),),
    )
    status = BoardStatus(False, False, None, frozenset(), 0, frozenset(), frozenset(range(60)))
    for lang, expect in (
        (
            "en",
            [
                "cabinet: spiral, 60 slots",
                "slots with product (as on the screen): 10-69",
                "slots (as on the screen): 10-69",
            ],
        ),
        (
            "zh",
            [
                "货柜：弹簧货道，60 个货道",
                "有货的货道（屏幕编号）：10-69",
                "货道（屏幕编号）：10-69",
            ],
        ),
    ):
        monkeypatch.setenv("KIOSK_LANG", lang)
        lines = board_lines(target, 0, info, status)
        text = "\n".join(lines)
        assert all(e in lines for e in expect), text
        assert "0-59" not in text and "0, 1" not in text, text


def _release_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A release key pair, a junk key file and a release dir whose manifest is junk."""
    private, public = tmp_path / "release.pem", tmp_path / "release.pub.pem"
    generate_release_key(private, public)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key\n", encoding="utf-8")
    rel = tmp_path / "rel"
    rel.mkdir()
    (rel / "manifest.json").write_text("{broken", encoding="utf-8")
    (rel / "manifest.sig").write_text("{broken", encoding="utf-8")
    return public, junk, rel


def test_release_verify_and_update_with_broken_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    public, junk, rel = _release_files(tmp_path)
    root = tmp_path / "update"
    root.mkdir()
    cfg = write_config(
        tmp_path / "kiosk.toml",
        kiosk_config(
            port=tmp_path / "board",
            data_dir=tmp_path / "data",
            update={"release_public_key": public, "root": root},
        ),
    )
    cases = [  # argv, what the message must name
        (["release", "verify", str(rel), "--public-key", str(junk)], str(junk)),
        (["release", "verify", str(rel), "--public-key", str(public)], str(rel)),
        (["release", "verify", str(tmp_path / "none"), "--public-key", str(public)], "manifest"),
        (["update", "apply", str(tmp_path / "none"), "--config", str(cfg)], "manifest.json"),
        (["update", "apply", str(junk), "--config", str(cfg)], str(junk)),
    ]
    for lang in LANGS:
        for argv, named in cases:
            code, out = _call(kiosk_main, argv, lang, monkeypatch, capsys)
            assert code == 1 and named in out, (argv, out)
            assert "cryptography.io" not in out and "MalformedFraming" not in out, out
            _in_lang(out.replace(str(tmp_path), ""), lang)
        (root / "state.json").write_text("{damaged", encoding="utf-8")
        code, out = _call(
            kiosk_main, ["update", "status", "--config", str(cfg)], lang, monkeypatch, capsys
        )
        assert code == 1 and str(root / "state.json") in out, out
        _in_lang(out, lang)
        (root / "state.json").unlink()
    code, out = _call(kiosk_main, cases[0][0], "zh", monkeypatch, capsys)
    assert "不是有效的发布公钥" in out, out
    code, out = _call(kiosk_main, cases[0][0], "en", monkeypatch, capsys)
    assert "not a valid release public key" in out, out


def test_a_corrupt_store_and_bad_provisioning_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A data dir whose kiosk.db is not SQLite: every command that opens it says so (where its
    files went, `kiosk store recover`); kiosk-provision keys/status with a broken config or
    identity files: the user's words, no traceback."""
    cfg = write_config(tmp_path / "kiosk.toml", _config(tmp_path))
    data = tmp_path / "data"
    dup = tmp_path / "dup.toml"
    dup.write_text('[identity]\nkiosk_id = "a"\nkiosk_id = "b"\n', encoding="utf-8")
    ident = tmp_path / "id"
    ident.mkdir()
    for name in ("device-key.pem", "device-cert.pem", "device.csr", "client-ca.pem"):
        (ident / name).write_text("junk\n", encoding="utf-8")
    for lang in LANGS:
        for main, argv in (
            (kiosk_main, ["store", "check", "--config", str(cfg)]),
            (kiosk_main, ["ledger", "verify", "--config", str(cfg)]),
            (kiosk_main, ["planogram", "export", "--config", str(cfg)]),
            (provision_main, ["status", "--config", str(cfg), "--offline", "--dir", str(ident)]),
        ):
            shutil.rmtree(data, ignore_errors=True)
            data.mkdir()
            (data / "kiosk.db").write_bytes(b"this is not an SQLite database\n" * 200)
            code, out = _call(main, argv, lang, monkeypatch, capsys)
            assert "kiosk store recover" in out and "kiosk.db.corrupt-" in out, (argv, out)
            assert "STORE CORRUPT" not in out and "DatabaseError" not in out, out
            assert code != 0 or argv[0] == "status", (argv, out)
        code, out = _call(provision_main, ["keys", "--config", str(dup)], lang, monkeypatch, capsys)
        assert code == 2 and str(dup) in out and "Cannot overwrite" not in out, out
        _in_lang(out.replace(str(tmp_path), ""), lang)
        argv = ["keys", "--config", str(cfg), "--dir", str(ident)]
        code, out = _call(provision_main, argv, lang, monkeypatch, capsys)
        assert code == 1 and "--force" in out, out
        _in_lang(out.replace(str(tmp_path), ""), lang)


def test_why_a_board_cannot_be_reached_in_the_users_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port that exists but refuses (here a TCP port nobody listens on): the reason once, in
    the user's language (pyserial's errno worded), without the link's own retry warnings."""
    url = "socket://127.0.0.1:1"
    cfg = write_config(tmp_path / "kiosk.toml", kiosk_config(port=url, data_dir=tmp_path / "d"))
    argv = ["board", "status", "--config", str(cfg), "--connect-timeout", "0.5"]
    for lang, words in (("zh", "连接被拒绝"), ("en", "connection refused")):
        code, out = _call(kiosk_main, argv, lang, monkeypatch, capsys)
        assert code == 3 and words in out, out
        assert "link.open_failed" not in out and out.count(url) == 2, out  # where, and why
        assert "Errno" not in out and "Could not open" not in out, out
