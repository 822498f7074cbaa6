"""The host checks: ``spi_device``, ``outbox``, ``clock_sync``, ``models`` and ``systemd_unit``.

Everything here only looks: the state database is opened through SQLite with a read-only URI and never
with ``open()``/``os.open()`` (closing any descriptor of the file in a process drops SQLite's POSIX locks,
which would break a running service in this same process tree), a missing database is reported and
never created, and no directory is made. Outside facts (commands, device nodes, systemd) come through a
:class:`Host`, so each verdict can be tested on a machine without a Pi or systemd.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import shutil
import sqlite3
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from gateway import paths, statedb
from gateway.codec.errors import StoreError
from gateway.codec.store import ModelStore
from gateway.diag.report import Check
from gateway.service.config import Config
from gateway.sinks.outbox import undelivered

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 3.0
UNIT = "lora-gw.service"
SERVICE_STATE_DIR = Path("/var/lib/lora-gw")  # where the systemd unit keeps it (StateDirectory=lora-gw)
LOW_DISK_BYTES = 100 * 1024 * 1024  # below this a long broker outage fills the disk before max_rows
NEAR_LIMIT = 0.9  # share of outbox.max_rows / max_age_days at which the oldest frames are about to go


@dataclass(frozen=True, slots=True)
class Output:
    returncode: int | None  # None: the command timed out
    stdout: str
    stderr: str


def run_command(argv: list[str], timeout_s: float = COMMAND_TIMEOUT_S) -> Output | None:
    """Run a command with a deadline; None when it is not installed."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except FileNotFoundError:
        return None
    except subprocess.TimeoutExpired:
        return Output(None, "", f"{argv[0]} did not answer within {timeout_s:g} s")
    return Output(p.returncode, p.stdout, p.stderr)


def systemd_booted() -> bool:
    """sd_booted(): systemd is PID 1 exactly when this directory exists."""
    return Path("/run/systemd/system").is_dir()


@dataclass(frozen=True, slots=True)
class Host:
    """The outside world as the checks see it; tests replace parts of it."""

    run: Callable[[list[str], float], Output | None] = run_command
    systemd: Callable[[], bool] = systemd_booted
    dev_dir: Path = Path("/dev")
    boot_configs: tuple[Path, ...] = (Path("/boot/firmware/config.txt"), Path("/boot/config.txt"))
    access: Callable[[str, int], bool] = os.access


def default_host() -> Host:
    """The real host (tests substitute one)."""
    return Host()


def state_dir(cfg: Config, explicit: str | None = None) -> Path:
    """The state directory the service would use (``--state-dir``, the config, the environment, …),
    without creating it."""
    return paths.state_dir(explicit or cfg.gateway.state_dir, create=False)


# ---------------------------------------------------------------------------------------- spi_device


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _session_groups() -> set[str]:
    return {_group_name(g) for g in {os.getegid(), *os.getgroups()}}


def _listed_in(group: str, user: str) -> bool:
    """The user is a member of ``group`` in /etc/group (maybe not yet in this login session)."""
    try:
        return user in grp.getgrnam(group).gr_mem
    except KeyError:
        return False


def _spi_enabled_line(host: Host) -> str | None:
    for p in host.boot_configs:
        try:
            text = p.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if line.strip().replace(" ", "") == "dtparam=spi=on":
                return f"{p} has dtparam=spi=on"
        return f"{p} has no dtparam=spi=on line"
    return None


def _access_problem(dev: Path, host: Host, what: str) -> tuple[str, str] | None:
    """(cause, fix) when this user cannot open ``dev`` read/write, else None."""
    if host.access(str(dev), os.R_OK | os.W_OK):
        return None
    user = _user()
    try:
        st = dev.stat()
        group = _group_name(st.st_gid)
        perms = f"group {group}, mode {stat.S_IMODE(st.st_mode):o}"
    except OSError:
        group, perms = what, "unknown permissions"
    service = f"the service's user gets it with SupplementaryGroups={what} in the unit"
    if group in _session_groups():
        return (
            f"user {user} may not open {dev} ({perms}) although it is in group {group}",
            f"give the group read and write access (a udev rule: MODE=0660 GROUP={group}); {service}",
        )
    if _listed_in(group, user):
        return (
            f"user {user} was added to group {group}, but this login session started before that",
            "log out and back in (or reboot), then run doctor again",
        )
    return (
        f"user {user} may not open {dev} ({perms}) and is not in group {group}",
        f"sudo usermod -aG {group} {user}, then log out and back in; {service}",
    )


