"""Planogram: which product sits in which slot of the cabinet, and the CSV technicians edit.

Owns: the Slot layout, planogram validation, CSV import/export. Pure: CSV arrives and leaves as
text; nothing here opens files. Fill levels (how many items a slot holds now) are stock, not
layout: they live in `kiosk.core.stock` because they change with every sale, while a planogram
changes only when a new version is applied.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "CSV_COLUMNS",
    "CsvRowError",
    "Planogram",
    "PlanogramCsvError",
    "PlanogramError",
    "Slot",
    "SlotKind",
    "planogram_from_csv",
    "planogram_to_csv",
]

MAX_CAPACITY = 50
MAX_BOARD = 15  # board addresses 0 (main board) .. 15 (expansion boards), see serial-protocol.md


class PlanogramError(ValueError):
    """A planogram is inconsistent."""


class SlotKind(StrEnum):
    SPIRAL = "spiral"  # spiral motor with a drop sensor
    LOCKER = "locker"  # electronic lock with a door sensor; holds one item


@dataclass(frozen=True, slots=True)
class PlanogramProblem:
    """A problem found in a planogram: `message` in English for logs, `key` + `params` for a
    reader's language (kiosk.textfile words CSV problems)."""

    message: str
    key: str = ""
    params: tuple[tuple[str, str | int], ...] = ()


@dataclass(frozen=True, slots=True)
class Slot:
    """One selling position. `slot_no` is the number technicians and shoppers see."""

    slot_no: int
    board: int  # address of the control board driving it: 0 main board, 1..15 expansion
    address: int  # motor / lock index on that board, 0-based
    kind: SlotKind
    capacity: int
    product_id: str | None  # None: slot unused
    row: int = 0  # shelf level, 1 = top; 0 = unknown
    col: int = 0

    def problems(self) -> list[str]:
        return [p.message for p in self.keyed_problems()]

    def keyed_problems(self) -> list[PlanogramProblem]:
        """`problems()` with a message key and params, for a reader's language."""
        errs: list[PlanogramProblem] = []
        for name, value, lo, hi in (
            ("slot", self.slot_no, 1, 9999),
            ("board", self.board, 0, MAX_BOARD),
            ("address", self.address, 0, 255),
            ("capacity", self.capacity, 1, MAX_CAPACITY),
        ):
            if not lo <= value <= hi:
                errs.append(
                    PlanogramProblem(
                        f"{name} must be {lo}..{hi}, got {value}",
                        "csv_range",
                        (("name", name), ("lo", lo), ("hi", hi), ("got", value)),
                    )
                )
        if self.kind is SlotKind.LOCKER and self.capacity != 1:
            errs.append(
                PlanogramProblem(
                    f"a locker door holds exactly 1 item, capacity {self.capacity} given",
                    "csv_locker_capacity",
                    (("got", self.capacity),),
                )
            )
        return errs


@dataclass(frozen=True, slots=True)
class Planogram:
    version: int
    slots: Mapping[int, Slot] = field(default_factory=dict)

    @classmethod
    def of(cls, version: int, slots: Iterable[Slot]) -> Planogram:
        by_no: dict[int, Slot] = {}
        seen_hw: dict[tuple[int, int], int] = {}
        errs: list[str] = []
        for s in slots:
            errs.extend(f"slot {s.slot_no}: {e}" for e in s.problems())
            if s.slot_no in by_no:
                errs.append(f"slot {s.slot_no}: duplicate slot number")
            hw = (s.board, s.address)
            if hw in seen_hw:
                errs.append(
                    f"slot {s.slot_no}: board {s.board} address {s.address} "
                    f"already used by slot {seen_hw[hw]}"
                )
            seen_hw[hw] = s.slot_no
            by_no[s.slot_no] = s
        if errs:
            raise PlanogramError("; ".join(errs))
        return cls(version=version, slots=dict(sorted(by_no.items())))

    def __iter__(self) -> Iterator[Slot]:
        return iter(self.slots.values())

    def __len__(self) -> int:
        return len(self.slots)

    def slots_for(self, product_id: str) -> list[Slot]:
        return [s for s in self.slots.values() if s.product_id == product_id]

    def product_ids(self) -> set[str]:
        return {s.product_id for s in self.slots.values() if s.product_id}


# --- CSV ------------------------------------------------------------------------------------

_DIGITS = re.compile(r"-?[0-9]{1,6}")
CSV_COLUMNS = ("slot", "board", "address", "kind", "row", "col", "capacity", "product_id")


@dataclass(frozen=True, slots=True)
class CsvRowError:
    row: int  # 1-based line number in the file, header is line 1
    message: str
    key: str = ""  # the message for a reader's language (kiosk.textfile), "" for none
    params: tuple[tuple[str, str | int], ...] = ()

    def __str__(self) -> str:
        return f"row {self.row}: {self.message}"


