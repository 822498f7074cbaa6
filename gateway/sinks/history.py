"""Telemetry history: every learned-model frame the gateway accepted, kept for training new versions.

**The history is the outbox's own rows** (schema v2): a model frame's outbox row is not deleted when
the broker acknowledges it but *kept*, so keeping history writes no second copy of the frame. A
separate history table (v1) cost a copy of every row and its pages in each group commit: on
``bench/pipeline.py --history`` +21 % disk bytes per frame (403 → 489) with a 50-byte payload, more
than the 10 % target allows for any copy, however compact. Marking each published row (one ``UPDATE``
per row) cost as much (the marked leaf pages are written again), so a kept row is not written at all
when it is published: one number, ``outbox_kept.upto``, says that every row up to that id still in
state 0 was delivered (gateway.sinks.outbox explains how it advances); a row acknowledged out of order,
or dropped from the publishing order by an outbox bound, is marked ``state = -1`` (KEPT) instead.
The outbox's scans (publishing, ``max_rows``, expiry, redecode) never look at kept rows.

What is kept is the frame's codec payload with its node, counter, receive time and the model id and
*full* version whose fingerprint verified it (the outbox's ``model`` column) — not the decoded
integers. The payload is the lossless, most compact form of those integers (about 1–2 bytes per sample
where int32 cells would take 4 per channel), and keeping it costs the pipeline no decode at all;
``history export`` decodes lazily with exactly that installed version (``model remove`` refuses
versions nodes still use, so they stay decodable). Frames of other codecs (LPP, raw) have no model
schema and are deleted once delivered, as before. A frame is in the history from its group commit on,
delivered or not.

Bounds (``[history]``): ``retention_days`` (rows older than that go, checked once a minute) and
``max_mb`` (the rows' payload + per-row overhead; the oldest rows go first, down to 90 % of the cap,
so the trimming is not repeated at every commit). Both drop delivered rows only — a frame still to be
published is the outbox's, bounded by ``[outbox] max_rows``/``max_age_s`` — and both are counted and
happen in the same transaction as the frames that caused them.

A database from a gateway with the v1 table is migrated once (its rows become kept rows, older than
every outbox row; rows the outbox still holds get their full version from it) and the table dropped.

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
SCHEMA_VERSION = 2  # v2: the history is the outbox's kept rows (v1: a table of its own)
ROW_OVERHEAD = 56  # bytes an outbox row takes besides its payload (columns, b-tree cell): the max_mb estimate
TRIM_TO = 0.9  # a max_mb trim goes down to this share of the cap
RETENTION_CHECK_S = 60.0
_AGE_BATCH = 5000  # retention: at most this many of the oldest rows are looked at per check

# Which outbox rows are history, in the outbox's terms (gateway.sinks.outbox: kind = format * 16 + codec,
# codec 2 = model; model = version div 8 * 128 + model id * 8 + version mod 8, < 128 in rows of outbox v2).
KEPT = -1  # outbox state of a row kept only as history (below 0: no held-row predicate, state >= 2, sees it)
ROWS_SQL = "kind & 15 = 2 AND model IS NOT NULL"
KEPT_SQL = "(state = -1 OR (state = 0 AND id <= ?))"  # delivered rows (parameter: outbox_kept.upto)
MODEL_ID_SQL = "((model >> 3) & 15)"
MODEL_VERSION_SQL = "((model & 7) | ((model >> 7) << 3))"
_SOURCE = (
    "SELECT node_id, fcnt, created_ms AS received_ms, "
    f"{MODEL_ID_SQL} AS model_id, {MODEL_VERSION_SQL} AS model_version, payload FROM outbox WHERE {ROWS_SQL}"
)
_LEGACY_SOURCE = "SELECT node_id, fcnt, received_ms, model_id, model_version, payload FROM history"

_SCHEMA = """
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


def model_code(model_id: int, version: int) -> int:
    """The outbox's ``model`` column: the model id (0–15, as on air) and the *full* version."""
    return ((version >> 3) << 7) | (model_id << 3) | (version & 7)


def kept_upto(db: sqlite3.Connection) -> int:
    """``outbox_kept.upto``: rows up to this id still in state 0 were delivered (0: none, or no table)."""
    try:
        row = db.execute("SELECT upto FROM outbox_kept").fetchone()
    except sqlite3.OperationalError:  # a database from before outbox schema v3
        return 0
    return int(row[0]) if row else 0


def _tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def ensure_schema(db: sqlite3.Connection) -> None:
    """Create the tables and move a v1 history table into the outbox (one transaction); refuse a
    database made by a newer gateway. Needs the outbox's schema (v3) in place."""
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
        if "history" in _tables(db):
            moved = _migrate_v1(db)
            log.info("history: %d rows moved from the v1 history table into the outbox (kept rows)", moved)
        if not row or row[0] < SCHEMA_VERSION:
            db.execute(
                "INSERT OR REPLACE INTO schema_versions (component, version) VALUES (?, ?)",
                (COMPONENT, SCHEMA_VERSION),
            )


