"""What each node reported of its firmware (table ``node_info``), and the rule for switching its model.

A "set model" command (0x02) for a version the node does not hold would leave it sending nothing the
gateway can decode, or a model the gateway does not have; one for a version the gateway has not
installed would make every frame of the node ``unknown_model``. So the command is queued only when the
gateway has the version installed and the node's last report lists it with the same fingerprint
prefix. ``force`` overrides only a missing report (firmware that never reports); a report that lacks the
version, or lists another model under its number, and a version the gateway lacks are never overridden.
Used by the core thread (reports, MQTT commands) and by ``lora-gw nodes set-model``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.errors import GatewayError
from gateway.frames import nodeinfo
from gateway.frames.errors import FrameError
from gateway.frames.nodeinfo import NodeInfo
from gateway.statedb import transaction

SET_MODEL = 0x02  # node commands (docs/frame-format.md, "Node commands")
REPORT_INFO = 0x03
SCHEMA = """
CREATE TABLE IF NOT EXISTS node_info (
    node_id INTEGER PRIMARY KEY,
    payload BLOB NOT NULL,
    fcnt INTEGER NOT NULL,
    counter_epoch INTEGER NOT NULL,
    reported_utc TEXT NOT NULL
);
"""
# The installed model version's 8-byte fingerprint, None when the gateway does not have that version.
Installed = Callable[[int, int], bytes | None]


@dataclass(frozen=True, slots=True)
class Reported:
    """A node's last report, as stored."""

    info: NodeInfo
    fcnt: int
    counter_epoch: int
    reported_utc: str

    def to_dict(self) -> dict:
        return {**self.info.to_dict(), "reported_utc": self.reported_utc}

    @property
    def models_text(self) -> str:
        return ", ".join(m.key for m in self.info.models) or "none"


class SwitchRefused(GatewayError):
    """A model switch that must not be sent; ``reason`` is what the refusal is counted under."""

    reason = "model_switch"


def set_model_command(model_id: int, version: int) -> bytes:
    if not 0 <= model_id <= 15:
        raise SwitchRefused(f"model id {model_id} is outside 0..15", "bad_model")
    if not 0 <= version <= 0xFFFF:
        raise SwitchRefused(
            f"model version {version} is outside 0..65535 (the set-model command's range)", "bad_model"
        )
    return bytes((SET_MODEL, model_id)) + version.to_bytes(2, "little")


def parse_set_model(payload: bytes) -> tuple[int, int] | None:
    """(model id, version) when ``payload`` is a set-model command, else None."""
    if len(payload) == 4 and payload[0] == SET_MODEL:
        return payload[1], int.from_bytes(payload[2:4], "little")
    return None


def check_switch(
    node: str,
    model_id: int,
    version: int,
    reported: Reported | None,
    installed_fp: bytes | None,
    force: bool = False,
) -> str | None:
    """Raise SwitchRefused saying why node ``node`` must not be told to use ``model_id@version``; with
    ``force`` a missing report becomes the returned warning (None: nothing to warn about)."""
    ref = f"{model_id}@{version}"
    set_model_command(model_id, version)  # the range checks
    if installed_fp is None:
        raise SwitchRefused(
            f"node {node}: model {ref} is not installed on the gateway, which could not decode the node's"
            f" frames under it (lora-gw model install FILE first)",
            "not_installed",
        )
    if reported is None:
        why = f"node {node} has not reported the models its firmware holds"
        if not force:
            raise SwitchRefused(f"{why}; refused (--force sends it anyway)", "not_reported")
        return f"{why}; sent anyway (--force): a node without {ref} ignores it or stops being decodable"
    held = reported.info.held(model_id, version)
    if held is None:
        raise SwitchRefused(
            f"node {node} reported holding {reported.models_text} ({reported.reported_utc}), not {ref};"
            " refused (a node updated since can be asked to report again: command 03)",
            "not_held",
        )
    if not installed_fp.startswith(held.fp_prefix):
        raise SwitchRefused(
            f"node {node} holds another model {ref} (fingerprint {held.fp_prefix.hex()}…, the gateway's"
            f" {installed_fp[: len(held.fp_prefix)].hex()}…): its frames would fail as model_mismatch;"
            " refused",
            "other_fingerprint",
        )
    return None


class NodeInfoStore:
    """Table ``node_info`` on a connection of the state database; one owner thread per connection."""

    def __init__(self, db: sqlite3.Connection, create: bool = True) -> None:
        self.db = db
        if create:
            db.executescript(SCHEMA)

    def _exists(self) -> bool:
        row = self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'node_info'")
        return row.fetchone() is not None

    def record(self, node_id: int, payload: bytes, fcnt: int, counter_epoch: int) -> Reported | None:
        """Store a verified report; None (ignored) when it is older than the stored one (a replay after
        a restart: the counter of a report is not persisted with the registry's)."""
        info = nodeinfo.parse(payload, node_id)
        utc = datetime.now(UTC).isoformat(timespec="seconds")
        with transaction(self.db):
            row = self.db.execute(
                "SELECT fcnt, counter_epoch FROM node_info WHERE node_id = ?", (node_id,)
            ).fetchone()
            if row is not None and row[1] == counter_epoch and fcnt <= row[0]:
                return None
            self.db.execute(
                "INSERT OR REPLACE INTO node_info (node_id, payload, fcnt, counter_epoch, reported_utc)"
                " VALUES (?, ?, ?, ?, ?)",
                (node_id, payload, fcnt, counter_epoch, utc),
            )
        return Reported(info, fcnt, counter_epoch, utc)

    def get(self, node_id: int) -> Reported | None:
        return self.all(node_id).get(node_id)

    def all(self, node_id: int | None = None) -> dict[int, Reported]:
        """node id → last report (a stored report this code cannot parse is left out)."""
        if not self._exists():
            return {}
        sql = "SELECT node_id, payload, fcnt, counter_epoch, reported_utc FROM node_info"
        rows = self.db.execute(*((sql,) if node_id is None else (sql + " WHERE node_id = ?", (node_id,))))
        out = {}
        for nid, payload, fcnt, epoch, utc in rows.fetchall():
            try:
                out[nid] = Reported(nodeinfo.parse(bytes(payload), nid), fcnt, epoch, utc)
            except FrameError:
                continue
        return out
