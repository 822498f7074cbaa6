"""Where the gateway keeps its state (SQLite database, installed models).

Order: an explicit path, then ``$LORA_GW_STATE_DIR``, then systemd's ``$STATE_DIRECTORY``,
then ``/var/lib/lora-gw`` for root, else ``$XDG_STATE_HOME/lora-gw`` (``~/.local/state/lora-gw``).
"""

from __future__ import annotations

import os
from pathlib import Path

DB_NAME = "gateway.db"
MODELS_DIR = "models"


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
