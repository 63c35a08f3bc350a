"""Line breaking (kiosk.ui.textlayout), pure: no window, a width per character (a CJK character
2 units, anything else 1)."""

from __future__ import annotations

import unicodedata

from kiosk.ui.textlayout import is_orphan, orphan_lines, tokens, wrap_text


def width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def test_no_single_character_on_the_last_line() -> None:
    lines = wrap_text("石台富硒绿茶", 10, width)  # greedy: 石台富硒绿 / 茶
    assert lines == ["石台富硒", "绿茶"]
    assert wrap_text("利辛五香花生", 10, width) == ["利辛五香", "花生"]
    assert wrap_text("金寨猕猴桃果干", 12, width) == ["金寨猕猴桃", "果干"]


def test_closing_punctuation_never_starts_a_line_opening_never_ends_one() -> None:
    lines = wrap_text("如果已经付款，请不要取消，商品会自动出货。", 36, width)
    assert not any(ln[0] in "，。" for ln in lines)
    assert lines[-1] == "出货。" or len(lines[-1].rstrip("。，")) >= 2
    lines = wrap_text("岳西翠兰（100克）", 10, width)
    assert not any(ln.endswith("（") for ln in lines), lines
    assert not any(ln.startswith(("）", "》")) for ln in lines), lines
    assert "".join(lines) == "岳西翠兰（100克）"


def test_latin_words_stay_whole_and_a_lone_letter_is_avoided() -> None:
    lines = wrap_text("Lu'an Guapian green tea", 14, width)
    assert lines == ["Lu'an Guapian", "green tea"]
    parts = wrap_text("Xiaolanhua", 9, width)  # one word wider than the line
    assert parts == ["Xiaolanh", "ua"] and not any(is_orphan(p) for p in parts)


def test_orphans_are_found() -> None:
    assert orphan_lines("石台富硒绿茶", ["石台富硒绿", "茶"]) == ["茶"]
    assert orphan_lines("abc - def", ["abc", "-", "def"]) == ["-"]
    assert orphan_lines("茶\n好茶", ["茶", "好茶"]) == []  # a one-character paragraph
    assert orphan_lines("石台富硒绿茶叶", ["石台富硒绿茶", "叶…"]) == ["叶…"]
    assert orphan_lines("石台富硒绿茶", ["石台富硒绿茶"]) == []


def test_tokens_glue_punctuation() -> None:
    assert tokens("《茶经》，好") == ["《茶", "经》，", "好"]
    assert tokens("Tea, 100 g") == ["Tea, ", "100 ", "g"]


def test_a_spaced_chinese_word_stays_whole() -> None:
    assert wrap_text("六安瓜片 随手装", 12, width) == ["六安瓜片", "随手装"]
    # without the space (and not a listed word) it may break inside
    assert wrap_text("六安瓜片随身带", 12, width) == ["六安瓜片随", "身带"]
    assert wrap_text("六安瓜片随手装", 12, width) == ["六安瓜片", "随手装"]  # a listed word


def test_a_url_breaks_after_slashes_and_dots_only() -> None:
    """A broker URL on a narrow service screen wraps at / and . instead of being cut; a price
    or a number with a dot outside a URL stays whole."""
    assert wrap_text("mqtts://mqtt.example.invalid:8883", 16, width) == [
        "mqtts://mqtt.",
        "example.",
        "invalid:8883",
    ]
    assert tokens("¥153.70, 3.5 kg") == ["¥153.70, ", "3.5 ", "kg"]


def test_a_number_stays_with_its_unit() -> None:
    """code pad 800x480 zh, offline band 540x960: not 显示的8/位确认码."""
    assert wrap_text("请输入手机上显示的8位确认码", 20, width) == [
        "请输入手机上显示的",
        "8位确认码",
    ]
    assert tokens("共12件，约5分钟") == ["共", "12件，", "约", "5分钟"]


def test_listed_words_stay_whole() -> None:
    """payment hint 540x960 zh (扫描二/维码), dispensing 540x960 zh (取货口取/走商品)."""
    assert wrap_text("打开微信或支付宝，扫描二维码", 24, width) == [
        "打开微信或支付宝，扫描",
        "二维码",
    ]
    assert wrap_text("请从下方取货口取走商品", 16, width) == ["请从下方取货口", "取走商品"]


def test_a_short_quoted_name_stays_whole() -> None:
    """offline band 540x960 large: not “输入确认/码”."""
    body = "扫码付款后，手机上会显示8位确认码，请点“输入确认码”，在本机输入。"
    lines = wrap_text(body, 24, width)
    assert lines == [
        "扫码付款后，手机上会显示",
        "8位确认码，请点",
        "“输入确认码”，在本机",
        "输入。",
    ]
    assert any("“输入确认码”" in ln for ln in wrap_text(body, 26, width))


def test_product_names_break_between_words() -> None:
    """catalog 1920x1080 and 1080x1920: not 金寨山核/桃仁, 太湖天华/谷尖, 金寨手剥山/核桃."""
    assert wrap_text("金寨山核桃仁", 8, width) == ["金寨", "山核桃仁"]
    assert wrap_text("太湖天华谷尖", 8, width) == ["太湖", "天华谷尖"]
    assert wrap_text("金寨手剥山核桃", 10, width) == ["金寨手剥", "山核桃"]
    # the orphan rule still holds with the words
    assert wrap_text("石台富硒绿茶", 10, width) == ["石台富硒", "绿茶"]


def test_a_zero_width_space_is_the_preferred_break_and_never_drawn() -> None:
    """A catalog may mark a name's natural break with U+200B."""
    assert wrap_text("金寨\u200b山核桃仁", 10, width) == ["金寨", "山核桃仁"]
    assert wrap_text("金寨\u200b山核桃仁", 12, width) == ["金寨山核桃仁"]
    assert wrap_text("abc\u200bdef", 4, width) == ["abc", "def"]
