"""The kiosk's SQLite store: open it with `open_store(data_dir)`; see `kiosk.store.db`."""

from kiosk.store.db import CORRUPT_MARKER, DB_FILENAME, Store, open_store, recover_store
from kiosk.store.errors import (
    PlanogramConflict,
    SchemaTooNew,
    StoreClosed,
    StoreCorrupt,
    StoreError,
)
from kiosk.store.migrations import LATEST_VERSION, MIGRATIONS, Migration, migrate
from kiosk.store.repos import StockLogEntry

__all__ = [
    "CORRUPT_MARKER",
    "DB_FILENAME",
    "LATEST_VERSION",
    "MIGRATIONS",
    "Migration",
    "PlanogramConflict",
    "SchemaTooNew",
    "StockLogEntry",
    "Store",
    "StoreClosed",
    "StoreCorrupt",
    "StoreError",
    "migrate",
    "open_store",
    "recover_store",
]
