"""Commands from MQTT to nodes: validation, a durable per-node queue (state database), statuses.

``lora/<gateway_id>/nodes/<node>/command`` carries JSON ``{"payload_hex" | "payload_b64", "confirm",
"expires_s", "id", "force"}`` (``force``: a set-model command for a node that never reported its models).
A valid command is stored (committed) before ``queued`` is reported; it is sent in
the receive window after the node's next uplink (Class A) and reported ``sent``, then ``acknowledged``
when a confirmed one is acknowledged by the node's next uplink; ``expired`` when its time ran out before
a window, ``rejected`` (with the reason) when it cannot be taken. The same table holds the per-node
downlink counters (advanced and committed before a downlink goes on air: a counter is never reused).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.statedb import transaction

log = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 48  # keeps a secured downlink (≤ 12 + 2 + 48 bytes) short on air
MAX_QUEUE_PER_NODE = 8
MAX_EXPIRES_S = 7 * 86400.0
MAX_ID_LEN = 64
SCHEMA = """
CREATE TABLE IF NOT EXISTS downlink_counters (
    node_id INTEGER NOT NULL,
    key_epoch INTEGER NOT NULL,
    next_fcnt INTEGER NOT NULL,
    PRIMARY KEY (node_id, key_epoch)
);
CREATE TABLE IF NOT EXISTS downlink_commands (
    row_id INTEGER PRIMARY KEY,
    node_id INTEGER NOT NULL,
    cmd_id TEXT,
    payload BLOB NOT NULL,
    confirm INTEGER NOT NULL,
    expires_wall REAL,
    status TEXT NOT NULL,
    dl_fcnt INTEGER,
    created_wall REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS downlink_commands_node ON downlink_commands (node_id, status, row_id);
"""


class CommandRejected(Exception):
    """A command that cannot be taken; ``reason`` goes to the status topic."""

    def __init__(self, reason: str, cmd_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cmd_id = cmd_id


@dataclass(frozen=True, slots=True)
class Command:
    row_id: int
    node_id: int
    cmd_id: str | None
    payload: bytes
    confirm: bool
    expires_wall: float | None
    dl_fcnt: int | None = None


@dataclass(frozen=True, slots=True)
class Status:
    node_id: int | None
    node_topic: str  # the <node> level the command came on (name or id), for the status topic
    cmd_id: str | None
    status: str  # queued | sent | acknowledged | expired | rejected
    reason: str | None = None

    def payload(self) -> bytes:
        out: dict = {"id": self.cmd_id, "status": self.status}
        if self.reason:
            out["reason"] = self.reason
        return json.dumps(out).encode()


@dataclass(frozen=True, slots=True)
class Request:
    """A command as the MQTT message gives it."""

    payload: bytes
    confirm: bool
    expires_s: float | None
    cmd_id: str | None
    force: bool = False


def parse_command(raw: bytes) -> Request:
    """The command in the MQTT message, or CommandRejected with the reason."""
    try:
        msg = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CommandRejected("malformed: not a JSON object") from None
    if not isinstance(msg, dict):
        raise CommandRejected("malformed: not a JSON object")
    cmd_id = msg.get("id")
    if cmd_id is not None and (not isinstance(cmd_id, str | int) or isinstance(cmd_id, bool)):
        raise CommandRejected("malformed: id must be a string or an integer")
    cmd_id = None if cmd_id is None else str(cmd_id)[:MAX_ID_LEN]
    unknown = set(msg) - {"payload_hex", "payload_b64", "confirm", "expires_s", "id", "force"}
    if unknown:
        raise CommandRejected(f"malformed: unknown field {sorted(unknown)[0]!r}", cmd_id)
    has_hex, has_b64 = "payload_hex" in msg, "payload_b64" in msg
    if has_hex == has_b64:
        raise CommandRejected("malformed: give exactly one of payload_hex, payload_b64", cmd_id)
    try:
        if has_hex:
            if not isinstance(msg["payload_hex"], str):
                raise ValueError
            payload = bytes.fromhex(msg["payload_hex"])
        else:
            if not isinstance(msg["payload_b64"], str):
                raise ValueError
            payload = base64.b64decode(msg["payload_b64"], validate=True)
    except (ValueError, binascii.Error):
        raise CommandRejected("malformed: payload is not valid hex/base64", cmd_id) from None
    if not payload:
        raise CommandRejected("malformed: empty payload", cmd_id)
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandRejected(f"oversized: {len(payload)} bytes, at most {MAX_COMMAND_BYTES}", cmd_id)
    confirm, force = msg.get("confirm", False), msg.get("force", False)
    if not isinstance(confirm, bool):
        raise CommandRejected("malformed: confirm must be true or false", cmd_id)
    if not isinstance(force, bool):
        raise CommandRejected("malformed: force must be true or false", cmd_id)
    expires = msg.get("expires_s")
    if expires is not None:
        if (
            isinstance(expires, bool)
            or not isinstance(expires, int | float)
            or not 0 < expires <= MAX_EXPIRES_S
        ):
            raise CommandRejected(
                f"malformed: expires_s must be a number in (0, {MAX_EXPIRES_S:.0f}]", cmd_id
            )
        expires = float(expires)
    return Request(payload, confirm, expires, cmd_id, force)


class DownlinkStore:
    """The command queue and downlink counters. One owner thread (the core)."""

    def __init__(
        self,
        db: sqlite3.Connection,
        wall: Callable[[], float] = time.time,
        max_queue: int = MAX_QUEUE_PER_NODE,
        owner: bool = True,
    ) -> None:
        """``owner``: the service's core (at start, a window the last run left unfinished is queued
        again); an operator command beside a running service only enqueues, so it passes False."""
        self.db = db
        self._wall = wall
        self.max_queue = max_queue
        db.executescript(SCHEMA)
        if owner:
            with transaction(db):  # a window the last run did not finish: the command is still to be sent
                db.execute("UPDATE downlink_commands SET status = 'queued' WHERE status = 'sending'")

    # -- counters ----------------------------------------------------------------------------------------
    def take_fcnt(self, node_id: int, key_epoch: int) -> int:
        """The next downlink counter for the node, committed as used before the caller sends it."""
        with transaction(self.db):
            row = self.db.execute(
                "SELECT next_fcnt FROM downlink_counters WHERE node_id = ? AND key_epoch = ?",
                (node_id, key_epoch),
            ).fetchone()
            fcnt = 0 if row is None else row[0]
            self.db.execute(
                "INSERT OR REPLACE INTO downlink_counters (node_id, key_epoch, next_fcnt) VALUES (?, ?, ?)",
                (node_id, key_epoch, fcnt + 1),
            )
        return fcnt

    # -- commands ----------------------------------------------------------------------------------------
    def enqueue(
        self, node_id: int, payload: bytes, confirm: bool, expires_s: float | None, cmd_id: str | None
    ) -> int:
        now = self._wall()
        with transaction(self.db):
            (n,) = self.db.execute(
                "SELECT count(*) FROM downlink_commands WHERE node_id = ? AND status = 'queued'", (node_id,)
            ).fetchone()
            if n >= self.max_queue:
                raise CommandRejected(f"queue full: {n} commands already queued for this node", cmd_id)
            cur = self.db.execute(
                "INSERT INTO downlink_commands (node_id, cmd_id, payload, confirm, expires_wall, status,"
                " created_wall) VALUES (?, ?, ?, ?, ?, 'queued', ?)",
                (node_id, cmd_id, payload, int(confirm), None if expires_s is None else now + expires_s, now),
            )
        return int(cur.lastrowid or 0)

    def nodes_with_queued(self) -> set[int]:
        rows = self.db.execute("SELECT DISTINCT node_id FROM downlink_commands WHERE status = 'queued'")
        return {r[0] for r in rows}

    def pending(self, node_id: int) -> int:
        (n,) = self.db.execute(
            "SELECT count(*) FROM downlink_commands WHERE node_id = ? AND status = 'queued'", (node_id,)
        ).fetchone()
        return int(n)

    def next_for(self, node_id: int) -> tuple[Command | None, list[Command]]:
        """(the oldest live queued command, the commands that expired meanwhile: marked expired)."""
        now = self._wall()
        expired: list[Command] = []
        rows = self.db.execute(
            "SELECT row_id, node_id, cmd_id, payload, confirm, expires_wall FROM downlink_commands"
            " WHERE node_id = ? AND status = 'queued' ORDER BY row_id",
            (node_id,),
        ).fetchall()
        for r in rows:
            cmd = Command(r[0], r[1], r[2], bytes(r[3]), bool(r[4]), r[5])
            if cmd.expires_wall is not None and cmd.expires_wall <= now:
                self.set_status(cmd.row_id, "expired")
                expired.append(cmd)
                continue
            return cmd, expired
        return None, expired

    def set_status(self, row_id: int, status: str, dl_fcnt: int | None = None) -> None:
        with transaction(self.db):
            self.db.execute(
                "UPDATE downlink_commands SET status = ?, dl_fcnt = coalesce(?, dl_fcnt) WHERE row_id = ?",
                (status, dl_fcnt, row_id),
            )

    def recent(self, node_id: int, limit: int = 5) -> list[tuple[str | None, bytes, str, float]]:
        """(id, payload, status, created wall time) of the node's last commands, newest first; the
        internal states read as their reported ones (``done``: sent, ``sending``: queued)."""
        rows = self.db.execute(
            "SELECT cmd_id, payload, status, created_wall FROM downlink_commands WHERE node_id = ?"
            " ORDER BY row_id DESC LIMIT ?",
            (node_id, limit),
        ).fetchall()
        shown = {"done": "sent", "sending": "queued"}
        return [(r[0], bytes(r[1]), shown.get(r[2], r[2]), r[3]) for r in rows]

    def unacknowledged(self, node_id: int) -> Command | None:
        """The node's last confirmed command sent at least once and not yet acknowledged, whatever its
        status now (sent, or queued or sending again)."""
        r = self.db.execute(
            "SELECT row_id, node_id, cmd_id, payload, confirm, expires_wall, dl_fcnt FROM downlink_commands"
            " WHERE node_id = ? AND status IN ('sent', 'queued', 'sending') AND confirm = 1"
            " AND dl_fcnt IS NOT NULL ORDER BY row_id DESC LIMIT 1",
            (node_id,),
        ).fetchone()
        return None if r is None else Command(r[0], r[1], r[2], bytes(r[3]), bool(r[4]), r[5], r[6])

    def status(self, row_id: int) -> str | None:
        r = self.db.execute("SELECT status FROM downlink_commands WHERE row_id = ?", (row_id,)).fetchone()
        return None if r is None else str(r[0])

    def awaiting_ack(self, node_id: int) -> Command | None:
        """The confirmed command last sent to the node and not yet acknowledged."""
        r = self.db.execute(
            "SELECT row_id, node_id, cmd_id, payload, confirm, expires_wall, dl_fcnt FROM downlink_commands"
            " WHERE node_id = ? AND status = 'sent' AND confirm = 1 ORDER BY row_id DESC LIMIT 1",
            (node_id,),
        ).fetchone()
        return None if r is None else Command(r[0], r[1], r[2], bytes(r[3]), bool(r[4]), r[5], r[6])
