"""Money is integer fen: formatting, parsing, and the absence of floats."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk.core.money import MoneyError, format_fen, parse_yuan, yuan_str

MAX_PARSABLE_FEN = 999_999_999_99  # parse_yuan takes at most 9 digits of whole yuan


@pytest.mark.parametrize(
    ("fen", "text"),
    [
        (0, "¥0.00"),
        (1, "¥0.01"),
        (5, "¥0.05"),
        (10, "¥0.10"),
        (99, "¥0.99"),
        (100, "¥1.00"),
        (990, "¥9.90"),
        (1280, "¥12.80"),
        (16800, "¥168.00"),
        (100_000_000, "¥1000000.00"),
        (-5, "-¥0.05"),
        (-1280, "-¥12.80"),
    ],
)
def test_format_fen_examples(fen: int, text: str) -> None:
    assert format_fen(fen) == text


@pytest.mark.parametrize(
    ("fen", "text"), [(0, "0.00"), (5, "0.05"), (1280, "12.80"), (-5, "-0.05")]
)
def test_yuan_str_examples(fen: int, text: str) -> None:
    assert yuan_str(fen) == text


@pytest.mark.parametrize("bad", [12.8, 0.0, 1e3, True, False, "1280", None])
def test_format_rejects_non_int(bad: object) -> None:
    with pytest.raises(TypeError, match="int fen"):
        format_fen(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        yuan_str(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("0", 0),
        ("0.01", 1),
        ("12", 1200),
        ("12.8", 1280),
        ("12.80", 1280),
        ("¥12.80", 1280),
        ("￥12.80", 1280),  # full-width yen sign, as typed with a Chinese IME
        ("¥ 9.90", 990),
        ("  168.00 ", 16800),
        ("007.5", 750),
        ("999999999.99", MAX_PARSABLE_FEN),
    ],
)
def test_parse_yuan_examples(text: str, fen: int) -> None:
    assert parse_yuan(text) == fen


@pytest.mark.parametrize(
    "bad",
    [
        "",
        " ",
        "¥",
        "12.345",  # three decimals
        "0.001",
        "-5",
        "-0.05",
        "-¥1.00",
        "abc",
        "十二元",
        "12,80",
        "12.8.0",
        "1e3",
        "1.2e1",
        ".5",
        "12.",
        "1 2",
        "$12",
        "1000000000",  # ten digits of yuan: out of range
        "nan",
        "inf",
    ],
)
def test_parse_yuan_rejects(bad: str) -> None:
    with pytest.raises(MoneyError, match="not an amount"):
        parse_yuan(bad)


def test_money_error_is_a_value_error() -> None:
    assert issubclass(MoneyError, ValueError)


@pytest.mark.parametrize("bad", [12.8, 1280, None])
def test_parse_yuan_rejects_non_strings(bad: object) -> None:
    with pytest.raises(TypeError):
        parse_yuan(bad)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=MAX_PARSABLE_FEN))
def test_parse_inverts_yuan_str(fen: int) -> None:
    assert parse_yuan(yuan_str(fen)) == fen
    assert parse_yuan(format_fen(fen)) == fen


@given(st.integers(min_value=MAX_PARSABLE_FEN + 1, max_value=10**15))
def test_parse_rejects_amounts_beyond_range(fen: int) -> None:
    with pytest.raises(MoneyError):
        parse_yuan(yuan_str(fen))


_FORMATTED = re.compile(r"^-?¥\d+\.\d\d$")


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_format_is_plain_decimal_with_two_places(fen: int) -> None:
    text = format_fen(fen)
    assert _FORMATTED.match(text), text
    assert "e" not in text.lower()
    assert text.startswith("-") == (fen < 0)
    # the digits are exactly the integer, no rounding anywhere
    assert int(text.replace("¥", "").replace(".", "")) == fen


@given(st.lists(st.integers(min_value=0, max_value=10**8), max_size=50))
def test_sum_of_formatted_parts_equals_formatted_sum(parts: list[int]) -> None:
    total_from_text = sum(parse_yuan(format_fen(p)) for p in parts)
    assert total_from_text == sum(parts)
    assert format_fen(total_from_text) == format_fen(sum(parts))


def test_no_float_drift() -> None:
    # 0.1 + 0.2 != 0.3 in floats; in fen, ten items at ¥0.10 are exactly ¥1.00
    assert format_fen(sum(parse_yuan("0.10") for _ in range(10))) == "¥1.00"
    assert format_fen(parse_yuan("0.1") + parse_yuan("0.2")) == "¥0.30"


@pytest.mark.parametrize("text", ["１２.５", "1_0", "+1", "12.345"])
def test_parse_yuan_rejects_non_ascii_digits_and_oddities(text: str) -> None:
    with pytest.raises(MoneyError):
        parse_yuan(text)
