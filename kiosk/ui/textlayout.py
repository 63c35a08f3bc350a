"""Line breaking for Chinese and English, as pure functions (no window, no pygame).

Owns: the break opportunities (a CJK character each, a Latin word each, a URL after each
"/" and "."), the simple 禁则
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

__all__ = ["NO_LINE_END", "NO_LINE_START", "is_orphan", "orphan_lines", "tokens", "wrap_text"]

# Latin words stay whole (with their trailing spaces); each CJK character is a break opportunity.
_TOKEN = re.compile(r"[^\s\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef]+\s*|\s+|.", re.S)
#: Closing punctuation never starts a line: it stays with the unit before it.
NO_LINE_START = frozenset("，。！？、；：）》」』】〕〉”’,.!?;:)]}…%·～")
#: Opening punctuation never ends a line: it stays with the unit after it.
NO_LINE_END = frozenset("（《「『【〔〈“‘([{")


#: A URL (scheme://...) may break after each "/" and "." (mqtts:// / mqtt. / example. / ...).
_URL_PART = re.compile(r"[^/.]*[/.]+|[^/.]+")


def _units(text: str) -> list[str]:
    out: list[str] = []
    for t in _TOKEN.findall(text):
        out.extend(_URL_PART.findall(t) if "://" in t else [t])
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