def _migrate_v1(db: sqlite3.Connection) -> int:
    """v1 → v2 inside the caller's transaction. A v1 row the outbox still holds (same node, counter and
    receive time: not delivered yet) gives that row its full version; the others become kept rows with
    ids below every outbox row, in their order (the oldest are trimmed first). Returns the rows moved."""
    code = "((h.model_version >> 3) << 7) | (h.model_id << 3) | (h.model_version & 7)"
    db.execute("CREATE INDEX history_v1_move ON outbox (node_id, fcnt)")
    db.execute(
        f"UPDATE outbox SET model = {code} FROM history AS h WHERE h.node_id = outbox.node_id"
        " AND h.fcnt = outbox.fcnt AND h.received_ms = outbox.created_ms AND outbox.kind & 15 = 2"
    )
    base = min(1, db.execute("SELECT coalesce(min(id), 1) FROM outbox").fetchone()[0])
    top = db.execute("SELECT coalesce(max(id), 0) FROM history").fetchone()[0]
    cur = db.execute(
        "INSERT INTO outbox (id, node_id, fcnt, state, created_ms, kind, model, payload, rssi_dbm10, snr_db4,"
        " freq_hz, freq_error_hz, sf, bw_hz, cr, crc)"
        f" SELECT h.id - ? - 1 + ?, h.node_id, h.fcnt, {KEPT}, h.received_ms, 2, {code}, h.payload,"
        " 0, 0, 0, 0, 0, 0, 5, 0 FROM history AS h WHERE NOT EXISTS (SELECT 1 FROM outbox AS o"
        " WHERE o.node_id = h.node_id AND o.fcnt = h.fcnt AND o.created_ms = h.received_ms)",
        (top, base),
    )
    db.execute("DROP INDEX history_v1_move")
    db.execute("DROP TABLE history")
    return max(0, cur.rowcount)


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
        rows, size = db.execute(
            f"SELECT count(*), coalesce(sum(length(payload)), 0) FROM outbox WHERE {ROWS_SQL}"
        ).fetchone()
        self.stats.rows, self.stats.bytes = rows, size + ROW_OVERHEAD * rows

    def write(self, db: sqlite3.Connection, frames: Iterable[AcceptedFrame]) -> None:
        """Inside the caller's open transaction, after it inserted ``frames`` into the outbox: count the
        model frames among them as history (their rows are the history), record which node used which
        version, and apply the bounds."""
        self._saved = replace(self.stats)
        sizes = []
        used: dict[tuple[int, int, int], list[int]] = {}  # (node, id, version) → [first, last, count]
        for f in frames:
            if f.codec != "model" or f.model_id is None:  # the outbox rows ROWS_SQL selects
                continue
            sizes.append(len(f.payload))
            if f.model_version is None:
                continue
            t = f.radio.utc_ms
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
        self.stats.stored += len(sizes)
        self.stats.rows += len(sizes)
        self.stats.bytes += sum(sizes) + ROW_OVERHEAD * len(sizes)
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
        upto = kept_upto(db)
        n = size = 0
        while True:  # the oldest delivered rows by id, a bounded batch at a time (no index on time needed)
            top, count, nbytes = db.execute(
                "SELECT max(id), count(*), coalesce(sum(length(payload)), 0) FROM"
                f" (SELECT id, created_ms, payload FROM outbox WHERE {KEPT_SQL} ORDER BY id LIMIT ?)"
                " WHERE created_ms < ?",
                (upto, _AGE_BATCH, cutoff),
            ).fetchone()
            if not count:
                break
            where = f"id <= ? AND created_ms < ? AND {KEPT_SQL}"
            db.execute(f"DELETE FROM outbox WHERE {where}", (top, cutoff, upto))
            n, size = n + count, size + nbytes
            if count < _AGE_BATCH:
                break
        if n:
            self._account(n, size, "age")
            log.info("history: dropped %d rows older than %g days", n, self.settings.retention_days)

    def _drop_oldest(self, db: sqlite3.Connection, excess: int) -> None:
        upto = kept_upto(db)
        n = size = 0
        while excess > 0 and self.stats.rows - n > 0:
            batch = max(1, excess // max(1, self.stats.bytes // max(1, self.stats.rows)))
            top, count, nbytes = db.execute(
                "SELECT max(id), count(*), coalesce(sum(length(payload)), 0) FROM"
                f" (SELECT id, payload FROM outbox WHERE {KEPT_SQL} ORDER BY id LIMIT ?)",
                (upto, batch),
            ).fetchone()
            if not count:
                break  # the rest is still to be delivered: the outbox's bounds hold it
            db.execute(f"DELETE FROM outbox WHERE id <= ? AND {KEPT_SQL}", (top, upto))
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
        self._tables = found & {"outbox", "history", "node_models"}
        # A v1 table not migrated yet (no service has opened the database since the upgrade) still holds
        # every model frame, the outbox's too: read it alone.
        self._source = _LEGACY_SOURCE if "history" in found else _SOURCE

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
        if not self._tables & {"outbox", "history"}:
            return
        where, params = _where(node_id, model_id, since_ms, until_ms)
        cur = self._db.execute(
            "SELECT node_id, fcnt, received_ms, model_id, model_version, payload FROM"
            f" ({self._source}){where} ORDER BY node_id, received_ms, fcnt",
            params,
        )
        for r in cur:
            yield HistoryRow(r[0], r[1], r[2], r[3], r[4], bytes(r[5]))

    def stats(self, model_id: int | None = None) -> dict[str, object]:
        if not self._tables & {"outbox", "history"}:
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
            f" coalesce(sum(length(payload)), 0) FROM ({self._source}){where}",
            params,
        ).fetchone()
        per_model = [
            {"model": f"{m}@{v}", "rows": n, "nodes": k}
            for m, v, n, k in self._db.execute(
                "SELECT model_id, model_version, count(*), count(DISTINCT node_id) FROM"
                f" ({self._source}){where} GROUP BY model_id, model_version ORDER BY model_id, model_version",
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
