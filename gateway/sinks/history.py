"""Telemetry history: every learned-model frame the gateway accepted, kept for training new versions.

Rows live in the state database beside the outbox and are written **inside the outbox's group-commit
transaction** (:meth:`HistoryWriter.write` is the outbox's commit hook), so keeping history costs no
extra transaction and no extra fsync, and a frame is in the history exactly when it is in the outbox.

What is stored is the frame's codec payload with its node, counter, receive time and the model id and
*full* version whose fingerprint verified it — not the decoded integers. The payload is the lossless,
most compact form of those integers (about 1–2 bytes per sample where int32 cells would take 4 per
channel), and storing it costs the pipeline no decode at all; ``history export`` decodes lazily with
exactly that installed version (``model remove`` refuses versions nodes still use, so they stay
decodable). Frames of other codecs (LPP, raw) have no model schema and are not kept.

Bounds (``[history]``): ``retention_days`` (rows older than that go, checked once a minute) and
``max_mb`` (the rows' payload + per-row overhead; the oldest rows go first, down to 90 % of the cap,
so the trimming is not repeated at every commit). Both drops are counted and happen in the same
transaction as the frames that caused them.

``node_models`` records, per node and model version, when the node last sent a frame with it (also in
the same transaction, written whether or not history is enabled): ``model remove`` and ``model list``
read it.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from gateway import statedb
from gateway.errors import GatewayError
from gateway.pipeline.message import AcceptedFrame

log = logging.getLogger(__name__)

COMPONENT = "history"
SCHEMA_VERSION = 1
ROW_OVERHEAD = 40  # bytes a row takes besides its payload (columns, b-tree cell): the max_mb estimate
TRIM_TO = 0.9  # a max_mb trim goes down to this share of the cap
RETENTION_CHECK_S = 60.0
_AGE_BATCH = 5000  # retention: at most this many of the oldest rows are looked at per check

_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY,            -- arrival order (oldest first)
    node_id INTEGER NOT NULL,
    fcnt INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,      -- receive time, Unix ms
    model_id INTEGER NOT NULL,
    model_version INTEGER NOT NULL,    -- the full version whose fingerprint verified the frame
    payload BLOB NOT NULL              -- the codec payload: the samples, losslessly
);
CREATE TABLE IF NOT EXISTS node_models (
    node_id INTEGER NOT NULL,
    model_id INTEGER NOT NULL,
    model_version INTEGER NOT NULL,
    first_ms INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    frames INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (node_id, model_id, model_version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL);
"""


class HistoryError(GatewayError):
    reason = "history"


@dataclass(frozen=True, slots=True)
class HistorySettings:
    """``[history]``: on by default; bounded by age and by size."""

    enabled: bool = True
    retention_days: float = 90.0
    max_mb: float = 64.0


@dataclass(slots=True)
class HistoryStats:
    stored: int = 0
    dropped_age: int = 0
    dropped_size: int = 0
    rows: int = 0
    bytes: int = 0  # payload + ROW_OVERHEAD per row (the max_mb estimate)

    def as_dict(self) -> dict[str, int]:
        return {
            "stored": self.stored,
            "dropped_age": self.dropped_age,
            "dropped_size": self.dropped_size,
            "rows": self.rows,
            "bytes": self.bytes,
        }


@dataclass(frozen=True, slots=True)
class HistoryRow:
    node_id: int
    fcnt: int
    received_ms: int
    model_id: int
    model_version: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class NodeModel:
    """A node's use of one model version."""

    node_id: int
    model_id: int
    model_version: int
    first_ms: int
    last_ms: int
    frames: int


def ensure_schema(db: sqlite3.Connection) -> None:
    """Create the tables (one transaction); refuse a database made by a newer gateway."""
    with statedb.transaction(db):
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        row = db.execute("SELECT version FROM schema_versions WHERE component = ?", (COMPONENT,)).fetchone()
        if row and row[0] > SCHEMA_VERSION:
            raise HistoryError(
                f"history: the state database has history schema v{row[0]}, newer than this gateway"
                f" (v{SCHEMA_VERSION}); upgrade lora-gw"
            )
        if not row:
            db.execute(
                "INSERT INTO schema_versions (component, version) VALUES (?, ?)", (COMPONENT, SCHEMA_VERSION)
            )


