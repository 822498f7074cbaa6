"""The state database (``<state_dir>/gateway.db``): how every process opens it, creates it and writes to it.

Three rules, each from a way the database was lost before:

- **Only SQLite opens the file.** POSIX advisory locks belong to a (process, file) pair: closing *any*
  descriptor of the database in a process drops every lock its SQLite connections hold, so the next
  process to close its connection believes it is the last one, checkpoints and deletes the WAL a running
  service is still writing to (SQLite's "How To Corrupt An SQLite Database File", §2.2). Permissions are
  therefore set by path (``os.chmod``), and a new database is built under a temporary name — a fresh
  inode no connection has seen — and linked into place whole.
- **A database that existed is never recreated implicitly.** Creating one leaves a marker beside it
  (``gateway.db.created``); an empty ``gateway.db``, a missing one where the marker or its WAL shows it
  existed, or a ``-shm`` whose ``-wal`` was deleted stop every command with one line saying how to get
  out (restore a backup, or ``lora-gw state init`` to start again deliberately).
- **The real cause of a failed write is reported.** SQLite rolls a transaction back by itself on some
  errors (``database or disk is full``); ``transaction`` rolls back only what is still open, so a
  ``ROLLBACK`` of nothing never hides the cause.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from gateway.errors import GatewayError

log = logging.getLogger(__name__)

PAGE_SIZE = 1024  # small pages: a WAL commit writes every page it dirtied in full (see the outbox)
MARKER_SUFFIX = ".created"
_MARKER_TEXT = (
    "{name} was created here on {utc}.\n"
    "Keep this file: while it exists, lora-gw refuses to start over silently when {name} goes missing\n"
    "or is emptied (restore a backup, or run `lora-gw state init` to start a new, empty database).\n"
)
_create_lock = threading.RLock()  # one creator per process; across processes the link is atomic


class StateDbError(GatewayError):
    """The state database is missing, emptied or unusable; the message says how to get out."""

    reason = "state_db"


def marker_path(db: Path) -> Path:
    return db.with_name(db.name + MARKER_SUFFIX)


def _created_on(db: Path) -> str:
    try:
        first = marker_path(db).read_text(errors="replace").split("\n", 1)[0]
    except OSError:
        return ""
    return first.rsplit(" on ", 1)[-1].rstrip(".") if " on " in first else ""


@dataclass(frozen=True, slots=True)
class Problem:
    """Why an existing state database must not be used (or recreated) as it is."""

    kind: str  # "missing" | "empty" | "wal_lost"
    message: str


_LOST = "its node registry (keys, counters) and undelivered frames"
_WAY_OUT = "restore it from a backup, or run `lora-gw state init` to start a new, empty one"


def problem(db: Path) -> Problem | None:
    """What is wrong with ``db`` before anything opens it (None: usable, or a fresh state directory).

    Looks with ``stat`` only (it opens no descriptor of the database)."""
    wal, shm, marker = Path(f"{db}-wal"), Path(f"{db}-shm"), marker_path(db)
    try:
        size = db.stat().st_size
    except FileNotFoundError:
        size = None
    since = _created_on(db)
    if size is None:
        if wal.exists():
            return Problem(
                "missing",
                f"{db} is missing but its write-ahead log {wal.name} is still there: {_LOST} are not"
                f" readable without it; put {db.name} back (from a backup), or run `lora-gw state init`"
                " to set the remnants aside and start a new, empty database",
            )
        if marker.exists():
            had = f", created {since}" if since else ""
            return Problem(
                "missing",
                f"{db} is missing but this state directory had one{had}: {_LOST} are gone; {_WAY_OUT}",
            )
        return None
    if size == 0:
        had = f"; created {since}" if since else ""
        return Problem("empty", f"{db} is empty (0 bytes{had}): {_LOST} are gone; {_WAY_OUT}")
    if shm.exists() and not wal.exists():
        time.sleep(0.05)  # never a transient state (SQLite creates -wal before -shm and deletes it after)
        if shm.exists() and not wal.exists():
            return Problem(
                "wal_lost",
                f"{wal} was deleted (its {shm.name} is still there): the changes since the last checkpoint"
                " (recent counters, frames, registry edits) are gone; restore a backup, or run"
                " `lora-gw state init` to continue with the database as it is",
            )
    return None


def _write_marker(db: Path) -> None:
    marker = marker_path(db)
    if marker.exists():
        return
    utc = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}-{secrets.token_hex(4)}")
    with open(os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600), "w") as fh:  # not the database
        fh.write(_MARKER_TEXT.format(name=db.name, utc=utc))
    os.replace(tmp, marker)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)  # the directory, never the database
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create(db: Path) -> None:
    """Build an empty WAL database under a temporary name and link it into place whole: no process ever
    sees a half-made ``gateway.db``, and two first starts racing keep one database."""
    tmp = db.with_name(f".{db.name}.new-{os.getpid()}-{secrets.token_hex(4)}")
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))  # a new inode: no locks to drop
    try:
        con = sqlite3.connect(tmp, isolation_level=None)
        try:
            con.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            con.execute("PRAGMA journal_mode = WAL")
        finally:
            con.close()
        try:
            os.link(tmp, db)
        except FileExistsError:
            return  # another process created it first: use theirs
        _fsync_dir(db.parent)
        log.info("state database %s created", db)
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _tighten(db: Path) -> None:
    """The database holds node keys: owner-only, by path (see the module docstring)."""
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            os.chmod(path, stat.S_IMODE(st.st_mode) & 0o600)
            log.warning(
                "%s was open to group or others (mode %04o) and holds node keys: set it to %04o (whoever read"
                " it has the keys: consider re-keying the nodes)",
                path,
                stat.S_IMODE(st.st_mode),
                stat.S_IMODE(st.st_mode) & 0o600,
            )


def connect(db: str | os.PathLike[str], timeout: float = 10.0) -> sqlite3.Connection:
    """A connection to the state database, creating it only in a fresh state directory.

    Autocommit mode (``isolation_level=None``; use ``transaction``), usable from one thread at a time
    but not necessarily the one that opened it. Raises StateDbError with the way out."""
    path = Path(db)
    with _create_lock:
        found = problem(path)
        if found is not None:
            raise StateDbError(f"state: {found.message}", found.kind)
        if not path.exists():
            _create(path)
    uri = f"file:{quote(str(path.resolve()))}?mode=rw"
    try:
        con = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StateDbError(f"state: cannot open {path}: {exc}", "database") from None
    try:
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        con.close()
        raise StateDbError(
            f"state: {path} is not a usable database ({exc}); restore it from a backup, or run"
            " `lora-gw state init --force` to set it aside and start a new, empty one",
            "database",
        ) from None
    _tighten(path)
    _write_marker(path)  # also adopts a database made before markers existed
    return con


@contextlib.contextmanager
def transaction(db: sqlite3.Connection, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
    """BEGIN … COMMIT; on any error, ROLLBACK only if SQLite has not already rolled back, and re-raise
    the original error (never a "cannot rollback - no transaction is active" in its place)."""
    db.execute(f"BEGIN {mode}")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error as exc:  # the original error is the one worth reporting
                log.debug("rollback after a failed transaction also failed: %s", exc)
        raise


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Space an unprivileged writer may still use on the filesystem holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@dataclass(frozen=True, slots=True)
class InitResult:
    action: str  # "created" | "exists" | "recreated" | "kept"
    moved: tuple[Path, ...] = ()
    message: str = ""


def _set_aside(paths: list[Path]) -> tuple[Path, ...]:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    moved = []
    for p in paths:
        if p.exists():
            dest = p.with_name(f"{p.name}.lost-{stamp}")
            os.replace(p, dest)
            moved.append(dest)
    return tuple(moved)


def init(db: str | os.PathLike[str], force: bool = False) -> InitResult:
    """``lora-gw state init``: create the state database deliberately.

    A usable database is left alone. Remnants of a lost one (an empty file, a WAL without its database)
    are set aside (renamed ``*.lost-<time>``, never deleted) and a new, empty database takes their place.
    A database whose WAL was deleted is kept as it is (it is the best copy there is) and its orphaned
    ``-shm`` set aside. A file that is not a database at all is set aside only with ``force``."""
    path = Path(db)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    found = problem(path)
    with _create_lock:
        if found is None and not path.exists():
            _create(path)
            _write_marker(path)
            return InitResult("created", message=f"created {path}")
        if found is not None and found.kind == "wal_lost":
            moved = _set_aside([shm])
            connect(path).close()
            return InitResult(
                "kept",
                moved,
                f"kept {path} as it is (changes after its last checkpoint are gone: counters may be behind,"
                " so frames from that time could be accepted again)",
            )
        if found is not None:
            moved = _set_aside([path, wal, shm])
            marker_path(path).unlink(missing_ok=True)
            _create(path)
            _write_marker(path)
            return InitResult(
                "recreated", moved, f"created a new, empty {path}: add the nodes again or restore a backup"
            )
    try:
        connect(path).close()
    except StateDbError:
        if not force:
            raise
        moved = _set_aside([path, wal, shm])
        marker_path(path).unlink(missing_ok=True)
        connect(path).close()
        return InitResult("recreated", moved, f"set the unusable database aside and created a new {path}")
    return InitResult("exists", message=f"{path} exists and is usable: nothing to do")