def spi_device_check(cfg: Config, host: Host) -> Check:
    r = cfg.radio
    if r.backend == "emulator":
        return Check.skipped("spi_device", "emulated radio: no SPI device is used")
    dev = Path(r.spi_device)
    found = sorted(str(p) for p in host.dev_dir.glob("spidev*"))
    listing = ", ".join(found) if found else "none"
    if not dev.exists():
        boot = _spi_enabled_line(host)
        detail = f"SPI devices here: {listing}" + (f"; {boot}" if boot else "")
        overlay = (
            "; a board whose chip select is on another pin needs an overlay too"
            " (Dragino: dtoverlay=spi0-cs,cs0_pin=25)"
        )
        if found:
            return Check.failed(
                "spi_device",
                detail,
                f"{dev} does not exist; this system has {listing}",
                f"set radio.spi_device to the device your radio board uses{overlay}",
            )
        return Check.failed(
            "spi_device",
            detail,
            f"{dev} does not exist: SPI is switched off",
            "switch SPI on (sudo raspi-config nonint do_spi 0, or dtparam=spi=on in"
            f" /boot/firmware/config.txt) and reboot{overlay}",
        )
    if not stat.S_ISCHR(dev.stat().st_mode):
        return Check.failed(
            "spi_device",
            f"SPI devices here: {listing}",
            f"{dev} is not a device node",
            "set radio.spi_device to an SPI device such as /dev/spidev0.0",
        )
    problem = _access_problem(dev, host, "spi")
    if problem:
        return Check.failed("spi_device", f"SPI devices here: {listing}", *problem)
    notes = [f"{dev} read/write ok"]
    chips = sorted(host.dev_dir.glob("gpiochip*"))
    if chips:
        problem = _access_problem(chips[0], host, "gpio")
        if problem:
            return Check.failed("spi_device", f"{dev} ok; GPIO chips: {', '.join(map(str, chips))}", *problem)
        notes.append(f"{chips[0]} read/write ok")
    member = sorted(g for g in ("spi", "gpio") if g in _session_groups())
    notes.append(f"user {_user()} in groups: {', '.join(member) or 'neither spi nor gpio'}")
    return Check.passed("spi_device", "; ".join(notes))


# -------------------------------------------------------------------------------------------- outbox


@dataclass(frozen=True, slots=True)
class OutboxFacts:
    path: Path
    exists: bool
    size_bytes: int | None = None
    depth: int | None = None  # rows waiting (None: no outbox table yet)
    oldest_age_s: float | None = None
    quick_check: str | None = None  # "ok" or SQLite's first complaint
    nodes: int | None = None
    free_bytes: int | None = None
    error: str | None = None  # the database could not be read

    def as_dict(self) -> dict:
        return {
            "path": str(self.path),
            "exists": self.exists,
            "size_bytes": self.size_bytes,
            "depth": self.depth,
            "oldest_age_s": self.oldest_age_s,
            "quick_check": self.quick_check,
            "nodes": self.nodes,
            "free_bytes": self.free_bytes,
            "error": self.error,
        }


def open_readonly(db: Path, timeout_s: float = 2.0) -> sqlite3.Connection:
    """A read-only SQLite connection; fails (never creates) when the file is missing."""
    return sqlite3.connect(f"file:{quote(str(db.resolve()))}?mode=ro", uri=True, timeout=timeout_s)


def _table(con: sqlite3.Connection, name: str) -> bool:
    return (
        con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        is not None
    )


