"""The node registry: table ``nodes`` in the gateway's state database (``<state_dir>/gateway.db``).

Opened through :mod:`gateway.statedb` only (created 0600 — it holds node keys — and never recreated
implicitly; see there why no other code may open the file). WAL journal. ``node_id`` and ``next_fcnt``
are a contract with the outbox, which advances ``next_fcnt`` in the transaction that stores a frame.
The registry's schema version is kept per component in the table ``schema_versions`` (the database is
shared with the outbox, so ``PRAGMA user_version`` cannot tell both schemas apart); a database newer
than this code is refused with a clear error.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from gateway import paths, statedb
from gateway.errors import GatewayError
from gateway.frames.crypto import KEY_LEN, MAX_EPOCH
from gateway.frames.types import NodeFormat, PayloadCodec
from gateway.frames.wire import MAX_FCNT, MAX_NODE_ID

log = logging.getLogger(__name__)

COMPONENT = "nodes"
SCHEMA_VERSION = 2
_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS nodes (
    node_id           INTEGER PRIMARY KEY CHECK (node_id BETWEEN 0 AND 4294967295),
    name              TEXT NOT NULL UNIQUE,
    format            TEXT NOT NULL CHECK (format IN ('frame', 'lpp', 'radiohead', 'raw')),
    payload           TEXT CHECK (payload IN ('lpp', 'raw')),
    key_hex           TEXT,
    model_id          INTEGER CHECK (model_id BETWEEN 0 AND 15),
    interval_s        REAL,
    latitude          REAL,
    longitude         REAL,
    radiohead_address INTEGER UNIQUE CHECK (radiohead_address BETWEEN 0 AND 254),
    next_fcnt         INTEGER NOT NULL DEFAULT 0,
    counter_epoch     INTEGER NOT NULL DEFAULT 0,
    created_utc       TEXT NOT NULL
);
"""
# v2: the key epoch (session keys are derived from the root key and it; 0 = the v1 keys, so existing nodes
# keep working) and the fingerprints of removed nodes' keys, so a key is never silently reused.
_SCHEMA_V2 = """
ALTER TABLE nodes ADD COLUMN key_epoch INTEGER NOT NULL DEFAULT 0 CHECK (key_epoch BETWEEN 0 AND 4294967295);
CREATE TABLE IF NOT EXISTS retired_keys (
    fingerprint  TEXT PRIMARY KEY,
    node_id      INTEGER NOT NULL,
    next_fcnt    INTEGER NOT NULL,
    key_epoch    INTEGER NOT NULL,
    removed_utc  TEXT NOT NULL
);
"""
_COLUMNS = (
    "node_id, name, format, payload, key_hex, model_id, interval_s, latitude, longitude, "
    "radiohead_address, next_fcnt, counter_epoch, created_utc, key_epoch"
)


NAME_RULE = "1 to 64 characters from A-Z a-z 0-9 . _ -"
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_RESERVED = re.compile(r"id-[0-9a-f]{8}")  # the topic name of a node without a usable name


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a node (None: it can). A name is one MQTT topic level, so it keeps to a
    set no broker or client refuses, that needs no escaping (two names never map to one topic) and that
    any terminal can print."""
    if not _NAME.fullmatch(name):
        return f"a name must be {NAME_RULE}"
    if parse_node_ref(name) is not None:
        return "a name that reads as a node id would be ambiguous"
    if _RESERVED.fullmatch(name):
        return "names of the form id-XXXXXXXX are reserved for nodes without a usable name"
    return None


def fallback_name(node_id: int) -> str:
    """What topics and messages use for a node without a usable name (a legacy registry entry, or a
    node removed while its frames wait in the outbox): refused as a name, so it never collides."""
    return f"id-{node_id:08x}"


def topic_name(node_id: int, name: str | None) -> str:
    """The node's name where it is usable, else its reserved fallback."""
    return name if name is not None and name_problem(name) is None else fallback_name(node_id)


def shown(text: str, limit: int = 80) -> str:
    """``text`` safe for a log line or a terminal: printable ASCII, everything else escaped (``\\t``,
    ``\\x1b``, ``\\udcff`` for an undecodable byte), cut to ``limit`` characters."""
    out = text.encode("unicode_escape").decode("ascii")
    return out if len(out) <= limit else f"{out[:limit]}...({len(text)} characters)"


