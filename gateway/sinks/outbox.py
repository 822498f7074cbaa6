"""The durable outbox: every accepted frame is in SQLite before anything is published.

Lives in the state database (gateway.db, beside the frame layer's ``nodes`` table) so that a frame row
and its node's new counter (``UPDATE nodes SET next_fcnt=? … AND counter_epoch=?``) commit in ONE
transaction: after any crash the counter and the stored frames agree, so a retransmission is neither
lost nor published twice. The epoch condition keeps an operator's counter reset from being undone by
frames that were decoded before it.

Writes are grouped: a transaction commits when ``commit_frames`` frames are pending or the oldest has
waited ``commit_interval_ms``; PUBACK deletes ride along with the next commit (or are flushed alone after
``delete_interval_ms``). A frame is only handed to MQTT after its transaction committed.

Durability (WAL journal):
- ``synchronous = normal``: commits survive a crash of the process (SIGKILL, OOM); a power cut may
  roll back the last commits (never corrupts). Fewest writes: the WAL is synced at checkpoints only.
- ``synchronous = full``: the WAL is synced at every commit, so commits also survive a power cut on
  storage that honours flushes; costs one fsync per group commit.
A row is deleted (or kept as history, below) only after a PUBACK with a success reason code; a crash
between PUBACK and the commit that records it publishes that row again after restart (same message id:
consumers de-duplicate).

A full disk is a state, not a crash. New frames are stored only while the state directory's filesystem
has more than ``min_free_mb`` free (or the database's own free pages can take them), so that deletes,
the WAL checkpoint and the registry stay writable below that floor; a commit that still meets
``database or disk is full`` (or the ``max_db_mb`` cap) drops only the frames it was adding, counted as
``dropped_disk_full``, and retries its deletes alone — publishing the backlog is what frees the space.
Stored frames are never dropped for it.

Poison messages — ones the broker or the MQTT client refuses for their own content (topic, size,
encoding) — are *parked*: the row stays, in state 2 with its reason and time, out of the publishing
order, so it can never hold the queue up. The operator lists, requeues or drops them (``lora-gw outbox``);
a requeued row goes to state 3, which the running service takes back into its queue (state 0) at its
next redecode round. Row states: 0 to publish, 1 raw published and waiting for its model, 2 parked,
3 requeued by the operator.

History (``[history] enabled``, gateway.sinks.history): a delivered model frame's row is *kept* as
telemetry history instead of deleted, at no write at all. ``outbox_kept.upto`` = W says that every row
with id ≤ W still in state 0 was delivered; a commit with acknowledgements moves W up past the
acknowledged rows, the rows in other states and the gaps, stopping at the first row still to publish
(reading ~ the acknowledged rows, writing one row of ``outbox_kept``). A row acknowledged beyond W
(out of order: a refused or retried row before it) and a history row an outbox bound drops from the
publishing order (``max_rows``, expiry) are marked KEPT (-1). Every scan of rows still to deliver —
publishing (``load``: id > W), ``max_rows``, expiry, redecode (state 1, partial index), parked rows
(state ≥ 2, partial index) — skips kept rows, and new ids start above W. A requeued row taken back
below W gets a new id (state 0 below W would read as delivered). Measured on ``bench/pipeline.py
--history``: see gateway.sinks.history and README.md.

One thread owns an Outbox (the service's core thread); it is not thread-safe by design. Operator commands
open an Outbox of their own for the parked-row methods (``parked_rows``, ``retry_parked``,
``drop_parked``): each is one short transaction.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway import statedb
from gateway.errors import GatewayError
from gateway.pipeline.message import AcceptedFrame, RadioMeta, StoredFrame
from gateway.sinks.history import (
    KEPT,
    ROWS_SQL,
    HistorySettings,
    HistoryWriter,
    kept_upto,
    model_code,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
TO_PUBLISH, WAITING_MODEL, PARKED, REQUEUED = 0, 1, 2, 3  # KEPT (-1): delivered, kept as history
PAGE_SIZE = statedb.PAGE_SIZE
_ROW_BYTES = 96  # a row's columns and b-tree overhead besides its payload (for the free-space estimate)
_CR = {"4/5": 5, "4/6": 6, "4/7": 7, "4/8": 8}
_CR_NAME = {v: k for k, v in _CR.items()}
_CRC = {"ok": 0, "absent": 1, "failed": 2}
_CRC_NAME = {v: k for k, v in _CRC.items()}
_FORMATS = ("frame", "lpp", "radiohead", "raw")
_CODECS = ("raw", "lpp", "model", "radiohead")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,          -- publish order: oldest first
    node_id INTEGER NOT NULL,
    fcnt INTEGER NOT NULL,
    state INTEGER NOT NULL DEFAULT 0, -- 0 to publish, 1 waiting for its model, 2 parked, 3 requeued
    created_ms INTEGER NOT NULL,      -- receive time, Unix ms (age bound, published time)
    kind INTEGER NOT NULL,            -- format index * 16 + codec index
    model INTEGER,                    -- see model_code (model id, full version), NULL unless codec = model
    payload BLOB NOT NULL,
    rssi_dbm10 INTEGER NOT NULL,
    snr_db4 INTEGER NOT NULL,
    freq_hz INTEGER NOT NULL,
    freq_error_hz INTEGER NOT NULL,
    sf INTEGER NOT NULL,
    bw_hz INTEGER NOT NULL,
    cr INTEGER NOT NULL,
    crc INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL);
"""
# v2: parked (poison) messages keep why and when; the partial index holds parked and requeued rows only.
_V2_COLUMNS = (("reason", "TEXT"), ("parked_ms", "INTEGER"))
_V2_INDEX = "CREATE INDEX IF NOT EXISTS outbox_held ON outbox (state, id) WHERE state >= 2"
# v3: delivered history rows are kept (outbox_kept.upto, state KEPT); rows waiting for a model get an index
# of their own, so that redecode rounds do not scan the history; ``model`` holds the full version.
_V3 = (
    "CREATE TABLE IF NOT EXISTS outbox_kept (upto INTEGER NOT NULL)",
    "INSERT INTO outbox_kept (upto) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM outbox_kept)",
    "CREATE INDEX IF NOT EXISTS outbox_waiting ON outbox (id) WHERE state = 1",
)
# The rows still to deliver, as index-friendly parts (the first takes W): kept rows are in none of them.
_OPEN_PARTS = ("id > ? AND state = 0", "state = 1", "state >= 2")


