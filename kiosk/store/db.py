"""Opening the kiosk's SQLite store: pragmas, integrity check, migrations, corrupt-file handling.

Owns: the database file `kiosk.db` in the data dir, its WAL and SHM files, and the
`STORE_CORRUPT` marker. Must never recreate a database silently: a database that fails its
integrity check is moved aside, the marker says what happened and where the files went, and
every later open refuses (StoreCorrupt) until a technician runs `recover_store`.
The whole database records money and stock, so every connection runs with synchronous=FULL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType

from kiosk.clock import Clock, SystemClock
from kiosk.store.connection import Database
from kiosk.store.errors import StoreCorrupt, StoreError
from kiosk.store.migrations import current_version, migrate
from kiosk.store.repos import CatalogRepo, CounterRepo, PlanogramRepo, SettingsRepo, StockRepo

__all__ = [
    "CORRUPT_MARKER",
    "DB_FILENAME",
    "Store",
    "open_store",
    "recover_store",
]

DB_FILENAME = "kiosk.db"
CORRUPT_MARKER = "STORE_CORRUPT"
BUSY_TIMEOUT_MS = 5000
_SIDE_FILES = ("", "-wal", "-shm")
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_MOVED_TO = "moved_to: "


class Store:
    """The open store. Share one per process; it is safe to use from several threads.

    Repositories: `catalog`, `planogram`, `stock`, `settings`, `counters`. Use
    `with store.transaction():` to make several repository calls one atomic, durable change.
    """

    def __init__(self, db: Database, data_dir: Path) -> None:
        self._db = db
        self.data_dir = data_dir
        self.path = data_dir / DB_FILENAME
        self.catalog = CatalogRepo(db)
        self.planogram = PlanogramRepo(db)
        self.stock = StockRepo(db)
        self.settings = SettingsRepo(db)
        self.counters = CounterRepo(db)
        self._epoch: str | None = None

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (a savepoint when nested). Durable when the block exits."""
        return self._db.transaction()

    def read(self) -> AbstractContextManager[sqlite3.Connection]:
        """A consistent read snapshot. Do not write inside it; use `transaction()`."""
        return self._db.read()

    def change_token(self) -> tuple[int, int, int]:
        """Equal on two calls only if nothing was written to the store in between, by this
        process or another (kiosk.store.connection.Database.change_token)."""
        return self._db.change_token()

    @property
    def epoch(self) -> str:
        """The store epoch: 4 base32 digits, random at creation, part of every order id."""
        if self._epoch is None:
            with self._db.read() as conn:
                row = conn.execute("SELECT epoch FROM store_identity WHERE id = 1").fetchone()
            self._epoch = "" if row is None else str(row[0])
        return self._epoch

    def identity(self) -> dict[str, object]:
        """The store_identity row: epoch, created_at, origin (new/upgraded/recovered), detail."""
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT epoch, created_at, origin, detail FROM store_identity WHERE id = 1"
            ).fetchone()
        if row is None:
            return {}
        return {"epoch": row[0], "created_at": row[1], "origin": row[2], "detail": row[3]}

    def checkpoint(self) -> bool:
        """Fold the WAL into the database and truncate it (the controller calls this when
        idle, so the WAL's growth up to the auto-checkpoint size, ~4 MB, does not eat into the
        free-space limit unseen). True when it completed."""
        busy, _left = self._db.checkpoint()
        return busy == 0

    def wal_bytes(self) -> int:
        try:
            return (self.path.parent / (self.path.name + "-wal")).stat().st_size
        except OSError:
            return 0

    def schema_version(self) -> int:
        with self._db.read() as conn:
            return current_version(conn)

    @property
    def closed(self) -> bool:
        return self._db.closed

    def close(self) -> None:
        """Close the connection (SQLite checkpoints the WAL). Later use raises StoreClosed."""
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _is_corruption(e: sqlite3.DatabaseError) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return True
    text = str(e).lower()
    return "not a database" in text or "malformed" in text or "corrupt" in text


def open_store(data_dir: Path, clock: Clock | None = None) -> Store:
    """Open (creating if needed) the store in `data_dir`, check it and migrate it to the latest
    schema.

    Raises StoreCorrupt if the database is marked corrupt or fails its integrity check (the
    files are then moved aside and the marker written), SchemaTooNew if it was written by newer
    software, StoreError for anything else that keeps the store from opening.
    """
    clock = clock or SystemClock()
    data_dir = Path(data_dir)
    _private_dir(data_dir)
    marker = data_dir / CORRUPT_MARKER
    if marker.exists():
        raise StoreCorrupt(marker.read_text(encoding="utf-8", errors="replace"))
    path = data_dir / DB_FILENAME
    if not path.exists() and any(data_dir.glob(DB_FILENAME + ".corrupt-*")):
        raise StoreCorrupt(
            "STORE CORRUPT: a corrupt database was moved aside here earlier "
            f"({', '.join(sorted(p.name for p in data_dir.glob(DB_FILENAME + '.corrupt-*')))}) "
            "and the STORE_CORRUPT marker is missing, so no fresh database is created.\n"
            "Run `kiosk store recover` to salvage it into a new store.\n"
        )
    try:
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
    except sqlite3.Error as e:
        raise StoreError(f"cannot open {path}: {e}") from e
    try:
        _private_files(data_dir)  # the file exists now, created under whatever umask
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise _Corrupt("PRAGMA quick_check: " + "; ".join(problems[:10]))
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: cannot switch to WAL journal mode (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, clock=clock)
        _private_files(data_dir)  # the -wal and -shm files exist from the first write on
        _fsync_dir(data_dir)  # a newly created database file must survive power loss too
    except _Corrupt as e:
        conn.close()
        _quarantine(data_dir, str(e), clock)
    except sqlite3.DatabaseError as e:
        conn.close()
        if _is_corruption(e):
            _quarantine(data_dir, f"{type(e).__name__}: {e}", clock)
        raise StoreError(f"cannot open {path}: {e}") from e
    except BaseException:
        conn.close()
        raise
    return Store(Database(conn, clock), data_dir)


