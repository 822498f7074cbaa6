"""What the installed systemd service uses (its user, config and state directory), so that a CLI command
working on another database, or as another user, says so instead of silently diverging from it."""

from __future__ import annotations

import os
import pwd
import shlex
from dataclasses import dataclass
from pathlib import Path

from gateway import paths
from gateway.cli.notices import warn
from gateway.errors import GatewayError

ENV_UNIT = "LORA_GW_UNIT_FILE"  # another unit file (tests, unusual installs)
UNIT_PATHS = (
    "/etc/systemd/system/lora-gw.service",
    "/lib/systemd/system/lora-gw.service",
    "/usr/lib/systemd/system/lora-gw.service",
)


@dataclass(frozen=True, slots=True)
class InstalledService:
    unit: Path
    user: str | None
    config: str | None
    state_dir: Path | None  # None: not known from here (the config is not readable by this user)


def _unit_file() -> Path | None:
    explicit = os.environ.get(ENV_UNIT)
    if explicit:
        return Path(explicit) if Path(explicit).is_file() else None
    return next((Path(p) for p in UNIT_PATHS if Path(p).is_file()), None)


def installed() -> InstalledService | None:
    """The installed service's settings, from its unit file and its config (None: no unit installed)."""
    unit = _unit_file()
    if unit is None:
        return None
    try:
        lines = unit.read_text(errors="replace").splitlines()
    except OSError:
        return None
    fields: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.strip().partition("=")
        if sep and key in ("User", "ExecStart", "StateDirectory"):
            fields[key] = value.strip()
    config = None
    try:
        argv = shlex.split(fields.get("ExecStart", "").lstrip("-@+!:"))
    except ValueError:
        argv = []
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            config = argv[i + 1]
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
    state: Path | None = None
    from_config = False
    if config:
        try:
            from gateway.service.config import load_config

            configured = load_config(config).gateway.state_dir
            from_config = True
            state = Path(configured) if configured else None
        except (GatewayError, OSError, UnicodeDecodeError):
            pass  # not readable by this user, or broken: the unit alone may still tell
    if state is None and fields.get("StateDirectory") and (from_config or not config):
        state = Path("/var/lib") / fields["StateDirectory"].split()[0]
    return InstalledService(unit, fields.get("User") or None, config, state)


def mismatch(state_dir: str | None) -> list[str]:
    """Why this command may not see what the installed service sees (empty: it does, or no service)."""
    svc = installed()
    if svc is None:
        return []
    out = []
    mine = paths.state_dir(state_dir, create=False)
    if svc.state_dir is not None and os.path.realpath(mine) != os.path.realpath(svc.state_dir):
        hint = f"; add --config {svc.config}" if svc.config else ""
        out.append(
            f"this command uses {mine / paths.DB_NAME}, but the installed service ({svc.unit}) uses"
            f" {svc.state_dir / paths.DB_NAME}{hint}"
        )
    if svc.user:
        try:
            uid = pwd.getpwnam(svc.user).pw_uid
        except KeyError:
            uid = None
        if uid is not None and uid != os.geteuid():
            me = pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() != uid else svc.user
            out.append(
                f"running as {me}, but the installed service runs as {svc.user}: files this command creates"
                f" may not be usable by the service (run it with sudo -u {svc.user}, or sudo on its state"
                " directory)"
            )
    return out


def warn_mismatch(state_dir: str | None) -> None:
    for message in mismatch(state_dir):
        warn(message)