@dataclass(frozen=True, slots=True)
class ParkedRow:
    """A parked (or requeued) message as the operator sees it."""

    row_id: int
    node_id: int
    fcnt: int
    state: int
    reason: str
    parked_ms: int
    received_ms: int

    def to_dict(self) -> dict:
        return {
            "id": self.row_id,
            "node_id": self.node_id,
            "node_id_hex": f"0x{self.node_id:08x}",
            "fcnt": self.fcnt,
            "state": "parked" if self.state == PARKED else "requeued",
            "reason": self.reason,
            "parked_ms": self.parked_ms,
            "received_ms": self.received_ms,
        }


class OutboxError(GatewayError):
    reason = "outbox"


@dataclass(frozen=True, slots=True)
class OutboxSettings:
    """Group-commit and bound settings; defaults chosen for an SD card (see bench/pipeline.py)."""

    synchronous: str = "normal"  # "normal" | "full"
    commit_frames: int = 256
    commit_interval_ms: int = 25
    delete_interval_ms: int = 1000
    max_rows: int = 500_000
    max_age_s: float = 30 * 86400.0
    min_free_mb: float = 32.0  # store new frames only above this much free space (0: no floor)
    max_db_mb: float = 0.0  # cap on the database file (0: none)


@dataclass(slots=True)
class OutboxStats:
    stored: int = 0
    deleted: int = 0
    commits: int = 0
    dropped_size: int = 0
    dropped_age: int = 0
    dropped_disk_full: int = 0  # frames that passed every check but could not be stored
    kept: int = 0  # delivered rows kept as history (not deleted)
    counters_unmatched: int = 0  # next_fcnt updates that found no nodes row
    rows: int = 0
    parked: int = 0  # rows parked (or requeued and not yet taken back) now

    def as_dict(self) -> dict[str, int]:
        return {
            "stored": self.stored,
            "deleted": self.deleted,
            "commits": self.commits,
            "dropped_size": self.dropped_size,
            "dropped_age": self.dropped_age,
            "dropped_disk_full": self.dropped_disk_full,
            "kept": self.kept,
            "counters_unmatched": self.counters_unmatched,
            "rows": self.rows,
            "parked": self.parked,
        }


