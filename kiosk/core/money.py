"""Money as integer fen (1 yuan = 100 fen).

Owns: parsing and formatting of amounts. Never uses floats: a float anywhere near money is a bug,
so `parse_yuan` works on the decimal string and `format_fen` on integer division.
"""

from __future__ import annotations

import re

__all__ = ["MoneyError", "format_fen", "parse_yuan", "yuan_str"]

_YUAN_RE = re.compile(r"\s*[¥￥]?\s*(?P<int>[0-9]{1,9})(?:\.(?P<frac>[0-9]{1,2}))?\s*")


class MoneyError(ValueError):
    """An amount could not be parsed or is out of range."""


def yuan_str(fen: int) -> str:
    """`1280` -> `"12.80"`; negative amounts get a leading minus."""
    if not isinstance(fen, int) or isinstance(fen, bool):
        raise TypeError(f"money must be int fen, got {type(fen).__name__}")
    sign = "-" if fen < 0 else ""
    whole, frac = divmod(abs(fen), 100)
    return f"{sign}{whole}.{frac:02d}"


def format_fen(fen: int) -> str:
    """`1280` -> `"¥12.80"`, `-5` -> `"-¥0.05"`."""
    s = yuan_str(fen)
    return f"-¥{s[1:]}" if s.startswith("-") else f"¥{s}"


def parse_yuan(text: str) -> int:
    """Parse `"12.8"`, `"12.80"`, `"¥12"` into fen. Rejects negatives, >2 decimals, floats."""
    m = _YUAN_RE.fullmatch(text)
    if m is None:
        raise MoneyError(f"not an amount in yuan (e.g. 12.80): {text!r}")
    frac = (m.group("frac") or "").ljust(2, "0")
    return int(m.group("int")) * 100 + int(frac)
