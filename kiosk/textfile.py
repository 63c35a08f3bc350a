"""Reading the text files people edit (config TOML, planogram CSV), and saying what is wrong
with them in the user's words, in Chinese or English.

Owns: decoding (UTF-8 with or without the BOM Windows Notepad and Excel write; GBK/GB18030,
what Excel on a Chinese Windows saves a CSV as, where allowed), the error for a file that is
none of these (file, line, column, the byte, and what to do), and the choice of language for
command-line messages (`--lang`, else `$KIOSK_LANG`, else the system locale: zh_* is Chinese).

Never: guesses an encoding for a config file (TOML is UTF-8 by definition: a GBK config is
refused with a clear message, not read as mojibake).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "TextFileError",
    "pick_lang",
    "read_text",
    "say",
]

BOM = "\ufeff"

# Command-line messages in both languages: key -> (zh, en). `{name}` fields are filled in.
_MESSAGES: Mapping[str, tuple[str, str]] = {
    "not_found": (
        "{file}：文件不存在。",
        "{file}: file not found.",
    ),
    "config_not_found_hint": (
        "新机器请先运行 `kiosk-provision init` 生成配置，或用 --config 指定配置文件。",
        "On a new kiosk run `kiosk-provision init` to write one, or give --config.",
    ),
    "unreadable": (
        "{file}：无法读取（{error}）。请检查文件权限。",
        "{file}: cannot be read ({error}). Check the file's permissions.",
    ),
    "not_utf8": (
        "{file}：第 {line} 行第 {col} 列不是 UTF-8 文字（字节 0x{byte:02x}）。"
        "请用“UTF-8”编码另存该文件（记事本：另存为 → 编码 UTF-8）。",
        "{file}: line {line}, column {col} is not UTF-8 text (byte 0x{byte:02x}). "
        "Save the file as UTF-8 (Notepad: Save as -> Encoding UTF-8).",
    ),
    "not_text": (
        "{file}：第 {line} 行第 {col} 列既不是 UTF-8 也不是 GBK 文字（字节 0x{byte:02x}）。"
        "请在 Excel 中另存为“CSV UTF-8（逗号分隔）”。",
        "{file}: line {line}, column {col} is neither UTF-8 nor GBK text (byte 0x{byte:02x}). "
        "In Excel, save as 'CSV UTF-8 (Comma delimited)'.",
    ),
    "toml_syntax": (
        "不是有效的 TOML 配置（{error}）。常见原因：文字值没有加英文双引号，"
        "缺少 [节名] 行，或用了中文标点。",
        "not valid TOML ({error}). Common causes: a text value without double quotes, a "
        "missing [section] line, or Chinese punctuation.",
    ),
    "config_problems": (
        "{file}：发现 {n} 个问题：",
        "{file}: {n} problem(s):",
    ),
    "csv_rejected": (
        "{file}：已拒绝，未做任何更改：",
        "{file}: rejected, nothing applied:",
    ),
    "port_missing": (
        "串口 {port} 不存在：请检查控制板的 USB/串口线是否插好，"
        "并用 `ls /dev/ttyUSB* /dev/ttyACM* /dev/ttyAMA*` 查看实际的设备名"
        "（模拟控制板：`kiosk emulator` 是否在运行？）。",
        "serial port {port} does not exist: check the control board's USB/serial cable, and "
        "list the real device names with `ls /dev/ttyUSB* /dev/ttyACM* /dev/ttyAMA*` (for a "
        "simulated board: is `kiosk emulator` running?).",
    ),
}


def pick_lang(flag: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """ "zh" or "en": the flag, else $KIOSK_LANG, else the locale ($LC_ALL, $LC_MESSAGES,
    $LANG; zh_* is Chinese), else English."""
    env = os.environ if environ is None else environ
    for value in (flag, env.get("KIOSK_LANG")):
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(var)
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    return "en"


def say(key: str, lang: str | None = None, **fields: object) -> str:
    """The message `key` in `lang` (default: `pick_lang()`), fields filled in."""
    zh, en = _MESSAGES[key]
    return (zh if (lang or pick_lang()) == "zh" else en).format(**fields)


@dataclass
class TextFileError(Exception):
    """A file that cannot be read as text. `key` is a message key; `fields` fill it in."""

    key: str
    fields: dict[str, object]

    def message(self, lang: str | None = None) -> str:
        return say(self.key, lang, **self.fields)

    def __str__(self) -> str:
        return self.message("en")


def _position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters of the decodable prefix) of byte `offset`."""
    line = data.count(b"\n", 0, offset) + 1
    start = data.rfind(b"\n", 0, offset) + 1
    col = len(data[start:offset].decode("utf-8", errors="replace")) + 1
    return line, col


def decode_text(data: bytes, name: str, *, allow_gbk: bool = False) -> str:
    """`data` as text: UTF-8 (a leading BOM dropped), or with `allow_gbk` GB18030 (GBK's
    superset) when it is not UTF-8. Raises TextFileError saying where and what to do."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        if allow_gbk:
            try:
                return data.decode("gb18030")
            except UnicodeDecodeError:
                pass
        line, col = _position(data, e.start)
        key = "not_text" if allow_gbk else "not_utf8"
        fields: dict[str, object] = {"file": name, "line": line, "col": col, "byte": data[e.start]}
        raise TextFileError(key, fields) from None
    return text[1:] if text.startswith(BOM) else text


def read_text(path: Path, *, allow_gbk: bool = False) -> str:
    """Read and decode a file a person edits (see `decode_text`)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TextFileError("not_found", {"file": str(path)}) from None
    except OSError as e:
        raise TextFileError("unreadable", {"file": str(path), "error": e.strerror or e}) from None
    return decode_text(data, str(path), allow_gbk=allow_gbk)