class _Corrupt(Exception):
    pass


DIR_MODE = 0o700
FILE_MODE = 0o600


def _private_dir(d: Path) -> None:
    """Create the data dir 0700 whatever the umask (mkdir's mode is masked by it, hence the
    chmod); an existing one that lets group or others in is tightened to 0700 too: it holds
    money, stock and keys, and only the kiosk's own user has any business in it."""
    d.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    st = d.stat()
    if st.st_mode & 0o077 and st.st_uid == os.geteuid():
        os.chmod(d, DIR_MODE)


def _private_files(d: Path) -> None:
    """kiosk.db, its -wal/-shm files and the corrupt marker: 0600, whatever the umask (SQLite
    creates them with 0644 & ~umask; os.umask is process-wide, so chmod after the fact)."""
    for name in (*(DB_FILENAME + s for s in _SIDE_FILES), CORRUPT_MARKER):
        with contextlib.suppress(FileNotFoundError):
            _chmod_private(d / name)


def _chmod_private(path: Path) -> None:
    if path.stat().st_mode & 0o777 != FILE_MODE:
        os.chmod(path, FILE_MODE)


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _quarantine(data_dir: Path, reason: str, clock: Clock) -> None:
    """Move the database files aside, write the marker, raise StoreCorrupt. Never returns."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock.time()))
    base = f"{DB_FILENAME}.corrupt-{stamp}"
    n = 1
    while any((data_dir / (base + s)).exists() for s in _SIDE_FILES):
        n += 1
        base = f"{DB_FILENAME}.corrupt-{stamp}-{n}"
    moved: list[str] = []
    for suffix in _SIDE_FILES:
        src = data_dir / (DB_FILENAME + suffix)
        if src.exists():
            os.replace(src, data_dir / (base + suffix))
            moved.append(base + suffix)
    target = data_dir / base
    report = (
        "STORE CORRUPT: the kiosk database failed its integrity check and was moved aside.\n"
        "The kiosk is out of service until a technician saves the moved files and runs "
        "`kiosk store recover`.\n"
        f"detected_at: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(clock.time()))}\n"
        f"reason: {' '.join(reason.split())}\n"
        f"{_MOVED_TO}{target}\n"
        f"files: {', '.join(moved) or '(none)'}\n"
    )
    marker = data_dir / CORRUPT_MARKER
    tmp = data_dir / (CORRUPT_MARKER + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # O_CREAT's mode is masked by the umask; an old tmp keeps its own
    with open(fd, "w", encoding="utf-8") as f:
        f.write(report)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, marker)
    _fsync_dir(data_dir)
    raise StoreCorrupt(report)


def recover_store(data_dir: Path, clock: Clock | None = None) -> Path | None:
    """After a corruption: clear the STORE_CORRUPT marker, create a fresh store with a new epoch
    and salvage every readable row of the moved-aside database into it (kiosk.store.salvage:
    orders, ledger, outbox, stock, catalog, ... carried forward; counters re-based past anything
    the old store or the board may remember). What was carried is in `store_identity.detail`.

    Returns where the corrupt files were moved (as recorded in the marker), or None when there
    was no marker. The moved files are left in place for analysis.
    """
    from kiosk.store.salvage import salvage_into

    data_dir = Path(data_dir)
    marker = data_dir / CORRUPT_MARKER
    try:
        text = marker.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    moved: Path | None = None
    for line in text.splitlines():
        if line.startswith(_MOVED_TO):
            moved = Path(line[len(_MOVED_TO) :])
    if (data_dir / DB_FILENAME).exists():
        raise StoreError(
            f"{data_dir / DB_FILENAME} exists next to the STORE_CORRUPT marker; move it away "
            "by hand before recovering (nothing was changed)"
        )
    # build the new store beside, then move it in, then drop the marker: a power cut at any
    # point leaves either the marker (recover again) or the complete new store
    work = data_dir / ".recover"
    shutil.rmtree(work, ignore_errors=True)
    open_store(work, clock).close()  # fresh, migrated, with a new epoch; WAL checkpointed
    salvage_into(moved if moved is not None else work / "(missing)", work / DB_FILENAME)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(work / (DB_FILENAME + "-shm"))
    for suffix in ("-wal", ""):  # the WAL (if a checkpoint left one) first, then the database
        src = work / (DB_FILENAME + suffix)
        if src.exists():
            _fsync_file(src)
            os.replace(src, data_dir / (DB_FILENAME + suffix))
    _fsync_dir(data_dir)
    shutil.rmtree(work, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        marker.unlink()
    _fsync_dir(data_dir)
    return moved


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
