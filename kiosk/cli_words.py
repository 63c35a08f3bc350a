"""argparse's own words (usage, "the following arguments are required", "invalid choice",
help headings) in the language of the command's other messages (kiosk.textfile.pick_lang).

argparse looks its texts up through gettext at the moment it prints them (`argparse._` and
`argparse.ngettext`); `install()` puts a lookup there that answers in Chinese when the user's
language is Chinese and passes everything through otherwise, decided at each call (so one
process may print in either). `lang_from_argv()` reads `--lang` before argparse runs, so a
usage error in the same command line is already in that language.

Never: changes a text argparse does not have in the table below (it stays English) or the
help texts the commands give (those are technician-facing English, as the guide says).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from kiosk.textfile import pick_lang, use_lang

__all__ = ["install", "lang_from_argv", "zh"]

# argparse 3.11's gettext keys -> Chinese
_ZH: dict[str, str] = {
    "usage: ": "用法：",
    "%(prog)s: error: %(message)s\n": "%(prog)s：参数有误：%(message)s\n"
    "（运行 `%(prog)s --help` 查看用法）\n",
    "the following arguments are required: %s": "缺少必需的参数：%s",
    "unrecognized arguments: %s": "无法识别的参数：%s",
    "invalid choice: %(value)r (choose from %(choices)s)": (
        "无效的选项 %(value)r（可选：%(choices)s）"
    ),
    "argument %(argument_name)s: %(message)s": "参数 %(argument_name)s：%(message)s",
    "invalid %(type)s value: %(value)r": "%(value)r 不是有效的 %(type)s 值",
    "expected one argument": "需要一个值",
    "expected at most one argument": "最多一个值",
    "expected at least one argument": "至少需要一个值",
    "ambiguous option: %(option)s could match %(matches)s": (
        "选项 %(option)s 不明确，可能是 %(matches)s"
    ),
    "not allowed with argument %s": "不能与参数 %s 同时使用",
    "one of the arguments %s is required": "参数 %s 必须给出其中一个",
    "ignored explicit argument %r": "忽略了多余的值 %r",
    "can't open '%(filename)s': %(error)s": "无法打开 '%(filename)s'：%(error)s",
    "positional arguments": "位置参数",
    "options": "选项",
    "show this help message and exit": "显示本帮助并退出",
}
_ZH_N: dict[str, str] = {
    "expected %s argument": "需要 %s 个值",
    "expected %s arguments": "需要 %s 个值",
}


def zh(text: str) -> str:
    """argparse's text `text` as the user should read it (Chinese or as it is)."""
    return _ZH.get(text, text) if pick_lang() == "zh" else text


def _zh_n(singular: str, plural: str, n: int) -> str:
    text = singular if n == 1 else plural
    return _ZH_N.get(text, text) if pick_lang() == "zh" else text


def lang_from_argv(argv: Sequence[str]) -> None:
    """Apply a `--lang zh|en` (or `--lang=zh`) given anywhere before `--` in `argv`."""
    args = list(argv)
    for i, a in enumerate(args):
        if a == "--":
            return
        if a == "--lang" and i + 1 < len(args) and args[i + 1] in ("zh", "en"):
            use_lang(args[i + 1])
            return
        if a in ("--lang=zh", "--lang=en"):
            use_lang(a.split("=", 1)[1])
            return


def install(argv: Sequence[str]) -> None:
    """Before a command line is parsed: its `--lang`, and argparse's words in that language."""
    lang_from_argv(argv)
    setattr(argparse, "_", zh)  # noqa: B010 - argparse reads its module global at each call
    setattr(argparse, "ngettext", _zh_n)  # noqa: B010