def read_outbox(db: Path, now_s: float | None = None) -> OutboxFacts:
    """Depth, oldest age, quick_check and free disk of the state database, read-only."""
    try:
        free = shutil.disk_usage(db.parent).free
    except OSError:
        free = None
    try:
        size = db.stat().st_size
    except FileNotFoundError:
        return OutboxFacts(db, False, free_bytes=free)
    except OSError as exc:
        return OutboxFacts(db, True, free_bytes=free, error=exc.strerror or str(exc))
    now_ms = (time.time() if now_s is None else now_s) * 1000.0
    try:
        con = open_readonly(db)
    except sqlite3.Error as exc:
        return OutboxFacts(db, True, size, free_bytes=free, error=str(exc))
    try:
        check = con.execute("PRAGMA quick_check(1)").fetchone()[0]
        depth = oldest = nodes = None
        if _table(con, "outbox"):
            depth, first = undelivered(con)  # rows still to deliver (kept history rows are not backlog)
            oldest = None if first is None else max(0.0, (now_ms - first) / 1000.0)
        if _table(con, "nodes"):
            nodes = con.execute("SELECT COUNT(*) FROM nodes").fetchone()[0]
        return OutboxFacts(db, True, size, depth, oldest, check, nodes, free)
    except sqlite3.DatabaseError as exc:  # "database disk image is malformed", "file is not a database"
        return OutboxFacts(db, True, size, quick_check=str(exc), free_bytes=free)
    except sqlite3.Error as exc:
        return OutboxFacts(db, True, size, free_bytes=free, error=str(exc))
    finally:
        con.close()


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def outbox_check(cfg: Config, f: OutboxFacts) -> Check:
    lost = statedb.problem(f.path)  # emptied, deleted, or its WAL deleted: the service refuses to start
    if lost is not None:
        cause, _, fix = lost.message.partition("; ")
        return Check.failed("outbox", str(f.path), cause, fix)
    if not f.exists:
        if f.path.parent != SERVICE_STATE_DIR and (SERVICE_STATE_DIR / paths.DB_NAME).exists():
            fix = f"the service keeps it in {SERVICE_STATE_DIR}: run sudo lora-gw doctor (or --state-dir)"
            return Check.failed("outbox", str(f.path), f"there is no gateway database at {f.path}", fix)
        if not f.path.parent.is_dir():
            return Check.failed(
                "outbox",
                str(f.path),
                f"there is no gateway database at {f.path} (the directory does not exist)",
                "check state_dir in the config (or --state-dir); the service's is /var/lib/lora-gw",
            )
        return Check.skipped(
            "outbox",
            f"no database yet at {f.path}: the service creates it when it first starts (or: state init)",
        )
    if f.error is not None:
        return Check.failed(
            "outbox",
            str(f.path),
            f"cannot read {f.path}: {f.error}",
            "run doctor as the service's user or with sudo",
        )
    if f.quick_check != "ok":
        return Check.failed(
            "outbox",
            str(f.path),
            f"the database is damaged (quick_check: {f.quick_check})",
            "stop the service, keep a copy of gateway.db, and rebuild it: sqlite3 gateway.db .recover |"
            " sqlite3 fixed.db, then put fixed.db in its place",
        )
    o = cfg.outbox
    depth = f.depth or 0
    parts = [
        f"{depth} frames waiting" if f.depth is not None else "no outbox table yet (the service makes it)"
    ]
    if f.oldest_age_s is not None:
        parts.append(f"oldest {_age(f.oldest_age_s)}")
    parts.append("quick_check ok")
    if f.free_bytes is not None:
        parts.append(f"{_mb(f.free_bytes)} free")
    detail = ", ".join(parts)
    if depth >= NEAR_LIMIT * o.max_rows:
        return Check.failed(
            "outbox",
            detail,
            f"{depth} frames wait for the broker, close to outbox.max_rows ({o.max_rows}):"
            " the oldest are about to be dropped",
            "get the broker connection working again (see the broker checks), or raise outbox.max_rows",
        )
    if f.oldest_age_s is not None and f.oldest_age_s >= NEAR_LIMIT * o.max_age_days * 86400:
        return Check.failed(
            "outbox",
            detail,
            f"frames have waited {_age(f.oldest_age_s)}, close to outbox.max_age_days"
            f" ({o.max_age_days:g} d): they are about to be dropped",
            "get the broker connection working again (see the broker checks), or raise outbox.max_age_days",
        )
    floor = int(o.min_free_mb * 1024 * 1024)
    if f.free_bytes is not None and f.free_bytes < floor:
        return Check.failed(
            "outbox",
            detail,
            f"only {_mb(f.free_bytes)} free on the disk of {f.path.parent}, below outbox.min_free_mb"
            f" ({o.min_free_mb:g} MB): new frames are not being stored (stored ones are kept)",
            "free disk space (sudo journalctl --vacuum-size=50M; sudo apt-get clean) or use a bigger card",
        )
    if f.free_bytes is not None and f.free_bytes < max(LOW_DISK_BYTES, 2 * floor):
        return Check.failed(
            "outbox",
            detail,
            f"only {_mb(f.free_bytes)} free on the disk of {f.path.parent}: a broker outage would fill it",
            "free disk space (sudo journalctl --vacuum-size=50M; sudo apt-get clean) or use a bigger card",
        )
    return Check.passed("outbox", detail)


