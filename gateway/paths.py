"""Where the gateway keeps its state (SQLite database, installed models), and who may read it.

Order: an explicit path, then ``$LORA_GW_STATE_DIR``, then systemd's ``$STATE_DIRECTORY``,
then ``/var/lib/lora-gw`` for root, else ``$XDG_STATE_HOME/lora-gw`` (``~/.local/state/lora-gw``).

The database holds the node keys: the state directory and every ``gateway.db*`` file in it must be
closed to group and others, whoever owns them (:func:`exposed`, :func:`check_private`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import GatewayError

DB_NAME = "gateway.db"
MODELS_DIR = "models"
OPEN_BITS = 0o066  # read or write for group or others (execute alone on a directory lists nothing)
SELF_CLOSED = frozenset({DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"})  # statedb tightens these (if its own)


class StateExposedError(GatewayError):
    """The state directory or database is readable or writable by group or others."""

    reason = "state_permissions"


@dataclass(frozen=True, slots=True)
class Exposure:
    """A state path open to group or others; ``mine`` when this process could chmod it itself."""

    path: Path
    mode: int
    uid: int
    is_dir: bool

    @property
    def mine(self) -> bool:
        return self.uid == os.geteuid()

    @property
    def fix(self) -> str:
        return f"{'' if self.mine else 'sudo '}chmod {'700' if self.is_dir else '600'} {self.path}"


def exposed(directory: str | os.PathLike[str], own_files: bool = False) -> list[Exposure]:
    """The state directory and ``gateway.db*`` files in it (database, WAL, set-aside copies) that group or
    others may read or write. The database and its WAL are left out when this process owns them, unless
    ``own_files``: gateway.statedb closes those itself when it opens the database. Uses ``stat`` only: no
    descriptor of the database is ever opened (that would drop SQLite's locks, see gateway.statedb)."""
    path = Path(directory)
    try:
        st = path.stat()
    except OSError:  # missing, or not reachable by this user: nothing it could expose from here
        return []
    found = [Exposure(path, stat.S_IMODE(st.st_mode), st.st_uid, True)] if st.st_mode & OPEN_BITS else []
    try:
        names = sorted(os.listdir(path))
    except OSError:
        return found  # not listable by this user: the database cannot be opened either
    for name in names:
        if not name.startswith(DB_NAME) or name.endswith(".created"):  # the marker holds no keys
            continue
        try:
            fst = (path / name).stat()
        except OSError:
            continue
        if stat.S_ISREG(fst.st_mode) and fst.st_mode & OPEN_BITS:
            found.append(Exposure(path / name, stat.S_IMODE(fst.st_mode), fst.st_uid, False))
    return [e for e in found if own_files or not (e.mine and e.path.name in SELF_CLOSED)]


def exposure_message(found: list[Exposure]) -> str:
    """One line: what is open, that it holds the node keys, and the chmod that closes it."""
    what = ", ".join(f"{e.path} (mode {e.mode:04o})" for e in found)
    be, hold = ("is", "holds") if len(found) == 1 else ("are", "hold")
    fixes = " && ".join(e.fix for e in found)
    return f"state: {what} {be} readable or writable by group or others and {hold} node keys; run {fixes}"


def check_private(directory: str | os.PathLike[str]) -> None:
    """Refuse a state directory, or another user's database file in it, open to group or others."""
    found = exposed(directory)
    if found:
        raise StateExposedError(exposure_message(found))


def state_dir(explicit: str | os.PathLike[str] | None = None, create: bool = True) -> Path:
    if explicit:
        path = Path(explicit)
    elif os.environ.get("LORA_GW_STATE_DIR"):
        path = Path(os.environ["LORA_GW_STATE_DIR"])
    elif os.environ.get("STATE_DIRECTORY"):
        path = Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    elif os.geteuid() == 0:
        path = Path("/var/lib/lora-gw")
    else:
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        path = Path(base) / "lora-gw"
    if create:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def db_path(explicit_state_dir: str | os.PathLike[str] | None = None) -> Path:
    return state_dir(explicit_state_dir) / DB_NAME


def adopt_state_owner(explicit: str | os.PathLike[str] | None = None) -> int | None:
    """When root works on a state directory that belongs to the service user (``sudo lora-gw nodes add``),
    continue as that user, so that the database and model files it creates stay usable by the service.

    Returns the uid taken on, or None when nothing changed (not root, no such directory, or root owns it).
    """
    if os.geteuid() != 0:
        return None
    path = state_dir(explicit, create=False)
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if st.st_uid == 0:
        return None
    os.setgroups([])
    os.setgid(st.st_gid)
    os.setuid(st.st_uid)
    return st.st_uid
