"""Planogram layout, validation and the technicians' CSV (all-or-nothing import)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.core.planogram import (
    CSV_COLUMNS,
    MAX_BOARD,
    CsvRowError,
    Planogram,
    PlanogramCsvError,
    PlanogramError,
    Slot,
    SlotKind,
    planogram_from_csv,
    planogram_to_csv,
)
from kiosk.sim.demo_data import (
    DATA_DIR,
    DEMO_BOARD,
    DEMO_CSV_NAMES,
    demo_catalog,
    demo_csv_text,
    demo_planogram,
    write_demo_csvs,
)

CATALOG = demo_catalog()
KNOWN = CATALOG.products
HEADER = ",".join(CSV_COLUMNS)


def csv_of(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def rejected(text: str) -> list[CsvRowError]:
    with pytest.raises(PlanogramCsvError) as info:
        planogram_from_csv(text, 2, KNOWN)
    return info.value.errors


# --- demo planograms -------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "n"), [(SlotKind.SPIRAL, 60), (SlotKind.LOCKER, 24)])
def test_demo_planogram_sizes(kind: SlotKind, n: int) -> None:
    p = demo_planogram(kind)
    assert len(p) == n
    assert p.version == 1
    assert all(s.kind is kind for s in p)
    assert p.product_ids() <= set(KNOWN)


def test_demo_spiral_layout() -> None:
    p = demo_planogram(SlotKind.SPIRAL)
    assert list(p.slots) == [r * 10 + c for r in range(1, 7) for c in range(10)]
    for s in p:
        assert (s.row, s.col) == divmod(s.slot_no, 10)
        assert s.board == DEMO_BOARD == 0  # the main board
        assert s.address == (s.row - 1) * 10 + s.col
        assert 8 <= s.capacity <= 12
    filled = [s for s in p if s.product_id]
    assert len(filled) >= 54  # a few empty slots at most
    counts = Counter(s.product_id for s in filled)
    assert max(counts.values()) == 3
    assert sum(1 for n in counts.values() if n >= 2) >= 5  # popular items in 2-3 spirals


def test_demo_locker_layout() -> None:
    p = demo_planogram(SlotKind.LOCKER)
    assert list(p.slots) == list(range(1, 25))
    for s in p:
        assert s.board == DEMO_BOARD and s.address == s.slot_no - 1 and s.capacity == 1
        assert (s.row - 1, s.col) == divmod(s.slot_no - 1, 6)
    assert sum(1 for s in p if s.product_id) >= 20
    # gift boxes, crafts and heavy items
    lockers = {CATALOG[pid].category.value for pid in p.product_ids()}
    assert {"crafts", "fruit", "grain_oil"} <= lockers


@pytest.mark.parametrize("kind", list(SlotKind))
def test_demo_planogram_csv_round_trip(kind: SlotKind) -> None:
    original = demo_planogram(kind)
    text = planogram_to_csv(original)
    assert text.splitlines()[0] == HEADER
    assert len(text.splitlines()) == len(original) + 1
    assert planogram_from_csv(text, 1, KNOWN) == original


@pytest.mark.parametrize("kind", list(SlotKind))
def test_committed_demo_csvs_are_current(kind: SlotKind) -> None:
    committed = DATA_DIR / DEMO_CSV_NAMES[kind]
    assert committed.read_text(encoding="utf-8") == demo_csv_text(kind), (
        f"{committed} is stale: regenerate with `python -m kiosk.sim.demo_data`"
    )
    assert planogram_from_csv(committed.read_text(encoding="utf-8"), 1, KNOWN) == demo_planogram(
        kind
    )


def test_write_demo_csvs(tmp_path: Path) -> None:
    paths = write_demo_csvs(tmp_path)
    assert sorted(p.name for p in paths) == sorted(DEMO_CSV_NAMES.values())
    for kind, name in DEMO_CSV_NAMES.items():
        assert (tmp_path / name).read_text(encoding="utf-8") == demo_csv_text(kind)
    assert write_demo_csvs(tmp_path) == paths  # idempotent


# --- generated planograms --------------------------------------------------------------------

PRODUCT_IDS = sorted(KNOWN)


@st.composite
def planograms(draw: st.DrawFn) -> Planogram:
    n = draw(st.integers(min_value=1, max_value=30))
    slot_nos = draw(st.lists(st.integers(1, 9999), min_size=n, max_size=n, unique=True))
    hws = draw(
        st.lists(
            st.tuples(st.integers(0, MAX_BOARD), st.integers(0, 255)),
            min_size=n,
            max_size=n,
            unique=True,
        )
    )
    slots = []
    for slot_no, (board, address) in zip(slot_nos, hws, strict=True):
        kind = draw(st.sampled_from(SlotKind))
        capacity = 1 if kind is SlotKind.LOCKER else draw(st.integers(1, 50))
        pid = draw(st.none() | st.sampled_from(PRODUCT_IDS))
        row, col = draw(st.integers(0, 20)), draw(st.integers(0, 20))
        slots.append(Slot(slot_no, board, address, kind, capacity, pid, row, col))
    return Planogram.of(draw(st.integers(1, 10_000)), slots)


@settings(max_examples=60, deadline=None)
@given(planograms())
def test_csv_round_trip(p: Planogram) -> None:
    text = planogram_to_csv(p)
    assert planogram_from_csv(text, p.version, KNOWN) == p
    # and again with a BOM and Windows line endings, as a spreadsheet would save it
    crlf = "\ufeff" + text.replace("\n", "\r\n")
    assert planogram_from_csv(crlf, p.version, KNOWN) == p


# --- accepted variations ---------------------------------------------------------------------


def test_bom_accepted() -> None:
    text = "\ufeff" + csv_of("10,1,0,spiral,1,0,10,TEA-LAGP-50")
    p = planogram_from_csv(text, 7, KNOWN)
    assert p.version == 7
    assert p.slots[10] == Slot(10, 1, 0, SlotKind.SPIRAL, 10, "TEA-LAGP-50", 1, 0)


def test_lenient_cells_blank_lines_and_empty_slots() -> None:
    text = csv_of(
        " 11 , 1 , 1 , Spiral , 1 , 1 , 10 , TEA-LAGP-50 ",
        "",
        ",,,,,,,",
        "10,1,0,LOCKER,1,0,1,",
    )
    p = planogram_from_csv(text, 1, KNOWN)
    assert list(p.slots) == [10, 11]  # sorted by slot number
    assert p.slots[10].product_id is None and p.slots[10].kind is SlotKind.LOCKER
    assert p.slots[11].product_id == "TEA-LAGP-50" and p.slots[11].kind is SlotKind.SPIRAL
    assert p.product_ids() == {"TEA-LAGP-50"}


def test_known_products_may_be_any_iterable() -> None:
    text = csv_of("10,1,0,spiral,1,0,10,X1")
    assert planogram_from_csv(text, 1, ["X1"]).slots[10].product_id == "X1"
    assert planogram_from_csv(text, 1, {"X1": object()}).slots[10].product_id == "X1"


# --- rejected files: one error per bad row, naming the row and the reason ----------------------

GOOD_ROW = "10,1,0,spiral,1,0,10,TEA-LAGP-50"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("11,1,1,spiral,1,1,ten,TEA-LAGP-50", "capacity must be a whole number, got 'ten'"),
        ("x,1,1,spiral,1,1,10,TEA-LAGP-50", "slot must be a whole number"),
        ("11,one,1,spiral,1,1,10,TEA-LAGP-50", "board must be a whole number"),
        ("11,1,1.5,spiral,1,1,10,TEA-LAGP-50", "address must be a whole number, got '1.5'"),
        ("11,1,1,spiral,,1,10,TEA-LAGP-50", "row must be a whole number, got ''"),
        ("11,1,1,spiral,1,c,10,TEA-LAGP-50", "col must be a whole number"),
        ("11,1,1,conveyor,1,1,10,TEA-LAGP-50", "kind must be spiral or locker, got 'conveyor'"),
        ("11,1,1,,1,1,10,TEA-LAGP-50", "kind must be spiral or locker, got ''"),
        ("11,1,1,spiral,1,1,10,NO-SUCH", "product_id 'NO-SUCH' is not in the catalog"),
        ("10,1,1,spiral,1,1,10,TEA-LAGP-50", "slot 10 already defined on row 2"),
        ("11,1,0,spiral,1,1,10,TEA-LAGP-50", "board 1 address 0 already used on row 2"),
        ("11,1,1,spiral,1,1,0,TEA-LAGP-50", "capacity must be 1..50, got 0"),
        ("11,1,1,spiral,1,1,51,TEA-LAGP-50", "capacity must be 1..50, got 51"),
        ("11,1,1,spiral,1,1,-3,TEA-LAGP-50", "capacity must be 1..50, got -3"),
        ("11,1,1,locker,1,1,2,TEA-LAGP-50", "a locker door holds exactly 1 item, capacity 2"),
        ("0,1,1,spiral,1,1,10,TEA-LAGP-50", "slot must be 1..9999, got 0"),
        ("10000,1,1,spiral,1,1,10,TEA-LAGP-50", "slot must be 1..9999, got 10000"),
        ("11,-1,1,spiral,1,1,10,TEA-LAGP-50", f"board must be 0..{MAX_BOARD}, got -1"),
        ("11,16,1,spiral,1,1,10,TEA-LAGP-50", f"board must be 0..{MAX_BOARD}, got 16"),
        ("11,1,256,spiral,1,1,10,TEA-LAGP-50", "address must be 0..255, got 256"),
        ("11,1,-1,spiral,1,1,10,TEA-LAGP-50", "address must be 0..255, got -1"),
        ("11,1,1,spiral,1,1,10,TEA-LAGP-50,extra", "more cells than header columns (8)"),
        ("11,1,1,spiral,1,1,10,TEA-LAGP-50,", "more cells than header columns (8)"),
        ("11,1,1,spiral,1,1,10", "fewer cells than header columns (8)"),
        ("11", "fewer cells than header columns (8)"),
    ],
)
def test_bad_row(row: str, reason: str) -> None:
    errors = rejected(csv_of(GOOD_ROW, row))
    assert len(errors) == 1
    assert errors[0].row == 3  # header is line 1, the good row line 2
    assert reason in errors[0].message
    assert str(errors[0]).startswith("row 3: ")


def test_several_bad_rows_one_error_each_good_rows_silent() -> None:
    text = csv_of(
        GOOD_ROW,  # 2
        "11,1,1,spiral,1,1,10,NO-SUCH",  # 3
        "12,1,2,spiral,1,2,10,TEA-LAGP-50",  # 4 good
        "13,1,3,drawer,1,3,10,TEA-LAGP-50",  # 5
        "14,1,4,locker,1,4,3,TEA-LAGP-50",  # 6
        "15,1,5,spiral,1,5,10",  # 7
        "12,1,6,spiral,1,6,10,TEA-LAGP-50",  # 8: slot 12 again
        "16,1,0,spiral,1,6,10,TEA-LAGP-50",  # 9: board 1 address 0 again
    )
    errors = rejected(text)
    assert [e.row for e in errors] == [3, 5, 6, 7, 8, 9]
    assert "not in the catalog" in errors[0].message
    assert "kind must be" in errors[1].message
    assert "locker door" in errors[2].message
    assert "fewer cells" in errors[3].message
    assert "already defined on row 4" in errors[4].message
    assert "already used on row 2" in errors[5].message
    # the exception text lists every error, one per line, for the technician
    with pytest.raises(PlanogramCsvError) as info:
        planogram_from_csv(text, 2, KNOWN)
    assert str(info.value).splitlines() == [str(e) for e in errors]


def test_one_row_with_several_problems_reports_them_all() -> None:
    errors = rejected(csv_of("x,y,1,drawer,1,1,10,NO-SUCH"))
    assert {e.row for e in errors} == {2}
    text = " | ".join(e.message for e in errors)
    for part in ("slot must be", "board must be", "kind must be", "not in the catalog"):
        assert part in text


def test_row_numbers_count_blank_lines() -> None:
    errors = rejected(csv_of(GOOD_ROW, "", "", "11,1,1,spiral,1,1,10,NO-SUCH"))
    assert [e.row for e in errors] == [5]


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ("slot,board,address,kind,row,col,capacity", "missing column(s) product_id"),
        ("slot,board,address,kind,row,col,capacity,product_id,slot", "column(s) slot twice"),
        ("槽位,板,地址,类型,行,列,容量,商品", "missing column(s) slot, board, address"),
        ("10,1,0,spiral,1,0,10,TEA-LAGP-50", "missing column(s) slot"),  # header forgotten
    ],
)
def test_bad_header(header: str, why: str) -> None:
    errors = rejected(csv_of(GOOD_ROW, header=header))
    assert len(errors) == 1
    assert errors[0].row == 1
    assert errors[0].message.startswith(f"header must name the columns {HEADER}")
    assert why in errors[0].message


@pytest.mark.parametrize(
    "header",
    [
        "slot,board,address,kind,row,col,capacity,product_id,product_name,price",
        "Slot,Board,Address,Kind,Row,Col,Capacity,Product_id",
        "notes,slot,board,address,kind,row,col,capacity,product_id",
    ],
)
def test_headers_a_spreadsheet_writes_are_accepted(header: str) -> None:
    """Any order, any case, extra columns (product name, price, notes) ignored."""
    cols = [c.strip().lower() for c in header.split(",")]
    cells = dict(zip(HEADER.split(","), GOOD_ROW.split(","), strict=True))
    row = ",".join(cells.get(c, "anything, really" if c == "notes" else "x") for c in cols)
    row = row.replace("anything, really", '"anything, really"')
    pg = planogram_from_csv(csv_of(row, header=header), 2, KNOWN)
    assert [s.slot_no for s in pg] == [int(cells["slot"])]


def test_export_names_the_products_and_reimports() -> None:
    original = demo_planogram(SlotKind.SPIRAL)
    names = {pid: f"名{pid}" for pid in original.product_ids()}
    text = planogram_to_csv(original, names)
    assert text.splitlines()[0] == HEADER + ",product_name"
    assert any(f",名{pid}" in text for pid in names)
    back = planogram_from_csv(text, original.version, set(KNOWN) | set(names))
    assert list(back) == list(original)


@pytest.mark.parametrize("text", ["", "\ufeff", "\n", "\n\n"])
def test_empty_file(text: str) -> None:
    errors = rejected(text)
    assert len(errors) == 1 and errors[0].row == 1


@pytest.mark.parametrize("text", [HEADER, HEADER + "\n", HEADER + "\n\n,,,,,,,\n"])
def test_header_only(text: str) -> None:
    errors = rejected(text)
    assert [(e.row, e.message) for e in errors] == [(1, "the file has no slots")]


def test_nothing_applied_on_error() -> None:
    """All-or-nothing: 59 good rows and one bad one give an exception, never a partial result."""
    good = planogram_to_csv(demo_planogram(SlotKind.SPIRAL)).splitlines()
    bad_line = good[30].rsplit(",", 1)[0] + ",NO-SUCH"
    text = "\n".join([*good[:30], bad_line, *good[31:]]) + "\n"
    result: Planogram | None = None
    with pytest.raises(PlanogramCsvError) as info:
        result = planogram_from_csv(text, 2, KNOWN)
    assert result is None
    assert [e.row for e in info.value.errors] == [31]


def test_csv_error_is_a_value_error() -> None:
    assert issubclass(PlanogramCsvError, ValueError)


def test_header_with_spaces_is_accepted() -> None:
    header = ", ".join(CSV_COLUMNS)
    p = planogram_from_csv(csv_of(GOOD_ROW, header=header), 1, KNOWN)
    assert p.slots[10].product_id == "TEA-LAGP-50"


# --- Planogram.of ----------------------------------------------------------------------------


def test_planogram_of_collects_all_problems() -> None:
    slots = [
        Slot(10, 1, 0, SlotKind.SPIRAL, 10, "A"),
        Slot(10, 1, 1, SlotKind.SPIRAL, 10, "A"),
        Slot(11, 1, 0, SlotKind.SPIRAL, 10, "A"),
        Slot(12, 1, 2, SlotKind.LOCKER, 2, "A"),
    ]
    with pytest.raises(PlanogramError) as info:
        Planogram.of(1, slots)
    text = str(info.value)
    assert "slot 10: duplicate slot number" in text
    assert "slot 11: board 1 address 0 already used by slot 10" in text
    assert re.search(r"slot 12: a locker door holds exactly 1 item", text)


def test_planogram_helpers() -> None:
    p = demo_planogram(SlotKind.SPIRAL)
    lagp = p.slots_for("TEA-LAGP-50")
    assert [s.slot_no for s in lagp] == [10, 11, 12]
    assert p.slots_for("NO-SUCH") == []
    assert None not in p.product_ids()
    assert [s.slot_no for s in p] == sorted(p.slots)