# ----------------------------------------------------------------------------------- clock and systemd


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _query(host: Host, argv: list[str], name: str) -> dict[str, str] | Check:
    """``KEY=value`` output of a systemd tool, or the not-applicable check saying why there is none."""
    if not host.systemd():
        return Check.skipped(name, "no systemd on this system (PID 1 is not systemd)")
    out = host.run(argv, COMMAND_TIMEOUT_S)
    if out is None:
        return Check.skipped(name, f"{argv[0]} is not installed")
    if out.returncode != 0:
        first = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[0]
        return Check.skipped(name, f"{argv[0]} gave no answer: {first}")
    return _props(out.stdout)


def clock_sync_check(host: Host) -> Check:
    p = _query(host, ["timedatectl", "show", "-p", "NTPSynchronized", "-p", "NTP"], "clock_sync")
    if isinstance(p, Check):
        return p
    synced, ntp = p.get("NTPSynchronized"), p.get("NTP")
    if synced == "yes":
        return Check.passed("clock_sync", "synchronised with a time server (NTP)")
    if synced is None:
        return Check.skipped("clock_sync", "timedatectl does not report NTPSynchronized")
    why = "frame times and certificate checks depend on it; the Pi has no battery-backed clock"
    if ntp == "no":
        return Check.failed(
            "clock_sync",
            "NTP off",
            f"the clock is not synchronised and time synchronisation is off ({why})",
            "sudo timedatectl set-ntp true",
        )
    return Check.failed(
        "clock_sync",
        "NTP on, not synchronised",
        f"the clock is not synchronised with a time server yet ({why})",
        "check the network and that a time server is reachable: timedatectl timesync-status",
    )


_RESULTS = {
    "exit-code": "it exited with an error",
    "signal": "it was killed by a signal",
    "core-dump": "it crashed",
    "watchdog": "it stopped answering the watchdog (a hung radio read?)",
    "timeout": "it did not start or stop in time",
    "oom-kill": "it ran out of memory (MemoryMax)",
    "start-limit-hit": "it failed too often in a short time, so systemd stopped restarting it",
    "resources": "systemd could not set it up (a missing directory, user or file?)",
    "exec-condition": "a start condition was not met",
}


def _last_exit(p: dict[str, str]) -> str:
    result = p.get("Result", "")
    text = _RESULTS.get(result, f"result {result}" if result else "no result")
    status = p.get("ExecMainStatus")
    if result == "exit-code" and status not in (None, "", "0"):
        text += f" (exit status {status})"
    elif result in ("signal", "core-dump") and status:
        text += f" (signal {status})"
    return text


