"""Errors raised by the store.

Owns: the exception hierarchy of `kiosk.store`. Must never import sqlite3 or do I/O: callers
catch these without knowing how the store is built.
"""

from __future__ import annotations

__all__ = ["PlanogramConflict", "SchemaTooNew", "StoreClosed", "StoreCorrupt", "StoreError"]


class StoreError(Exception):
    """The store cannot do what was asked. The kiosk must not sell while this is unresolved."""


class StoreCorrupt(StoreError):
    """The database failed its integrity check, or is marked corrupt from an earlier start.

    The files were moved aside (never recreated silently); a technician must recover the store.
    `report` is the text of the STORE_CORRUPT marker: what happened and where the files went.
    """

    def __init__(self, report: str) -> None:
        self.report = report
        super().__init__(report)


class SchemaTooNew(StoreError):
    """The database was written by newer software than this one; it is left untouched."""


class StoreClosed(StoreError):
    """The store was used after `close()`."""


class PlanogramConflict(StoreError):
    """A new planogram would drop, re-assign or overfill slots that still hold stock.

    `problems` names each slot and what would happen to its items.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "planogram not applied, slots still hold stock (empty them first, or apply it as "
            "a technician removal): " + "; ".join(problems)
        )