class HistoryWriter:
    """The outbox's commit hook: adds the committed model frames (and trims) in the outbox's transaction.

    Owned by the outbox's thread, like the outbox."""

    def __init__(
        self,
        db: sqlite3.Connection,
        settings: HistorySettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.settings = settings or HistorySettings()
        self._clock = clock
        self._wall_ms = wall_ms
        self._cap = int(self.settings.max_mb * 1024 * 1024)
        self._next_age_check = float("-inf")
        self.stats = HistoryStats()
        self._saved: HistoryStats | None = None
        ensure_schema(db)
        rows, size = db.execute("SELECT count(*), coalesce(sum(length(payload)), 0) FROM history").fetchone()
        self.stats.rows, self.stats.bytes = rows, size + ROW_OVERHEAD * rows

    def write(self, db: sqlite3.Connection, frames: Iterable[AcceptedFrame]) -> None:
        """Inside the caller's open transaction: record the model frames among ``frames``."""
        self._saved = replace(self.stats)
        rows = []
        used: dict[tuple[int, int, int], list[int]] = {}  # (node, id, version) → [first, last, count]
        for f in frames:
            if f.codec != "model" or f.model_id is None or f.model_version is None:
                continue
            t = f.radio.utc_ms
            rows.append((f.node_id, f.fcnt, t, f.model_id, f.model_version, f.payload))
            u = used.setdefault((f.node_id, f.model_id, f.model_version), [t, t, 0])
            u[0], u[1], u[2] = min(u[0], t), max(u[1], t), u[2] + 1
        if used:
            db.executemany(
                "INSERT INTO node_models (node_id, model_id, model_version, first_ms, last_ms, frames)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT (node_id, model_id, model_version) DO UPDATE SET"
                " last_ms = max(last_ms, excluded.last_ms), frames = frames + excluded.frames",
                [(*k, v[0], v[1], v[2]) for k, v in used.items()],
            )
        if not self.settings.enabled:
            return
        if rows:
            db.executemany(
                "INSERT INTO history (node_id, fcnt, received_ms, model_id, model_version, payload)"
                " VALUES (?,?,?,?,?,?)",
                rows,
            )
            self.stats.stored += len(rows)
            self.stats.rows += len(rows)
            self.stats.bytes += sum(len(r[5]) + ROW_OVERHEAD for r in rows)
        now = self._clock()
        if now >= self._next_age_check:
            self._next_age_check = now + RETENTION_CHECK_S
            self._drop_old(db)
        if self._cap and self.stats.bytes > self._cap:
            self._drop_oldest(db, self.stats.bytes - int(self._cap * TRIM_TO))

    def rolled_back(self) -> None:
        """The caller's transaction failed: nothing of the last ``write`` happened."""
        if self._saved is not None:
            self.stats = self._saved
            self._next_age_check = float("-inf")

    def _drop_old(self, db: sqlite3.Connection) -> None:
        cutoff = self._wall_ms() - int(self.settings.retention_days * 86400_000)
        n = size = 0
        while True:  # the oldest rows by id, a bounded batch at a time (no index on time needed)
            top, count, nbytes = db.execute(
                "SELECT max(id), count(*), coalesce(sum(length(payload)), 0) FROM"
                " (SELECT id, received_ms, payload FROM history ORDER BY id LIMIT ?) WHERE received_ms < ?",
                (_AGE_BATCH, cutoff),
            ).fetchone()
            if not count:
                break
            db.execute("DELETE FROM history WHERE id <= ? AND received_ms < ?", (top, cutoff))
            n, size = n + count, size + nbytes
            if count < _AGE_BATCH:
                break
        if n:
            self._account(n, size, "age")
            log.info("history: dropped %d rows older than %g days", n, self.settings.retention_days)

    def _drop_oldest(self, db: sqlite3.Connection, excess: int) -> None:
        n = size = 0
        while excess > 0 and self.stats.rows - n > 0:
            batch = max(1, excess // max(1, self.stats.bytes // max(1, self.stats.rows)))
            top, count, nbytes = db.execute(
                "SELECT max(id), count(*), coalesce(sum(length(payload)), 0) FROM"
                " (SELECT id, payload FROM history ORDER BY id LIMIT ?)",
                (batch,),
            ).fetchone()
            if not count:
                break
            db.execute("DELETE FROM history WHERE id <= ?", (top,))
            n, size = n + count, size + nbytes
            excess -= nbytes + ROW_OVERHEAD * count
        if n:
            self._account(n, size, "size")
            log.info("history: over max_mb %g: dropped the %d oldest rows", self.settings.max_mb, n)

    def _account(self, n: int, size: int, why: str) -> None:
        self.stats.rows -= n
        self.stats.bytes -= size + ROW_OVERHEAD * n
        if why == "age":
            self.stats.dropped_age += n
        else:
            self.stats.dropped_size += n


class HistoryReader:
    """Read side for operator commands (``history export``/``stats``, ``model remove``/``list``)."""

    def __init__(self, db_path: str | Path) -> None:
        self.path = Path(db_path)
        self._db = statedb.connect(self.path, timeout=5.0)
        try:  # read-only: a database the service has not written history to yet reads as empty
            found = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error as exc:
            self._db.close()
            raise HistoryError(f"history: cannot open {self.path}: {exc}") from None
        self._tables = found & {"history", "node_models"}

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> HistoryReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rows(
        self,
        *,
        node_id: int | None = None,
        model_id: int | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> Iterator[HistoryRow]:
        """Matching rows, per node in counter order (a node's series in time order)."""
        if "history" not in self._tables:
            return
        where, params = _where(node_id, model_id, since_ms, until_ms)
        cur = self._db.execute(
            "SELECT node_id, fcnt, received_ms, model_id, model_version, payload FROM history"
            f"{where} ORDER BY node_id, received_ms, fcnt",
            params,
        )
        for r in cur:
            yield HistoryRow(r[0], r[1], r[2], r[3], r[4], bytes(r[5]))

    def stats(self, model_id: int | None = None) -> dict[str, object]:
        if "history" not in self._tables:
            return {
                "rows": 0,
                "nodes": 0,
                "first_ms": None,
                "last_ms": None,
                "span_s": 0.0,
                "payload_bytes": 0,
                "size_bytes": 0,
                "models": [],
            }
        where, params = _where(None, model_id, None, None)
        rows, nodes, first, last, size = self._db.execute(
            "SELECT count(*), count(DISTINCT node_id), min(received_ms), max(received_ms),"
            f" coalesce(sum(length(payload)), 0) FROM history{where}",
            params,
        ).fetchone()
        per_model = [
            {"model": f"{m}@{v}", "rows": n, "nodes": k}
            for m, v, n, k in self._db.execute(
                "SELECT model_id, model_version, count(*), count(DISTINCT node_id) FROM history"
                f"{where} GROUP BY model_id, model_version ORDER BY model_id, model_version",
                params,
            )
        ]
        return {
            "rows": rows,
            "nodes": nodes,
            "first_ms": first,
            "last_ms": last,
            "span_s": round((last - first) / 1000, 1) if rows else 0.0,
            "payload_bytes": size,
            "size_bytes": size + ROW_OVERHEAD * rows,
            "models": per_model,
        }

    def node_models(self, model_id: int | None = None) -> list[NodeModel]:
        if "node_models" not in self._tables:
            return []
        sql = "SELECT node_id, model_id, model_version, first_ms, last_ms, frames FROM node_models"
        params: tuple = ()
        if model_id is not None:
            sql += " WHERE model_id = ?"
            params = (model_id,)
        return [
            NodeModel(*r)
            for r in self._db.execute(sql + " ORDER BY model_id, model_version, node_id", params)
        ]


def _where(
    node_id: int | None, model_id: int | None, since_ms: int | None, until_ms: int | None
) -> tuple[str, tuple]:
    clauses, params = [], []
    for sql, value in (
        ("node_id = ?", node_id),
        ("model_id = ?", model_id),
        ("received_ms >= ?", since_ms),
        ("received_ms < ?", until_ms),
    ):
        if value is not None:
            clauses.append(sql)
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


def versions_in_use(uses: list[NodeModel], now_ms: int, window_s: float) -> dict[tuple[int, int], list[int]]:
    """(model id, version) → nodes using it: each node's latest version of a model id, and any
    version a node sent within ``window_s`` (its frames may still wait in the outbox)."""
    latest: dict[tuple[int, int], NodeModel] = {}
    for u in uses:
        key = (u.node_id, u.model_id)
        if key not in latest or u.last_ms > latest[key].last_ms:
            latest[key] = u
    out: dict[tuple[int, int], list[int]] = {}
    for u in uses:
        if latest[(u.node_id, u.model_id)] is u or now_ms - u.last_ms <= window_s * 1000:
            out.setdefault((u.model_id, u.model_version), []).append(u.node_id)
    return out