def _row_to_stored(row: tuple) -> StoredFrame:
    (rid, node_id, fcnt, state, created_ms, kind, model, payload, rssi, snr, freq, ferr, sf, bw, cr, crc) = (
        row
    )
    fmt, codec = _FORMATS[kind >> 4], _CODECS[kind & 0x0F]
    frame = AcceptedFrame(
        node_id=node_id,
        fcnt=fcnt,
        next_fcnt=fcnt + 1,
        format=fmt,
        codec=codec,
        model_id=None if model is None else (model >> 3) & 15,
        model_version=None if model is None else (model & 7) | ((model >> 7) << 3),
        payload=bytes(payload),
        radio=RadioMeta(
            rssi_dbm=rssi / 10.0,
            snr_db=snr / 4.0,
            freq_hz=freq,
            freq_error_hz=float(ferr),
            sf=sf,
            bw_hz=bw,
            cr=_CR_NAME.get(cr, "4/5"),
            crc=_CRC_NAME.get(crc, "ok"),
            utc_ms=created_ms,
        ),
    )
    return StoredFrame(row_id=rid, frame=frame, waiting_model=state == 1)


def _frame_params(rid: int, f: AcceptedFrame) -> tuple:
    r = f.radio
    try:
        kind = _FORMATS.index(f.format) * 16 + _CODECS.index(f.codec)
    except ValueError:
        raise OutboxError(f"node {f.node_id:08x}: unknown format/codec {f.format}/{f.codec}") from None
    model = None if f.model_id is None else model_code(f.model_id, f.model_version or 0)
    return (
        rid,
        f.node_id,
        f.fcnt,
        r.utc_ms,
        kind,
        model,
        f.payload,
        round(r.rssi_dbm * 10),
        round(r.snr_db * 4),
        r.freq_hz,
        round(r.freq_error_hz),
        r.sf,
        r.bw_hz,
        _CR.get(r.cr, 5),
        _CRC.get(r.crc, 0),
    )


_SELECT = (
    "SELECT id, node_id, fcnt, state, created_ms, kind, model, payload, rssi_dbm10, snr_db4, freq_hz,"
    " freq_error_hz, sf, bw_hz, cr, crc FROM outbox"
)


def undelivered(db: sqlite3.Connection) -> tuple[int, int | None]:
    """(rows still to deliver, the oldest one's receive time in Unix ms or None), without the kept history
    rows: for the outbox and for readers of a state database they do not own (doctor, backup)."""
    w = kept_upto(db)
    n, first = 0, None
    for part in _OPEN_PARTS:
        params = (w,) if "?" in part else ()
        sql = f"SELECT count(*), min(created_ms) FROM outbox WHERE {part}"
        count, oldest = db.execute(sql, params).fetchone()
        n += count
        first = oldest if first is None or (oldest is not None and oldest < first) else first
    return n, first