class PlanogramCsvError(ValueError):
    """The CSV was rejected as a whole; `errors` has one entry per bad row."""

    def __init__(self, errors: list[CsvRowError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def _int_field(raw: dict[str, str], name: str, errs: list[PlanogramProblem]) -> int:
    text = (raw.get(name) or "").strip()
    if not _DIGITS.fullmatch(text):
        errs.append(
            PlanogramProblem(
                f"{name} must be a whole number, got {text!r}",
                "csv_int",
                (("name", name), ("got", repr(text))),
            )
        )
        return 0
    return int(text)


def _header_error(header: tuple[str, ...]) -> CsvRowError | None:
    missing = [c for c in CSV_COLUMNS if c not in header]
    twice = sorted({c for c in header if c and header.count(c) > 1})
    if not (missing or twice):
        return None
    why = f"missing column(s) {', '.join(missing)}" if missing else ""
    why += ("; " if why else "") + (f"column(s) {', '.join(twice)} twice" if twice else "")
    return CsvRowError(
        1,
        f"header must name the columns {','.join(CSV_COLUMNS)} (any order; other "
        f"columns such as product_name or notes are ignored): {why}",
        "csv_header",
        (
            ("columns", ",".join(CSV_COLUMNS)),
            ("missing", ", ".join(missing) or "-"),
            ("twice", ", ".join(twice) or "-"),
        ),
    )


def _row_slot(raw: dict[str, str], known: set[str], errs: list[PlanogramProblem]) -> Slot | None:
    """The slot one CSV row describes, or None with `errs` saying why."""
    slot_no = _int_field(raw, "slot", errs)
    board = _int_field(raw, "board", errs)
    address = _int_field(raw, "address", errs)
    row = _int_field(raw, "row", errs)
    col = _int_field(raw, "col", errs)
    capacity = _int_field(raw, "capacity", errs)
    kind_text = raw["kind"].strip().lower()
    try:
        kind = SlotKind(kind_text)
    except ValueError:
        got = (("got", repr(kind_text)),)
        errs.append(
            PlanogramProblem(f"kind must be spiral or locker, got {kind_text!r}", "csv_kind", got)
        )
        kind = SlotKind.SPIRAL
    pid = raw["product_id"].strip() or None
    if pid is not None and pid not in known:
        errs.append(
            PlanogramProblem(
                f"product_id {pid!r} is not in the catalog",
                "csv_unknown_product",
                (("product", pid),),
            )
        )
    if errs:
        return None
    slot = Slot(slot_no, board, address, kind, capacity, pid, row, col)
    errs.extend(slot.keyed_problems())
    return None if errs else slot


def planogram_from_csv(
    text: str, version: int, known_products: Iterable[str] | Mapping[str, object]
) -> Planogram:
    """Parse a technician's CSV. All-or-nothing: any bad row rejects the whole file."""
    known = set(known_products)
    if text.startswith("\ufeff"):  # spreadsheets on Windows save UTF-8 with a BOM
        text = text[1:]
    reader = csv.DictReader(io.StringIO(text))
    header = tuple(h.strip().lower() for h in (reader.fieldnames or ()))
    bad_header = _header_error(header)
    if bad_header is not None:
        raise PlanogramCsvError([bad_header])
    reader.fieldnames = list(header)  # look rows up by the stripped names
    errors: list[CsvRowError] = []
    slots: list[Slot] = []
    first_row: dict[int, int] = {}
    hw_row: dict[tuple[int, int], int] = {}
    n = (("n", len(header)),)
    for raw in reader:
        line = reader.line_num
        if None in raw:
            more = f"more cells than header columns ({len(header)})"
            errors.append(CsvRowError(line, more, "csv_more_cells", n))
            continue
        if any(raw.get(c) is None for c in CSV_COLUMNS):
            fewer = f"fewer cells than header columns ({len(header)})"
            errors.append(CsvRowError(line, fewer, "csv_fewer_cells", n))
            continue
        if not any((raw.get(c) or "").strip() for c in CSV_COLUMNS):
            continue  # blank line (or only notes)
        errs: list[PlanogramProblem] = []
        slot = _row_slot(raw, known, errs)
        if slot is not None:
            if slot.slot_no in first_row:
                at = first_row[slot.slot_no]
                errs.append(
                    PlanogramProblem(
                        f"slot {slot.slot_no} already defined on row {at}",
                        "csv_slot_twice",
                        (("slot", slot.slot_no), ("at", at)),
                    )
                )
            hw = (slot.board, slot.address)
            if hw in hw_row:
                errs.append(
                    PlanogramProblem(
                        f"board {hw[0]} address {hw[1]} already used on row {hw_row[hw]}",
                        "csv_hw_twice",
                        (("board", hw[0]), ("address", hw[1]), ("at", hw_row[hw])),
                    )
                )
            if not errs:
                first_row[slot.slot_no] = line
                hw_row[hw] = line
                slots.append(slot)
        errors.extend(CsvRowError(line, e.message, e.key, e.params) for e in errs)
    if errors:
        raise PlanogramCsvError(errors)
    if not slots:
        raise PlanogramCsvError([CsvRowError(1, "the file has no slots", "csv_no_slots")])
    return Planogram.of(version, slots)


def planogram_to_csv(planogram: Planogram, names: Mapping[str, str] | None = None) -> str:
    """The CSV `planogram_from_csv` reads; with `names` (product id -> name) a last column
    `product_name` for the reader (ignored on import)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow((*CSV_COLUMNS, "product_name") if names is not None else CSV_COLUMNS)
    for s in planogram:
        row: list[object] = [
            s.slot_no,
            s.board,
            s.address,
            s.kind.value,
            s.row,
            s.col,
            s.capacity,
            s.product_id or "",
        ]
        if names is not None:
            row.append(names.get(s.product_id, "") if s.product_id else "")
        w.writerow(row)
    return out.getvalue()