def _text(raw: bytes) -> str:
    """Column text as stored, even when an old tool wrote bytes that are not UTF-8 (kept reversible)."""
    return raw.decode("utf-8", "surrogateescape")


class RegistryError(GatewayError):
    """A registry request that cannot be done; the message names the node."""

    reason = "registry"


@dataclass(frozen=True, slots=True)
class Node:
    """One registered node. ``key`` is the 16-byte root key of a secured node (None: open profile)."""

    node_id: int
    name: str
    format: NodeFormat = NodeFormat.FRAME
    payload: PayloadCodec | None = None  # radiohead: lpp or raw; lpp/raw nodes: implied; frame: per frame
    key: bytes | None = None
    model_id: int | None = None
    interval_s: float | None = None
    latitude: float | None = None
    longitude: float | None = None
    radiohead_address: int | None = None
    next_fcnt: int = 0
    counter_epoch: int = 0  # generation of the stored counter: bumped by every operator reset
    created_utc: str = ""
    key_epoch: int = 0  # session number the session keys are derived with (bumped by --new-epoch)

    @property
    def secured(self) -> bool:
        return self.key is not None

    @property
    def payload_codec(self) -> PayloadCodec | None:
        """The codec of this node's payloads when the packet cannot say (all but ``frame``)."""
        if self.format is NodeFormat.LPP:
            return PayloadCodec.LPP
        if self.format is NodeFormat.RAW:
            return PayloadCodec.RAW
        if self.format is NodeFormat.RADIOHEAD:
            return self.payload or PayloadCodec.LPP
        return None

    def to_dict(self, show_keys: bool = False) -> dict:
        out = {
            "node_id": self.node_id,
            "node_id_hex": f"0x{self.node_id:08x}",
            "name": self.name,
            "format": self.format.value,
            "payload": None if self.payload_codec is None else self.payload_codec.value,
            "secured": self.secured,
            "model_id": self.model_id,
            "interval_s": self.interval_s,
            "location": None if self.latitude is None else [self.latitude, self.longitude],
            "radiohead_address": self.radiohead_address,
            "next_fcnt": self.next_fcnt,
            "counter_epoch": self.counter_epoch,
            "key_epoch": self.key_epoch,
            "created_utc": self.created_utc,
        }
        if show_keys:
            out["key"] = None if self.key is None else self.key.hex()
        return out


def validate(node: Node) -> None:
    """Raise RegistryError naming the first field of ``node`` that cannot be stored."""
    nid = node.node_id
    if not 0 <= nid <= MAX_NODE_ID:
        raise RegistryError(f"node id {nid} is outside 0..0xFFFFFFFF", "bad_node")
    problem = name_problem(node.name)
    if problem is not None:
        raise RegistryError(f"node {nid}: name '{shown(node.name)}' refused: {problem}", "bad_node")
    if node.key is not None:
        if node.format is not NodeFormat.FRAME:
            raise RegistryError(f"node {nid}: only format 'frame' can be secured with a key", "bad_node")
        if len(node.key) != KEY_LEN:
            raise RegistryError(f"node {nid}: the key must be 16 bytes (32 hex digits)", "bad_node")
    if node.format is NodeFormat.RADIOHEAD:
        if node.radiohead_address is None:
            raise RegistryError(f"node {nid}: format radiohead needs --radiohead-address", "bad_node")
        if not 0 <= node.radiohead_address <= 254:
            raise RegistryError(
                f"node {nid}: RadioHead address must be 0..254 (255 is broadcast)", "bad_node"
            )
    elif node.radiohead_address is not None:
        raise RegistryError(f"node {nid}: a RadioHead address needs format radiohead", "bad_node")
    if node.payload not in (None, PayloadCodec.LPP, PayloadCodec.RAW):
        raise RegistryError(f"node {nid}: payload must be lpp or raw", "bad_node")
    if node.payload is not None and node.format is not NodeFormat.RADIOHEAD:
        raise RegistryError(f"node {nid}: a payload format is declared only for radiohead nodes", "bad_node")
    if node.model_id is not None and not 0 <= node.model_id <= 15:
        raise RegistryError(f"node {nid}: model id {node.model_id} is outside 0..15", "bad_node")
    if node.interval_s is not None and not node.interval_s > 0:
        raise RegistryError(f"node {nid}: the reporting interval must be > 0 s", "bad_node")
    if (node.latitude is None) != (node.longitude is None):
        raise RegistryError(f"node {nid}: a location needs both latitude and longitude", "bad_node")
    if node.latitude is not None and not (-90 <= node.latitude <= 90 and -180 <= node.longitude <= 180):
        raise RegistryError(
            f"node {nid}: location {node.latitude},{node.longitude} is not on Earth", "bad_node"
        )
    if not 0 <= node.next_fcnt <= MAX_FCNT + 1:
        raise RegistryError(f"node {nid}: counter {node.next_fcnt} is outside 0..2^32", "bad_node")
    if not 0 <= node.key_epoch <= MAX_EPOCH:
        raise RegistryError(f"node {nid}: key epoch {node.key_epoch} is outside 0..2^32 - 1", "bad_node")


