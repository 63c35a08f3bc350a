"""Line breaking for Chinese and English, as pure functions (no window, no pygame).

Owns: the break opportunities (a CJK character each, a Latin word each, a URL after each
"/" and "."; none inside a number with its unit (8位), a short quoted name (“输入确认码”), a
word of `NEVER_SPLIT` (二维码, 取货口, 山核桃 ...), and only at U+200B in a text that has one),
the simple 禁则
(kinsoku) rules (closing punctuation such as ，。、）》 never starts a line, opening punctuation
such as （《 never ends one), and the orphan rule: no line of a wrapped paragraph holds a single
character (石台富硒绿/茶) or only punctuation; such a line takes the last break unit of the line
above (石台富硒/绿茶). `kiosk.ui.widgets` measures with the font and calls `wrap_text`; a test
calls `orphan_lines` on what was drawn.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

__all__ = [
    "NEVER_SPLIT",
    "NO_LINE_END",
    "NO_LINE_START",
    "NUMBER_UNITS",
    "is_orphan",
    "orphan_lines",
    "tokens",
    "wrap_text",
]

# Latin words stay whole (with their trailing spaces); each CJK character is a break opportunity.
_TOKEN = re.compile(r"[^\s\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef]+\s*|\s+|.", re.S)
#: Closing punctuation never starts a line: it stays with the unit before it.
NO_LINE_START = frozenset("，。！？、；：）》」』】〕〉”’,.!?;:)]}…%·～")
#: Opening punctuation never ends a line: it stays with the unit after it.
NO_LINE_END = frozenset("（《「『【〔〈“‘([{")


#: A URL (scheme://...) may break after each "/" and "." (mqtts:// / mqtt. / example. / ...).
_URL_PART = re.compile(r"[^/.]*[/.]+|[^/.]+")

#: Measure words and units that stay with the number before them (8位, 3件, 5分钟, 100克).
NUMBER_UNITS = (
    "分钟", "小时", "工作日", "千克", "位", "件", "元", "个", "天", "秒", "次", "号", "克",
    "枚", "袋", "盒", "罐", "瓶", "箱", "包", "份", "张", "年", "月", "日", "斤",
)  # fmt: skip
#: Words never split across lines: our own catalog's words, and the places and product words
#: of the demo catalog's names (金寨/山核桃仁, not 金寨山核/桃仁). A catalog may also mark its
#: names' natural breaks with U+200B (a preferred break, never drawn).
NEVER_SPLIT = (
    # the UI's words
    "二维码", "确认码", "取货口", "取走", "商品", "微信", "支付宝", "购物车", "订单", "付款",
    "支付", "退款", "出货", "货道", "控制板", "手机", "工作日", "扫描", "扫码", "输入",
    "显示", "本机", "网络", "客服", "电话", "服务", "补满", "补货", "没能", "无需", "任何",
    "操作", "原路", "退回", "到账", "拨打", "疑问", "购买", "帮助", "安徽", "贫困县", "农户",
    "增收", "合作社",
    # places in the demo catalog's names
    "六安", "岳西", "石台", "太湖", "霍山", "舒城", "天柱", "砀山", "金寨", "利辛", "皖南",
    "临泉", "宿松", "颍上", "灵璧", "阜南", "望江",
    # product words in the demo catalog's names
    "瓜片", "翠兰", "富硒", "绿茶", "天华谷尖", "黄芽", "小兰花", "剑毫", "石斛", "枫斗",
    "梨膏", "酥梨", "猕猴桃", "黄桃", "罐头", "果干", "脆片", "手剥", "山核桃", "核桃",
    "五香", "花生", "笋干", "红薯", "粉丝", "黑芝麻", "高山", "香菇", "大米", "小磨",
    "香油", "小米", "土蜂蜜", "百花蜜", "蜂蜜", "柳编", "收纳篮", "果盘", "挑花", "桌旗",
    "竹扇", "礼盒", "礼罐", "随手装",
)  # fmt: skip
#: A quoted name up to this many characters stays whole (“输入确认码”).
QUOTE_MAX = 8
#: Spans no line break may enter: a number with its unit, a short quoted name, a listed word.
_GLUE = re.compile(
    "|".join(
        [
            rf"“[^”\n]{{1,{QUOTE_MAX}}}”",
            rf"\d+(?:\.\d+)?(?:{'|'.join(NUMBER_UNITS)})",
            *(re.escape(w) for w in sorted(NEVER_SPLIT, key=len, reverse=True)),
        ]
    )
)
#: ZERO WIDTH SPACE: a preferred break a catalog may put in a name; never drawn.
ZWSP = "\u200b"


def _raw_units(text: str) -> list[str]:
    out: list[str] = []
    for t in _TOKEN.findall(text):
        out.extend(_URL_PART.findall(t) if "://" in t else [t])
    return out


def _glued(text: str, units: list[str]) -> list[str]:
    """`units` (which concatenate to `text`) with no break inside a `_GLUE` span."""
    inside: set[int] = set()
    for m in _GLUE.finditer(text):
        inside.update(range(m.start() + 1, m.end()))
    out: list[str] = []
    pos = 0
    for u in units:
        if out and pos in inside:
            out[-1] += u
        else:
            out.append(u)
        pos += len(u)
    return out


def _units(text: str) -> list[str]:
    """The break units of one paragraph; with U+200B in it, the text between two of them is
    one unit (a unit wider than the line is still cut by characters)."""
    out: list[str] = []
    for seg in text.split(ZWSP):
        if ZWSP in text and seg and not any(ch.isspace() for ch in seg):
            out.append(seg)
        elif seg:
            out.extend(_glued(seg, _raw_units(seg)))
    return out


def tokens(text: str) -> list[str]:
    """The unbreakable units of one paragraph, with the kinsoku rules applied."""
    merged: list[str] = []
    opening = ""
    for t in _units(text):
        if opening:
            t, opening = opening + t, ""
        if t.strip() and all(ch in NO_LINE_END for ch in t.strip()):
            opening = t  # glue to what follows
            continue
        if merged and t[0] in NO_LINE_START:
            merged[-1] += t
        else:
            merged.append(t)
    if opening:
        if merged:
            merged[-1] += opening
        else:
            merged.append(opening)
    return merged


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS" or ch in NO_LINE_START or ch in NO_LINE_END


def is_orphan(line: str) -> bool:
    """A line holding one character (with any punctuation), or only punctuation."""
    visible = [ch for ch in line if not ch.isspace()]
    if not visible:
        return False
    return sum(1 for ch in visible if not _is_punct(ch)) <= 1


def orphan_lines(text: str, lines: list[str] | tuple[str, ...]) -> list[str]:
    """The orphans among `lines` drawn for `text`: a line that is not a whole paragraph of the
    text (a paragraph may be one character: that is no orphan) and holds one character or only
    punctuation (an ellipsis counts as punctuation)."""
    if len(lines) < 2:
        return []
    paragraphs = {p.strip() for p in text.split("\n")}
    return [ln for ln in lines if ln.strip() not in paragraphs and is_orphan(ln)]


def _split_long(tok: str, width: int, measure: Callable[[str], int]) -> list[str]:
    """A unit wider than the line, cut by characters (never leaving one character alone)."""
    parts: list[str] = []
    part = ""
    for ch in tok:
        if measure((part + ch).rstrip()) <= width or not part:
            part += ch
        else:
            parts.append(part)
            part = ch
    parts.append(part)
    if len(parts) > 1 and is_orphan(parts[-1]) and len(parts[-2].rstrip()) > 2:
        parts[-1] = parts[-2][-1] + parts[-1]
        parts[-2] = parts[-2][:-1]
    return parts


def _greedy(units: list[str], width: int, measure: Callable[[str], int]) -> list[list[str]]:
    lines: list[list[str]] = [[]]
    for tok in units:
        cur = lines[-1]
        if measure(("".join(cur) + tok).rstrip()) <= width:
            cur.append(tok)
            continue
        tok = tok.lstrip() if cur else tok
        if measure(tok.rstrip()) <= width:
            if cur:
                lines.append([tok])
            else:
                cur.append(tok)
            continue
        parts = _split_long(tok.lstrip(), width, measure)
        if cur:
            lines.append([])
        lines[-1].append(parts[0])
        lines.extend([p] for p in parts[1:])
    return lines


def _fix_orphans(lines: list[list[str]], width: int, measure: Callable[[str], int]) -> None:
    """Give an orphan line the last unit of the line above while that line keeps two units;
    from the bottom up, so a line that gives becomes the next one checked."""
    for i in range(len(lines) - 1, 0, -1):
        while is_orphan("".join(lines[i])) and len(lines[i - 1]) >= 2:
            moved = lines[i - 1][-1]
            candidate = [moved, *lines[i]]
            if measure("".join(candidate).rstrip()) > width:
                break
            lines[i - 1].pop()
            lines[i] = candidate


def _is_cjk(tok: str) -> bool:
    t = tok.strip()
    return bool(t) and all("\u2e80" <= ch <= "\u9fff" or ch in NO_LINE_START for ch in t)


def _keep_words(lines: list[list[str]], width: int, measure: Callable[[str], int]) -> None:
    """A Chinese word the text sets apart with a space (六安瓜片 随手装) moves whole to the
    next line rather than break inside (六安瓜片 随/手装), when that line has the room."""
    for i in range(len(lines) - 1):
        line, below = lines[i], lines[i + 1]
        spaces = [k for k, tok in enumerate(line) if tok[-1:].isspace()]
        if not spaces or not below or not _is_cjk(below[0]):
            continue
        run = line[spaces[-1] + 1 :]
        if not run or not all(_is_cjk(tok) for tok in run):
            continue
        if measure("".join(run + below).rstrip()) <= width:
            lines[i] = line[: spaces[-1] + 1]
            lines[i + 1] = run + below


def wrap_text(text: str, width: int, measure: Callable[[str], int]) -> list[str]:
    """Wrap into lines no wider than `width`: greedy, a spaced Chinese word kept whole, then
    the orphan rule (a unit wider than the line is split by characters). Paragraphs are
    separated by "\\n"."""
    out: list[str] = []
    for para in text.split("\n"):
        lines = _greedy(tokens(para), width, measure)
        _keep_words(lines, width, measure)
        _fix_orphans(lines, width, measure)
        out.extend("".join(ln).rstrip() for ln in lines)
    return out