def systemd_unit_check(host: Host) -> Check:
    props = ["LoadState", "ActiveState", "SubState", "NRestarts", "Result", "ExecMainStatus", "ExecMainCode"]
    argv = ["systemctl", "show", UNIT, "--no-pager"] + [a for k in props for a in ("-p", k)]
    p = _query(host, argv, "systemd_unit")
    if isinstance(p, Check):
        return p
    if p.get("LoadState") == "not-found":
        return Check.skipped("systemd_unit", f"{UNIT} is not installed (the gateway is run by hand?)")
    active, sub, restarts = p.get("ActiveState", "?"), p.get("SubState", "?"), p.get("NRestarts", "0")
    detail = f"{active} ({sub}), {restarts} restarts, last result {p.get('Result', '?')}"
    log_hint = "read why in the log: journalctl -u lora-gw -n 50"
    if active == "active":
        return Check.passed("systemd_unit", detail)
    if active == "failed":
        fix = f"{log_hint}; after fixing it: sudo systemctl restart lora-gw"
        if p.get("Result") == "start-limit-hit":
            fix = f"{log_hint}; after fixing it: sudo systemctl reset-failed lora-gw; then start it again"
        return Check.failed("systemd_unit", detail, f"the service has stopped: {_last_exit(p)}", fix)
    if sub == "auto-restart" or (active == "activating" and restarts not in ("", "0")):
        return Check.failed(
            "systemd_unit", detail, f"the service keeps failing and restarting: {_last_exit(p)}", log_hint
        )
    if active == "activating":
        return Check.failed(
            "systemd_unit",
            detail,
            "the service is still starting (the radio or outbox not ready yet)",
            f"wait a few seconds and run doctor again; if it stays so, {log_hint}",
        )
    return Check.failed(
        "systemd_unit", detail, "the gateway service is not running", "sudo systemctl enable --now lora-gw"
    )


# -------------------------------------------------------------------------------------- state_access


def state_access_check(state: Path) -> Check:
    """The node keys in the state directory are private: the service refuses to start otherwise (the
    directory, another user's database files) or closes its own database files at start."""
    if not state.is_dir():
        return Check.skipped("state_access", f"no state directory yet ({state})")
    found = paths.exposed(state, own_files=True)
    if not found:
        return Check.passed("state_access", f"{state}: node keys readable by their owner only")
    message = paths.exposure_message(found)
    cause, _, fix = message.removeprefix("state: ").partition("; run ")
    return Check.failed("state_access", ", ".join(str(e.path) for e in found), cause, f"run {fix}")


# -------------------------------------------------------------------------------------------- models


def models_check(state: Path) -> Check:
    root = state / paths.MODELS_DIR
    if state.exists() and not os.access(state, os.R_OK | os.X_OK):
        return Check.failed(
            "models", str(state), f"cannot read {state}", "run doctor as the service's user or with sudo"
        )
    if not root.is_dir():
        return Check.skipped("models", f"no models installed ({root} does not exist)")
    if not os.access(root, os.R_OK | os.X_OK):
        return Check.failed(
            "models", str(root), f"cannot read {root}", "run doctor as the service's user or with sudo"
        )
    try:
        results = ModelStore(state).verify()
    except StoreError as exc:
        return Check.failed(
            "models", str(root), exc.message, "reinstall the models: lora-gw model install FILE"
        )
    if not results:
        return Check.skipped("models", "no models installed")
    bad = [(item, err) for item, err in results if err]
    names = ", ".join(f"{i.model_id}@{i.version}{' (active)' if i.active else ''}" for i, _ in results)
    if bad:
        item, err = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        return Check.failed(
            "models",
            f"{len(bad)} of {len(results)} failed: {', '.join(i.path.name for i, _ in bad)}",
            f"model file {item.path.name} failed verification{more}: {err}",
            f"install it again from the original file (lora-gw model install FILE) or remove it"
            f" (lora-gw model remove {item.model_id}@{item.version})",
        )
    return Check.passed("models", f"{len(results)} verified: {names}")