def key_fingerprint(key: bytes) -> str:
    """What the registry keeps of a removed node's key: 64 bits of SHA-256, enough to recognise the key
    when it is added again, useless for recovering it."""
    return hashlib.sha256(b"lora-gw key fingerprint\x00" + key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class RetiredKey:
    """Where a removed node's key stopped: re-adding it must resume here, never at counter 0."""

    fingerprint: str
    node_id: int
    next_fcnt: int
    key_epoch: int
    removed_utc: str


def parse_node_ref(text: str) -> int | None:
    """A node id written as decimal or 0x-hex, or None if ``text`` is not a number."""
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text, 10)
    except ValueError:
        return None


def warn_unusable_names(nodes: list[Node]) -> int:
    """One WARNING per node whose stored name (from before names were checked) is unusable; such nodes
    publish under their reserved fallback name. Returns how many there are."""
    count = 0
    for n in nodes:
        problem = name_problem(n.name)
        if problem is not None:
            count += 1
            log.warning(
                "node %08x: registered name '%s' is unusable (%s); its topics use %s until renamed"
                " (lora-gw nodes rename %d NEW-NAME)",
                n.node_id,
                shown(n.name),
                problem,
                fallback_name(n.node_id),
                n.node_id,
            )
    return count


class NodeRegistry:
    """CRUD on the ``nodes`` table. One connection; use one instance per thread."""

    def __init__(self, db_file: str | os.PathLike[str]) -> None:
        self.path = Path(db_file)
        # Used by one thread at a time, not necessarily the one that opened it (the service's decoder).
        self._db = statedb.connect(self.path, timeout=10.0)
        self._db.text_factory = _text
        try:
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise RegistryError(f"{self.path}: not a usable database ({exc})", "database") from exc
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def open(cls, state_dir: str | os.PathLike[str] | None = None) -> NodeRegistry:
        return cls(paths.db_path(state_dir))

    def __enter__(self) -> NodeRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        with statedb.transaction(self._db) as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_versions"
                " (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            row = db.execute(
                "SELECT version FROM schema_versions WHERE component = ?", (COMPONENT,)
            ).fetchone()
            version = row[0] if row else 0
            if version > SCHEMA_VERSION:
                raise RegistryError(
                    f"{self.path}: node registry schema v{version} is newer than this gateway"
                    f" (v{SCHEMA_VERSION}); upgrade lora-gw",
                    "database",
                )
            if version == 0:
                log.info("node registry created in %s (schema v%d)", self.path, SCHEMA_VERSION)
            for step, schema in enumerate((_SCHEMA_V1, _SCHEMA_V2), start=1):
                if version < step:
                    for statement in schema.split(";"):
                        if statement.strip():
                            db.execute(statement)
            if version < SCHEMA_VERSION:
                db.execute(
                    "INSERT OR REPLACE INTO schema_versions (component, version) VALUES (?, ?)",
                    (COMPONENT, SCHEMA_VERSION),
                )

    @staticmethod
    def _row(row: tuple) -> Node:
        (
            nid,
            name,
            fmt,
            payload,
            key_hex,
            model_id,
            interval_s,
            lat,
            lon,
            rh,
            next_fcnt,
            epoch,
            created,
            kep,
        ) = row
        return Node(
            node_id=nid,
            name=name,
            format=NodeFormat(fmt),
            payload=None if payload is None else PayloadCodec(payload),
            key=None if key_hex is None else bytes.fromhex(key_hex),
            model_id=model_id,
            interval_s=interval_s,
            latitude=lat,
            longitude=lon,
            radiohead_address=rh,
            next_fcnt=next_fcnt,
            counter_epoch=epoch,
            created_utc=created,
            key_epoch=kep,
        )

    def retired(self, key: bytes) -> RetiredKey | None:
        """Where ``key`` stopped if a node that used it was removed (None: never removed)."""
        row = self._db.execute(
            "SELECT fingerprint, node_id, next_fcnt, key_epoch, removed_utc FROM retired_keys"
            " WHERE fingerprint = ?",
            (key_fingerprint(key),),
        ).fetchone()
        return None if row is None else RetiredKey(*row)

    def add(self, node: Node, force: bool = False) -> Node:
        """Store a new node (its counter starts at ``node.next_fcnt``, normally 0).

        A key that a removed node used is refused: at counter 0 it would accept that node's old frames and
        reuse their keystreams. With ``force`` the node resumes in a new epoch after the retired one
        (counter 0, fresh session keys), so neither can happen."""
        validate(node)
        self._check_attributable(node)
        if node.key is not None:
            old = self.retired(node.key)
            if old is not None and not force:
                raise RegistryError(
                    f"node {node.node_id}: refused, this key was used by node {old.node_id} (removed"
                    f" {old.removed_utc}, next counter {old.next_fcnt}, key epoch {old.key_epoch}); a reused"
                    " key accepts replays of its old frames: generate a new key (--generate-key), or add"
                    f" it with --force to continue in key epoch {old.key_epoch + 1} from counter 0",
                    "key_reused",
                )
            if old is not None:
                node = replace(
                    node, next_fcnt=0, key_epoch=max(node.key_epoch, min(old.key_epoch + 1, MAX_EPOCH))
                )
        created = node.created_utc or datetime.now(UTC).isoformat(timespec="seconds")
        try:
            with statedb.transaction(self._db) as db:
                self._insert(db, node, created)
                if node.key is not None:
                    db.execute("DELETE FROM retired_keys WHERE fingerprint = ?", (key_fingerprint(node.key),))
        except sqlite3.IntegrityError as exc:
            raise RegistryError(self._conflict(node), "node_exists") from exc
        except sqlite3.Error as exc:
            raise self._write_error(exc) from None
        log.info("node %d (%s) added, format %s", node.node_id, shown(node.name), node.format.value)
        return self.find(node.node_id)

    @staticmethod
    def _insert(db: sqlite3.Connection, node: Node, created: str) -> None:
        db.execute(
            f"INSERT INTO nodes ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                node.node_id,
                node.name,
                node.format.value,
                None if node.payload is None else node.payload.value,
                None if node.key is None else node.key.hex(),
                node.model_id,
                node.interval_s,
                node.latitude,
                node.longitude,
                node.radiohead_address,
                node.next_fcnt,
                node.counter_epoch,
                created,
                node.key_epoch,
            ),
        )

    def _check_attributable(self, node: Node) -> None:
        """Refuse a second bare (lpp/raw) node: a bare payload cannot name its sender, so the decoder could
        attribute the packets of neither any more."""
        if not node.format.bare:
            return
        other = next((n for n in self.nodes() if n.format.bare and n.node_id != node.node_id), None)
        if other is not None:
            raise RegistryError(
                f"node {node.node_id}: refused, node {other.node_id} ({shown(other.name)}) already sends bare"
                f" {other.format.value} payloads, and a bare payload cannot name its sender; register this"
                " node as radiohead with its --radiohead-address, or use the frame format",
                "bad_node",
            )

    def _conflict(self, node: Node) -> str:
        if self.get(node.node_id) is not None:
            return f"node {node.node_id} (0x{node.node_id:08x}) is already registered"
        if self._db.execute("SELECT 1 FROM nodes WHERE name = ?", (node.name,)).fetchone():
            return f"a node named '{shown(node.name)}' is already registered"
        return f"RadioHead address {node.radiohead_address} is already taken by another node"

    def get(self, node_id: int) -> Node | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM nodes WHERE node_id = ?", (node_id,)).fetchone()
        return None if row is None else self._row(row)

    def find(self, ref: str | int) -> Node:
        """The node named by id (decimal or 0x-hex) or by name; RegistryError if none."""
        nid = ref if isinstance(ref, int) else parse_node_ref(ref)
        if nid is not None:
            node = self.get(nid) if 0 <= nid <= MAX_NODE_ID else None
        else:
            node = next((n for n in self.nodes() if n.name == ref), None)  # any text, even undecodable
        if node is None:
            raise RegistryError(f"no node {shown(str(ref))} in the registry ({self.path})", "unknown_node")
        return node

    def nodes(self) -> list[Node]:
        try:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM nodes ORDER BY node_id").fetchall()
        except sqlite3.Error as exc:
            raise RegistryError(f"{self.path}: cannot read the node registry ({exc})", "database") from exc
        return [self._row(r) for r in rows]

    def _write_error(self, exc: sqlite3.Error) -> RegistryError:
        return RegistryError(f"{self.path}: cannot change the node registry ({exc})", "database")

    def _write(self, sql: str, params: tuple) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise self._write_error(exc) from None

    def remove(self, node_id: int) -> None:
        """Delete the node; a keyed node leaves its key's fingerprint, counter and epoch behind, so the
        same key is never silently re-added at counter 0."""
        removed = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            with statedb.transaction(self._db) as db:
                row = db.execute(
                    "SELECT key_hex, next_fcnt, key_epoch FROM nodes WHERE node_id = ?", (node_id,)
                ).fetchone()
                if row is None:
                    raise RegistryError(f"no node {node_id} in the registry ({self.path})", "unknown_node")
                key_hex, next_fcnt, key_epoch = row
                if key_hex is not None:
                    db.execute(
                        "INSERT OR REPLACE INTO retired_keys"
                        " (fingerprint, node_id, next_fcnt, key_epoch, removed_utc) VALUES (?, ?, ?, ?, ?)",
                        (key_fingerprint(bytes.fromhex(key_hex)), node_id, next_fcnt, key_epoch, removed),
                    )
                db.execute("DELETE FROM nodes WHERE node_id = ?", (node_id,))
        except sqlite3.Error as exc:
            raise self._write_error(exc) from None
        log.info("node %d removed", node_id)

    def reset_counter(self, node_id: int, next_fcnt: int = 0, new_epoch: bool = False) -> Node:
        """The operator's explicit counter reset. Bumps ``counter_epoch`` so a running decoder takes the
        stored value on its next reload (and a frame judged before cannot undo it). ``new_epoch`` also
        bumps the key epoch: new session keys, so no frame from before verifies and no keystream repeats;
        without it, old frames from ``next_fcnt`` on verify again."""
        if not 0 <= next_fcnt <= MAX_FCNT:
            raise RegistryError(f"counter {next_fcnt} is outside 0..0xFFFFFFFF", "bad_node")
        node = self.find(node_id)
        if new_epoch and node.key_epoch >= MAX_EPOCH:
            raise RegistryError(f"node {node_id}: key epochs exhausted: re-key the node", "bad_node")
        cur = self._write(
            "UPDATE nodes SET next_fcnt = ?, counter_epoch = counter_epoch + 1, key_epoch = key_epoch + ?"
            " WHERE node_id = ?",
            (next_fcnt, 1 if new_epoch else 0, node_id),
        )
        if cur.rowcount == 0:
            raise RegistryError(f"no node {node_id} in the registry ({self.path})", "unknown_node")
        log.info(
            "node %d counter reset to %d by the operator%s",
            node_id,
            next_fcnt,
            f", key epoch {node.key_epoch + 1}" if new_epoch else "",
        )
        return self.find(node_id)

    def rename(self, node_id: int, name: str) -> Node:
        """Give a node a new (valid) name: the way out for a legacy name its topics cannot use."""
        problem = name_problem(name)
        if problem is not None:
            raise RegistryError(f"node {node_id}: name '{shown(name)}' refused: {problem}", "bad_node")
        try:
            cur = self._db.execute("UPDATE nodes SET name = ? WHERE node_id = ?", (name, node_id))
        except sqlite3.IntegrityError:
            raise RegistryError(f"a node named {name!r} is already registered", "node_exists") from None
        except sqlite3.Error as exc:
            raise self._write_error(exc) from None
        if cur.rowcount == 0:
            raise RegistryError(f"no node {node_id} in the registry ({self.path})", "unknown_node")
        log.info("node %d renamed to %s", node_id, name)
        return self.find(node_id)

    def set_next_fcnt(self, node_id: int, next_fcnt: int) -> None:
        """Persist an accepted counter (the outbox does this inside its own transaction; this is for tools
        and tests). Never lowers the stored value."""
        self._write("UPDATE nodes SET next_fcnt = MAX(next_fcnt, ?) WHERE node_id = ?", (next_fcnt, node_id))