class Outbox:
    """SQLite outbox with group commit. ``add`` → ``maybe_commit`` returns the rows now safe to publish."""

    def __init__(
        self,
        db_path: str | Path,
        settings: OutboxSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        free_bytes: Callable[[], int] | None = None,
        history: HistorySettings | None = None,
    ) -> None:
        """``history``: keep model frames in the telemetry history, written in the same group commit
        (gateway.sinks.history; None: no history and no per-node model tracking)."""
        self.settings = settings or OutboxSettings()
        if self.settings.synchronous not in ("normal", "full"):
            raise OutboxError(f"outbox.synchronous: {self.settings.synchronous!r} is not normal or full")
        self.path = Path(db_path)
        self._clock = clock
        self._wall_ms = wall_ms
        self._free_bytes = free_bytes or (lambda: statedb.free_bytes(self.path.parent))
        self._floor = int(self.settings.min_free_mb * 1024 * 1024)
        self._db = statedb.connect(self.path, timeout=5.0)
        try:
            self._small_pages()
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OutboxError(f"outbox: {self.path} cannot use WAL journaling (got {mode})")
            self._db.execute(f"PRAGMA synchronous = {self.settings.synchronous.upper()}")
            self._cap_pages = self._cap()
            self._migrate()
            self._has_nodes = self._nodes_table()
            self.kept_upto = kept_upto(self._db)  # W: rows up to it in state 0 were delivered
            top = self._db.execute("SELECT max(id) FROM outbox").fetchone()[0] or 0
            self._next_id = max(top, self.kept_upto) + 1  # a new row is never below W
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox: cannot open {self.path}: {exc}") from None
        self.history = None if history is None else HistoryWriter(self._db, history, clock, wall_ms)
        self.stats = OutboxStats()
        self.stats.rows = self.count()
        self._data_version = self._db_version()  # changes only when another connection commits
        self.stats.parked = self._held_count()
        self._pending: list[tuple] = []
        self._pending_frames: list[StoredFrame] = []
        self._counters: dict[int, tuple[int, int]] = {}  # node id → (next counter, counter epoch)
        self._pending_since: float | None = None
        self._deletes: list[tuple[int]] = []
        self._waiting: list[tuple[int]] = []
        self._parks: list[tuple[str, int, int]] = []  # (reason, parked at, row id)
        self._deletes_since: float | None = None
        self._history_written = False  # the transaction being written called the history's hook
        self._closed = False
        self.dropped_upto = 0  # rows up to this id may have been dropped by a bound: do not publish them
        self.disk_full = False  # new frames are being dropped for want of space (an episode)
        self._episode_dropped = 0  # frames dropped in this episode (set again when one begins)
        if self.stats.rows:
            log.info("outbox: %d frames waiting from before the restart", self.stats.rows)

    def _nodes_table(self) -> bool:
        return bool(
            self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='nodes'").fetchone()
        )

    def _small_pages(self) -> None:
        """Use 1 KiB pages: a WAL commit writes every page it dirtied in full, so small pages cut the
        bytes written per commit about 4× (measured: 8.3 KB → 2.1 KB per single-frame commit).
        A new file gets them at once; an existing one is converted (VACUUM) when no other connection
        holds it, else it keeps its page size."""
        db = self._db
        size = db.execute("PRAGMA page_size").fetchone()[0]
        if size == PAGE_SIZE:
            return
        if db.execute("PRAGMA page_count").fetchone()[0] == 0:
            db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            return
        try:
            db.execute("PRAGMA journal_mode = DELETE")
            db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            db.execute("VACUUM")
            log.info("outbox: %s converted from %d- to %d-byte pages", self.path, size, PAGE_SIZE)
        except sqlite3.OperationalError as exc:
            log.info("outbox: keeping %d-byte pages in %s (%s)", size, self.path, exc)

    def _cap(self) -> int | None:
        """Apply ``max_db_mb`` (SQLite then answers SQLITE_FULL at the cap, like a full disk)."""
        if not self.settings.max_db_mb:
            return None
        pages = max(1, int(self.settings.max_db_mb * 1024 * 1024) // PAGE_SIZE)
        return int(self._db.execute(f"PRAGMA max_page_count = {pages}").fetchone()[0])

    def _migrate(self) -> None:
        with statedb.transaction(self._db) as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            row = db.execute("SELECT version FROM schema_versions WHERE component = 'outbox'").fetchone()
            if row and row[0] > SCHEMA_VERSION:
                raise OutboxError(
                    f"outbox: {self.path} has outbox schema v{row[0]}, newer than this gateway"
                    f" (v{SCHEMA_VERSION}); upgrade lora-gw"
                )
            version = row[0] if row else 1  # no row: the v1 table was just created above
            if version < 3:
                for statement in _V3:
                    db.execute(statement)
            if version < 2:
                columns = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
                for name, kind in _V2_COLUMNS:
                    if name not in columns:
                        db.execute(f"ALTER TABLE outbox ADD COLUMN {name} {kind}")
                db.execute(_V2_INDEX)
                if row:
                    log.info("outbox: %s migrated to schema v2 (parked messages)", self.path)
            if row and version < 3:
                log.info("outbox: %s migrated to schema v3 (delivered history rows kept)", self.path)
            if version < SCHEMA_VERSION or not row:
                db.execute(
                    "INSERT OR REPLACE INTO schema_versions (component, version) VALUES ('outbox', ?)",
                    (SCHEMA_VERSION,),
                )

    # -- writing ---------------------------------------------------------------------------------------

    def add(self, frame: AcceptedFrame) -> int:
        """Queue an accepted frame (and its node's next counter) for the next group commit; returns
        the row id it will have."""
        rid = self._next_id
        self._next_id += 1
        self._pending.append(_frame_params(rid, frame))
        self._pending_frames.append(StoredFrame(rid, frame))
        # the decoder's order: the last one is the newest
        self._counters[frame.node_id] = (frame.next_fcnt, frame.counter_epoch)
        if self._pending_since is None:
            self._pending_since = self._clock()
        return rid

    def acknowledge(self, row_id: int) -> None:
        """PUBACK with a success code: the row may go (with the next commit)."""
        self._deletes.append((row_id,))
        if self._deletes_since is None:
            self._deletes_since = self._clock()

    def mark_waiting(self, row_id: int) -> None:
        """The raw form was delivered; keep the row until a model can decode it."""
        self._waiting.append((row_id,))
        if self._deletes_since is None:
            self._deletes_since = self._clock()

    def park(self, row_id: int, reason: str) -> None:
        """A poison message: keep the row out of the publishing order, with its reason (next commit)."""
        self._parks.append((reason, self._wall_ms(), row_id))
        if self._deletes_since is None:
            self._deletes_since = self._clock()

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def backlog(self) -> int:
        """Frames stored (committed) and not yet delivered; frames still waiting for their group commit
        are not counted until they are durable."""
        return self.stats.rows - len(self._deletes)

    def seconds_to_commit(self) -> float | None:
        """How long the owner may sleep before ``maybe_commit`` has work (None: nothing pending)."""
        deadlines = []
        if self._pending_since is not None:
            deadlines.append(self._pending_since + self.settings.commit_interval_ms / 1000.0)
        if self._deletes_since is not None:
            deadlines.append(self._deletes_since + self.settings.delete_interval_ms / 1000.0)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - self._clock())

    def _deletes_due(self, now: float) -> bool:
        s = self.settings
        return self._deletes_since is not None and (
            len(self._deletes) + len(self._waiting) + len(self._parks) >= s.commit_frames * 4
            or now - self._deletes_since >= s.delete_interval_ms / 1000.0
        )

    def maybe_commit(self) -> list[StoredFrame]:
        """Commit if a bound is reached; returns the frames that became durable (publish them now).

        Acknowledged rows are deleted with the next frame commit (recent rows share the leaf page new
        rows go to, so this dirties no extra page), or on their own after ``delete_interval_ms``."""
        now = self._clock()
        s = self.settings
        frames_due = len(self._pending) >= s.commit_frames or (
            self._pending_since is not None and now - self._pending_since >= s.commit_interval_ms / 1000.0
        )
        if not (frames_due or self._deletes_due(now)):
            return []
        return self.commit()

    def commit(self, include_deletes: bool = True) -> list[StoredFrame]:
        """Write pending frames and counters (and, by default, deletes and state changes) in one
        transaction. Returns the frames now durable; on a full disk the pending frames are dropped
        (counted) instead and the deletes are kept for the next try."""
        if self._pending and not self._room_for_pending():
            self._drop_pending("free space below [outbox] min_free_mb")
        with_deletes = include_deletes and bool(self._deletes or self._waiting or self._parks)
        if not (self._pending or with_deletes):
            return []
        try:
            deleted, kept, upto = self._write(with_deletes)
        except sqlite3.Error as exc:
            if self.history is not None and self._history_written:  # its counters undone with the rows
                self.history.rolled_back()
            if not statedb.is_disk_full(exc):
                raise OutboxError(f"outbox: commit failed: {exc}") from None
            if not self._pending:
                self._enter_disk_full(str(exc))
                return []  # the deletes stay queued
            self._drop_pending(str(exc))
            return self.commit(include_deletes)  # the deletes on their own: they make room
        stored = self._pending_frames
        self.stats.commits += 1
        self.stats.stored += len(stored)
        self.stats.deleted += deleted
        self.stats.kept += kept
        self.stats.rows += len(stored) - deleted - kept
        self.kept_upto = upto
        self._pending, self._pending_frames, self._counters = [], [], {}
        self._pending_since = None
        if with_deletes:
            self._deletes, self._waiting, self._parks = [], [], []
            self._deletes_since = None
        if stored and self.disk_full:
            self._leave_disk_full()
        if self.stats.rows > self.settings.max_rows:
            version = self._db_version()
            if version != self._data_version:  # e.g. `lora-gw outbox drop` beside the service: count again
                self._data_version = version
                self.stats.rows = self.count()
        if self.stats.rows > self.settings.max_rows:
            self._drop_oldest(self.stats.rows - self.settings.max_rows)
        return stored

    def _db_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: the same while only this connection commits, so a row
        count kept in memory is recounted only after another process (or connection) wrote."""
        try:
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            return -1

    def _write(self, with_deletes: bool) -> tuple[int, int, int]:
        """One transaction: the pending rows, their counters, then (optionally) deletes and state changes.
        Returns the rows deleted, the rows kept (as history) and W after it."""
        deleted = kept = 0
        upto = self.kept_upto
        self._history_written = False
        with statedb.transaction(self._db) as db:
            if self._pending:
                db.executemany(
                    "INSERT INTO outbox (id, node_id, fcnt, created_ms, kind, model, payload, rssi_dbm10,"
                    " snr_db4, freq_hz, freq_error_hz, sf, bw_hz, cr, crc)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    self._pending,
                )
                if not self._has_nodes:
                    self._has_nodes = self._nodes_table()  # the registry may have created it since
                if self._has_nodes:
                    cur = db.executemany(
                        "UPDATE nodes SET next_fcnt = ? WHERE node_id = ? AND counter_epoch = ?",
                        [(n, node, epoch) for node, (n, epoch) in self._counters.items()],
                    )
                    unmatched = max(0, len(self._counters) - cur.rowcount)
            if with_deletes and self._deletes and self._keeping():
                deleted, kept, upto = self._deliver(db)
            elif with_deletes and self._deletes:
                deleted = max(0, db.executemany("DELETE FROM outbox WHERE id = ?", self._deletes).rowcount)
            if with_deletes and self._waiting:
                db.executemany("UPDATE outbox SET state = 1 WHERE id = ?", self._waiting)
            if with_deletes and self._parks:
                cur = db.executemany(
                    "UPDATE outbox SET state = 2, reason = ?, parked_ms = ? WHERE id = ? AND state IN (0, 1)",
                    self._parks,
                )
                self.stats.parked += max(0, cur.rowcount)
            if self.history is not None and (self._pending or kept):  # after the deliveries: they trim
                self._history_written = True
                self.history.write(db, (s.frame for s in self._pending_frames))
        if self._pending and self._has_nodes:
            self.stats.counters_unmatched += unmatched
        return deleted, kept, upto

    def _keeping(self) -> bool:
        return self.history is not None and self.history.settings.enabled

    def _deliver(self, db: sqlite3.Connection) -> tuple[int, int, int]:
        """The acknowledged rows, history on: the others are deleted, the history's stay. W moves up past
        them (and past rows in other states and gaps) to the first row still to publish; those it cannot
        cover are marked KEPT. Returns (deleted, kept, new W)."""
        cur = db.executemany(f"DELETE FROM outbox WHERE id = ? AND NOT ({ROWS_SQL})", self._deletes)
        deleted = max(0, cur.rowcount)
        acked = {rid for (rid,) in self._deletes}
        upto, covered = self.kept_upto, set()
        limit = len(acked) + 64
        stop = False
        while not stop:
            rows = db.execute(
                "SELECT id, state FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (upto, limit)
            ).fetchall()
            for rid, state in rows:
                if state == TO_PUBLISH and rid not in acked:
                    stop = True  # still to publish: W stops below it
                    break
                if state == TO_PUBLISH:
                    covered.add(rid)
                upto = rid
            stop = stop or len(rows) < limit
        rest = [(rid, upto) for rid in sorted(acked - covered)]
        cur = db.executemany(
            f"UPDATE outbox SET state = {KEPT} WHERE id = ? AND state BETWEEN 0 AND 3"
            " AND (state != 0 OR id > ?)",
            rest,
        )
        if upto != self.kept_upto:
            db.execute("UPDATE outbox_kept SET upto = ?", (upto,))
        return deleted, len(covered) + max(0, cur.rowcount), upto

    def _retire(self, db: sqlite3.Connection, where: str, params: tuple) -> int:
        """Take rows still to deliver that match ``where`` out of the publishing order (a bound's counted
        loss): deleted, or with history on, history rows marked KEPT (they stay history, as any other
        accepted model frame). ``where`` must select rows still to deliver only. Returns how many."""
        n = 0
        if self._keeping():
            cur = db.execute(f"UPDATE outbox SET state = {KEPT} WHERE {where} AND {ROWS_SQL}", params)
            n += max(0, cur.rowcount)
        return n + max(0, db.execute(f"DELETE FROM outbox WHERE {where}", params).rowcount)

    # -- space -----------------------------------------------------------------------------------------

    def room_bytes(self) -> int:
        """Bytes new rows may still take: free space above the floor (within ``max_db_mb``), plus the
        database's own free pages (left by deleted rows), which need no new space at all."""
        db = self._db
        free_pages = db.execute("PRAGMA freelist_count").fetchone()[0]
        room = self._free_bytes() - self._floor
        if self._cap_pages is not None:
            used = db.execute("PRAGMA page_count").fetchone()[0]
            room = min(room, (self._cap_pages - used) * PAGE_SIZE)
        return max(0, room) + free_pages * PAGE_SIZE

    def _room_for_pending(self) -> bool:
        if not self._floor and self._cap_pages is None and not self.disk_full:
            return True  # no floor: SQLite's own SQLITE_FULL is the only signal
        need = 2 * sum(len(row[6]) + _ROW_BYTES for row in self._pending)  # rows, and their WAL pages
        if self._cap_pages is None and self._free_bytes() - self._floor >= need:
            return True  # the usual case: one statvfs per group commit
        return self.room_bytes() >= need

    def _drop_pending(self, why: str) -> None:
        n = len(self._pending)
        self._enter_disk_full(why)
        self.stats.dropped_disk_full += n
        self._episode_dropped += n
        for stored in self._pending_frames:
            log.debug("node %08x fcnt %d: not stored (disk full)", stored.frame.node_id, stored.frame.fcnt)
        self._pending, self._pending_frames, self._counters = [], [], {}
        self._pending_since = None

    def _enter_disk_full(self, why: str) -> None:
        if self.disk_full:
            return
        self.disk_full = True
        self._episode_dropped = 0
        log.warning(
            "outbox: cannot store new frames in %s (%s; %.1f MB free, floor %g MB): stored frames are kept"
            " and published, new ones are dropped and counted as dropped_disk_full until space returns",
            self.path,
            why,
            self._free_bytes() / 1048576,
            self.settings.min_free_mb,
        )

    def _leave_disk_full(self) -> None:
        self.disk_full = False
        log.warning(
            "outbox: storing frames again (%.1f MB free); %d frames were dropped while the disk was full",
            self._free_bytes() / 1048576,
            self._episode_dropped,
        )

    def check_space(self) -> None:
        """End a disk-full episode as soon as there is room again, even before the next frame comes."""
        if self.disk_full and not self._pending and self.room_bytes() >= 2 * (_ROW_BYTES + 64):
            self._leave_disk_full()

    def free_mb(self) -> float:
        return round(self._free_bytes() / 1048576, 1)

    def _drop_oldest(self, n: int) -> None:
        """``max_rows``: the ``n`` oldest rows still to deliver leave the publishing order (kept rows do
        not count)."""
        open_rows = "((id > ? AND state = 0) OR state BETWEEN 1 AND 3)"
        try:
            with statedb.transaction(self._db) as db:
                top = db.execute(
                    f"SELECT max(id) FROM (SELECT id FROM outbox WHERE {open_rows} ORDER BY id LIMIT ?)",
                    (self.kept_upto, n),
                )
                upto = top.fetchone()[0] or 0
                dropped = self._retire(db, f"id <= ? AND {open_rows}", (upto, self.kept_upto))
        except sqlite3.Error as exc:
            if not statedb.is_disk_full(exc):
                raise OutboxError(f"outbox: cannot apply max_rows: {exc}") from None
            return  # tried again after the next commit
        self.dropped_upto = max(self.dropped_upto, upto)
        self.stats.dropped_size += dropped
        self.stats.rows -= dropped
        log.warning(
            "outbox: full (%d rows max): dropped the %d oldest unpublished frames",
            self.settings.max_rows,
            dropped,
        )

    def drop_expired(self) -> int:
        """Drop rows still to deliver older than ``max_age_s`` (counted and logged loss; history rows stay
        history); returns how many."""
        cutoff = self._wall_ms() - int(self.settings.max_age_s * 1000)
        top = n = 0
        try:
            with statedb.transaction(self._db) as db:
                for part in _OPEN_PARTS:
                    where = f"{part} AND created_ms < ?"
                    params = (self.kept_upto, cutoff) if "?" in part else (cutoff,)
                    found = db.execute(f"SELECT max(id) FROM outbox WHERE {where}", params).fetchone()[0]
                    top = max(top, found or 0)
                    n += self._retire(db, where, params)
        except sqlite3.Error as exc:
            if not statedb.is_disk_full(exc):
                raise OutboxError(f"outbox: cannot drop expired frames: {exc}") from None
            return 0  # tried again at the next expiry round
        self.dropped_upto = max(self.dropped_upto, top)
        if n > 0:
            self.stats.dropped_age += n
            self.stats.rows -= n
            log.warning("outbox: dropped %d frames older than %.0f s", n, self.settings.max_age_s)
        return n

    # -- reading ---------------------------------------------------------------------------------------

    def load(self, after_id: int, limit: int) -> list[StoredFrame]:
        """Stored frames still to publish with id > ``after_id``, oldest first (backlog after a restart)."""
        after_id = max(after_id, self.kept_upto)  # rows up to W in state 0 were delivered (kept as history)
        sql = f"{_SELECT} WHERE id > ? AND state = 0 ORDER BY id LIMIT ?"
        rows = self._db.execute(sql, (after_id, limit))
        return [_row_to_stored(r) for r in rows]

    def load_waiting(self, after_id: int, limit: int) -> list[StoredFrame]:
        """Frames whose raw form was published and that still need a model, oldest first."""
        rows = self._db.execute(
            f"{_SELECT} WHERE id > ? AND state = 1 ORDER BY id LIMIT ?", (after_id, limit)
        )
        return [_row_to_stored(r) for r in rows]

    # -- parked messages -------------------------------------------------------------------------------

    def _held_count(self) -> int:
        return self._db.execute("SELECT count(*) FROM outbox WHERE state >= 2").fetchone()[0]

    def take_requeued(self, limit: int = 1000) -> list[StoredFrame]:
        """Rows the operator requeued (state 3), returned to the publishing order (state 0), oldest first.
        Also notices rows another process deleted (``drop_parked``) and corrects the row count."""
        rows: list[StoredFrame] = []
        try:
            if self._db.execute("SELECT 1 FROM outbox WHERE state >= 2 AND state = 3 LIMIT 1").fetchone():
                self._requeue(limit, rows)  # (usually there is none: no write transaction at all)
        except sqlite3.Error as exc:
            if not statedb.is_disk_full(exc):
                raise OutboxError(f"outbox: cannot requeue parked messages: {exc}") from None
            return []  # tried again at the next round
        held = self._held_count()
        if held != self.stats.parked - len(rows):  # dropped or expired elsewhere: count again
            self.stats.rows = self.count()
        self.stats.parked = held
        for stored in rows:
            log.info("node %08x fcnt %d: requeued by the operator", stored.frame.node_id, stored.frame.fcnt)
        return rows

    def _requeue(self, limit: int, rows: list[StoredFrame]) -> None:
        with statedb.transaction(self._db) as db:
            found = [
                _row_to_stored(r)
                for r in db.execute(f"{_SELECT} WHERE state >= 2 AND state = 3 ORDER BY id LIMIT ?", (limit,))
            ]
            moved = []
            for i, s in enumerate(found):
                new = s.row_id
                if new <= self.kept_upto:  # state 0 there reads as delivered: the row gets a new id
                    new = self._next_id + len(moved)
                    moved.append(new)
                    found[i] = StoredFrame(new, s.frame, s.waiting_model)
                db.execute(
                    "UPDATE outbox SET id = ?, state = 0, reason = NULL, parked_ms = NULL WHERE id = ?",
                    (new, s.row_id),
                )
        self._next_id += len(moved)
        rows.extend(found)  # only once committed

    def parked_rows(self, ids: list[int] | None = None) -> list[ParkedRow]:
        """Parked and requeued rows (all, or those of ``ids``), oldest first."""
        sql = "SELECT id, node_id, fcnt, state, reason, parked_ms, created_ms FROM outbox WHERE state >= 2"
        params: tuple = ()
        if ids is not None:
            sql += f" AND id IN ({','.join('?' * len(ids))})"
            params = tuple(ids)
        rows = self._db.execute(sql + " ORDER BY id", params).fetchall()
        return [ParkedRow(r[0], r[1], r[2], r[3], r[4] or "", r[5] or 0, r[6]) for r in rows]

    def _select_parked(self, ids: list[int] | None) -> list[ParkedRow]:
        rows = [r for r in self.parked_rows(ids) if r.state == PARKED]
        missing = sorted(set(ids or ()) - {r.row_id for r in rows})
        if missing:
            raise OutboxError(f"outbox: no parked message with id {', '.join(map(str, missing))}")
        return rows

    def retry_parked(self, ids: list[int] | None = None) -> list[ParkedRow]:
        """Requeue parked rows (all when ``ids`` is None); a running service publishes them again."""
        rows = self._select_parked(ids)
        with statedb.transaction(self._db) as db:
            db.executemany(
                "UPDATE outbox SET state = 3 WHERE id = ? AND state = 2", [(r.row_id,) for r in rows]
            )
        for r in rows:
            log.info("outbox: parked message %d (node %08x fcnt %d) requeued", r.row_id, r.node_id, r.fcnt)
        return rows

    def drop_parked(self, ids: list[int] | None = None) -> list[ParkedRow]:
        """Delete parked rows for good (all when ``ids`` is None): counted and logged loss."""
        rows = self._select_parked(ids)
        with statedb.transaction(self._db) as db:
            db.executemany("DELETE FROM outbox WHERE id = ? AND state = 2", [(r.row_id,) for r in rows])
        self.stats.rows -= len(rows)
        self.stats.parked -= len(rows)
        for r in rows:
            log.warning(
                "outbox: parked message %d (node %08x fcnt %d) dropped by the operator (%s)",
                r.row_id,
                r.node_id,
                r.fcnt,
                r.reason,
            )
        return rows

    def exists(self, row_id: int) -> bool:
        return self._db.execute("SELECT 1 FROM outbox WHERE id = ?", (row_id,)).fetchone() is not None

    def count(self) -> int:
        """Rows still to deliver (kept history rows are not counted); W read again, for other processes."""
        return undelivered(self._db)[0]

    def close(self) -> None:
        """Commit everything pending (frames, deletes) and checkpoint the WAL."""
        if self._closed:
            return
        try:
            self.commit()
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:  # the WAL keeps the data; the next start checkpoints it
                log.warning("outbox: checkpoint at close failed: %s", exc)
        finally:
            self._closed = True
            self._db.close()
