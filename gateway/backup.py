"""Backup and restore of the gateway's state: registry, keys, counters, outbox, installed models, config.

A backup is one file: ``LGWBAK1\\n`` and a gzipped tar (``manifest.json``, ``gateway.db``, ``models/…``,
``config/…``), or, with a passphrase, ``LGWENC1\\n``, the scrypt parameters and salt, a nonce and that
archive sealed with AES-256-GCM (the header is authenticated too). It is written 0600 under a temporary
name and renamed into place: it holds the node keys.

The database is copied with SQLite's online backup API in one step: one read transaction, a consistent
snapshot, and in WAL mode the running service keeps writing meanwhile (it never waits for the backup).

Restoring never moves a counter backwards (see docs/operations.md, "Restore and counters"):

- what the state directory being restored onto knows (its own ``gateway.db``, from the same key) and what
  the operator knows (``--seen``: the last message ids a consumer received) raise the backup's counters;
- a secured node nothing newer is known of may have had frames accepted after the backup was taken: it
  continues in a new key epoch from counter 0 (its frames from before no longer verify, no keystream is
  reused) and must be told so, unless the operator asks to keep the backup's counters;
- nodes of the target that are not in the backup leave their key fingerprints and counters behind
  (``retired_keys``), so that adding such a key again resumes where it stopped.

A restore refuses to run while the service runs on that state directory (it holds ``gateway.lock``).
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip  # noqa: F401 - loaded before a fork that may drop privileges (tarfile imports it lazily)
import io
import json
import logging
import os
import secrets
import shutil
import sqlite3
import struct
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from gateway import __version__, paths, statedb
from gateway.errors import GatewayError
from gateway.frames.crypto import MAX_EPOCH
from gateway.frames.registry import key_fingerprint
from gateway.sinks.history import KEPT_SQL, kept_upto
from gateway.sinks.outbox import undelivered

# Each node's highest counter among the outbox rows still to deliver (as before history was kept there:
# delivered rows kept as history may be from before a counter reset, so they raise no counter).
_TOPS = f"SELECT node_id, max(fcnt) FROM outbox WHERE NOT {KEPT_SQL} GROUP BY node_id"

log = logging.getLogger(__name__)

PLAIN_MAGIC = b"LGWBAK1\n"
ENC_MAGIC = b"LGWENC1\n"
SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P = 15, 8, 1  # 32 MiB of memory: fine on a Raspberry Pi, slow to guess
LOCK_NAME = "gateway.lock"
PASSPHRASE_ENV = "LORA_GW_BACKUP_PASSPHRASE"
SNAPSHOT_SUFFIX = ".lgwbak"


class BackupError(GatewayError):
    """A backup or restore that cannot be done; the message says why and what to do."""

    reason = "backup"


# -- the service lock -----------------------------------------------------------------------------------


class ServiceLock:
    """``<state_dir>/gateway.lock``, held (flock) by ``lora-gw run`` and by a restore for as long as they
    run: a restore never replaces the database under a running service, nor a service starts mid-restore.
    A separate file: no descriptor of gateway.db is ever opened outside SQLite (see gateway.statedb)."""

    def __init__(self, state_dir: str | os.PathLike[str], what: str) -> None:
        self.path = Path(state_dir) / LOCK_NAME
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> ServiceLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            writable = True
            if os.fstat(fd).st_uid == os.geteuid():
                os.fchmod(fd, 0o644)  # readable by all (a pid, no secret): another user can still lock it
        except PermissionError:  # another user's lock file (root ran the service once): flock needs no write
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            writable = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise BackupError(
                f"state: {self.path.parent} is in use by {holder}; stop it first"
                " (sudo systemctl stop lora-gw)",
                "in_use",
            ) from None
        if writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{self.what} (pid {os.getpid()})\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> ServiceLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def service_running(state_dir: str | os.PathLike[str]) -> bool:
    """Whether a process holds the state directory's lock (``lora-gw run`` or a restore)."""
    path = Path(state_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


# -- encryption -----------------------------------------------------------------------------------------


def _key(passphrase: bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=1 << log2_n, r=r, p=p).derive(passphrase)


def seal(data: bytes, passphrase: bytes, log2_n: int = SCRYPT_LOG2_N) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    header = ENC_MAGIC + struct.pack(">BBB", log2_n, SCRYPT_R, SCRYPT_P) + salt + nonce
    return header + AESGCM(_key(passphrase, salt, log2_n, SCRYPT_R, SCRYPT_P)).encrypt(nonce, data, header)


def unseal(blob: bytes, passphrase: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    head = len(ENC_MAGIC) + 3 + 16 + 12
    if len(blob) < head + 16:
        raise BackupError("backup: the encrypted file is truncated", "corrupt")
    log2_n, r, p = struct.unpack(">BBB", blob[len(ENC_MAGIC) : len(ENC_MAGIC) + 3])
    if not (10 <= log2_n <= 22 and 1 <= r <= 32 and 1 <= p <= 16):
        raise BackupError("backup: unknown encryption parameters (a newer lora-gw, or damage)", "corrupt")
    salt = blob[len(ENC_MAGIC) + 3 : len(ENC_MAGIC) + 19]
    nonce = blob[len(ENC_MAGIC) + 19 : head]
    try:
        return AESGCM(_key(passphrase, salt, log2_n, r, p)).decrypt(nonce, blob[head:], blob[:head])
    except InvalidTag:
        raise BackupError(
            "backup: wrong passphrase, or the file was changed or damaged", "passphrase"
        ) from None


def read_passphrase_file(path: str | os.PathLike[str]) -> bytes:
    """A passphrase from a private file (first line, without its newline)."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
        text = p.read_bytes()
    except OSError as exc:
        raise BackupError(f"passphrase file {p}: {exc.strerror or exc}", "passphrase") from None
    if mode & 0o077:
        raise BackupError(
            f"passphrase file {p} is readable by group or others (mode {mode & 0o777:04o});"
            f" run chmod 600 {p}",
            "passphrase",
        )
    value = text.split(b"\n", 1)[0].rstrip(b"\r")
    if not value:
        raise BackupError(f"passphrase file {p} is empty", "passphrase")
    return value


# -- backup ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    nodes: int
    outbox_rows: int
    models: int
    encrypted: bool
    service_running: bool
    bytes: int


def _write_private(dest: Path, data: bytes, force: bool) -> None:
    """``data`` into ``dest`` whole, mode 0600 from the start (never briefly readable by others)."""
    if dest.is_dir():
        raise BackupError(f"backup: {dest} is a directory; give a file name", "bad_path")
    if dest.exists() and not force:
        raise BackupError(f"backup: {dest} exists; choose another name or add --force", "exists")
    if not dest.parent.is_dir():
        raise BackupError(f"backup: the directory {dest.parent} does not exist", "bad_path")
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise BackupError(
            f"backup: cannot write in {dest.parent}: {exc.strerror or exc}", "bad_path"
        ) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o600) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _snapshot_db(db: Path, out: Path) -> None:
    """An online copy of ``db`` into ``out`` with SQLite's backup API (one step: one consistent read)."""
    src = statedb.connect(db)
    try:
        dst = sqlite3.connect(out)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def _counters(con: sqlite3.Connection) -> dict[str, dict[str, int]]:
    rows = con.execute("SELECT node_id, next_fcnt, key_epoch, counter_epoch FROM nodes").fetchall()
    return {f"0x{n:08x}": {"next_fcnt": f, "key_epoch": k, "counter_epoch": c} for n, f, k, c in rows}


def _tables(con: sqlite3.Connection) -> set[str]:
    return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _archive(state: Path, config: Mapping[str, bytes], running: bool) -> tuple[bytes, dict]:
    """The gzipped tar of the state and its manifest (run as the state directory's owner)."""
    db = state / paths.DB_NAME
    models = 0
    with tempfile.TemporaryDirectory(prefix=".lora-gw-backup-", dir=state) as tmp:
        copy = Path(tmp) / paths.DB_NAME
        _snapshot_db(db, copy)
        con = sqlite3.connect(copy)
        try:
            check = con.execute("PRAGMA integrity_check").fetchone()[0]
            tables = _tables(con)
            counters = _counters(con) if "nodes" in tables else {}
            rows = undelivered(con)[0] if "outbox" in tables else 0  # kept history rows are not backlog
        finally:
            con.close()
        if check != "ok":
            raise BackupError(f"backup: {db} fails its integrity check ({check}); not backed up", "corrupt")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(copy, arcname=paths.DB_NAME)
            model_dir = state / paths.MODELS_DIR
            if model_dir.is_dir():
                for f in sorted(model_dir.rglob("*")):
                    if f.is_file() and not f.is_symlink():
                        tar.add(f, arcname=f"{paths.MODELS_DIR}/{f.relative_to(model_dir)}")
                        models += 1
            for name, data in config.items():
                _add_bytes(tar, f"config/{name}", data)
            manifest = {
                "format": 1,
                "lora_gw": __version__,
                "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
                "created_s": time.time(),
                "state_dir": str(state),
                "service_running": running,
                "outbox_rows": rows,
                "models": models,
                "config": sorted(config),
                "nodes": counters,
            }
            _add_bytes(tar, "manifest.json", json.dumps(manifest, indent=2).encode())
    return buf.getvalue(), manifest


def _as_owner(state: Path, job: Callable[[], tuple[bytes, dict]]) -> tuple[bytes, dict]:
    """Run ``job`` as the state directory's owner when root backs up a service user's state: SQLite may
    create ``-wal``/``-shm`` files, and root's would lock the service out. A forked child takes on the
    owner and hands the archive back through a pipe; root keeps writing the backup wherever it may."""
    owner = state.stat()
    if os.geteuid() != 0 or owner.st_uid == 0:
        return job()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        status = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(owner.st_gid)
            os.setuid(owner.st_uid)
            data, manifest = job()
            payload, status = b"\0" + json.dumps(manifest).encode() + b"\n" + data, 0
        except GatewayError as exc:
            payload = b"\1" + exc.message.encode()
        except BaseException as exc:  # reported to the parent, which raises it as one line
            payload = b"\1" + f"backup: {exc}".encode()
        try:
            with os.fdopen(w, "wb") as fh:
                fh.write(payload)
        finally:
            os._exit(status)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        out = fh.read()
    os.waitpid(pid, 0)
    if not out.startswith(b"\0"):
        raise BackupError(out[1:].decode(errors="replace") or "backup: the copy failed", "backup")
    head, _, data = out[1:].partition(b"\n")
    return data, json.loads(head)


def backup(
    state_dir: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    config_files: Mapping[str, str | os.PathLike[str]] | None = None,
    passphrase: bytes | None = None,
    force: bool = False,
    scrypt_log2_n: int = SCRYPT_LOG2_N,
    as_owner: bool = True,
) -> BackupResult:
    """Copy the state (and the config files named, ``{"gateway.toml": path, ...}``) into ``dest``.

    ``as_owner``: run as root on another user's state, the copy is made as that user (``_as_owner``);
    the service's own snapshots never fork (a process with threads)."""
    state = Path(state_dir)
    db = state / paths.DB_NAME
    if not db.exists():
        raise BackupError(f"backup: {db} does not exist: nothing to back up (wrong --state-dir or --config?)")
    out = Path(dest)
    if out.exists() and not force and not out.is_dir():  # before the copy, not after it
        raise BackupError(f"backup: {out} exists; choose another name or add --force", "exists")
    config = {name: Path(p).read_bytes() for name, p in (config_files or {}).items()}
    running = service_running(state)

    def job() -> tuple[bytes, dict]:
        return _archive(state, config, running)

    data, manifest = _as_owner(state, job) if as_owner else job()
    blob = seal(data, passphrase, scrypt_log2_n) if passphrase else PLAIN_MAGIC + data
    _write_private(out, blob, force)
    nodes, rows, models = len(manifest["nodes"]), manifest["outbox_rows"], manifest["models"]
    log.info("state backed up to %s (%d nodes, %d outbox rows, %d model files)", out, nodes, rows, models)
    return BackupResult(out, nodes, rows, models, passphrase is not None, running, len(blob))


# -- restore --------------------------------------------------------------------------------------------


def is_encrypted(path: str | os.PathLike[str]) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(ENC_MAGIC)) == ENC_MAGIC


def _open_archive(path: Path, passphrase: bytes | None) -> bytes:
    try:
        blob = path.read_bytes()
    except IsADirectoryError:
        raise BackupError(f"restore: {path} is a directory, not a backup file", "bad_path") from None
    except OSError as exc:
        raise BackupError(f"restore: {path}: {exc.strerror or exc}", "bad_path") from None
    if blob.startswith(ENC_MAGIC):
        if passphrase is None:
            raise BackupError(
                f"restore: {path} is encrypted: give --passphrase-file, ${PASSPHRASE_ENV}, or run it in a"
                " terminal to be asked",
                "passphrase",
            )
        return unseal(blob, passphrase)
    if blob.startswith(PLAIN_MAGIC):
        return blob[len(PLAIN_MAGIC) :]
    raise BackupError(f"restore: {path} is not a lora-gw backup (no LGWBAK1/LGWENC1 header)", "corrupt")


def _extract(data: bytes, into: Path) -> dict:
    """Unpack the archive (only plain files under known names) and return its manifest."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                name = member.name
                parts = Path(name).parts
                if not member.isfile() or name.startswith("/") or ".." in parts or not parts:
                    raise BackupError(f"restore: unexpected entry {name!r} in the backup", "corrupt")
                if parts[0] not in (paths.DB_NAME, "manifest.json", paths.MODELS_DIR, "config"):
                    raise BackupError(f"restore: unexpected entry {name!r} in the backup", "corrupt")
                target = into / name
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                src = tar.extractfile(member)
                if src is None:
                    raise BackupError(f"restore: unreadable entry {name!r} in the backup", "corrupt")
                with open(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600), "wb") as fh:
                    shutil.copyfileobj(src, fh)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BackupError(f"restore: the backup is damaged ({exc})", "corrupt") from None
    try:
        return json.loads((into / "manifest.json").read_text())
    except (OSError, ValueError):
        raise BackupError("restore: the backup has no readable manifest", "corrupt") from None


@dataclass(frozen=True, slots=True)
class NodeOutcome:
    node_id: int
    next_fcnt: int
    key_epoch: int
    how: str  # "target" | "seen" | "new_epoch" | "backup" (kept as in the backup: see docs)
    before: int  # the backup's next counter


@dataclass(frozen=True, slots=True)
class RestoreResult:
    database: Path
    created_utc: str
    nodes: tuple[NodeOutcome, ...]
    set_aside: tuple[Path, ...]
    models: int
    outbox_rows: int
    config_written: tuple[Path, ...] = ()
    retired_from_target: int = 0

    @property
    def tell_nodes(self) -> list[NodeOutcome]:
        """Nodes that must be told their new key epoch (counter 0)."""
        return [n for n in self.nodes if n.how == "new_epoch"]


@dataclass(slots=True)
class _Known:
    """What the target state knows of one node: its key, epoch and highest counter."""

    key_hex: str | None
    next_fcnt: int
    key_epoch: int


@dataclass(slots=True)
class _TargetState:
    nodes: dict[int, _Known] = field(default_factory=dict)
    retired: dict[str, tuple[int, int, int, str]] = field(default_factory=dict)  # fp → node, fcnt, epoch, utc


def _read_target(db: Path) -> _TargetState:
    """The counters the state directory being restored onto already has (nothing: a fresh or lost one)."""
    known = _TargetState()
    if statedb.problem(db) is not None or not db.exists():
        return known
    try:
        con = statedb.connect(db)
    except GatewayError as exc:
        log.warning("restore: the existing %s is unusable (%s): its counters are not known", db, exc.message)
        return known
    try:
        tables = _tables(con)
        if "nodes" in tables:
            for nid, key_hex, nxt, kep in con.execute(
                "SELECT node_id, key_hex, next_fcnt, key_epoch FROM nodes"
            ):
                known.nodes[nid] = _Known(key_hex, nxt, kep)
        if "outbox" in tables:
            for nid, top in con.execute(_TOPS, (kept_upto(con),)):
                if nid in known.nodes:
                    known.nodes[nid].next_fcnt = max(known.nodes[nid].next_fcnt, top + 1)
        if "retired_keys" in tables:
            for fp, nid, nxt, kep, utc in con.execute(
                "SELECT fingerprint, node_id, next_fcnt, key_epoch, removed_utc FROM retired_keys"
            ):
                known.retired[fp] = (nid, nxt, kep, utc)
    except sqlite3.Error as exc:
        log.warning("restore: cannot read the existing %s (%s): its counters are not known", db, exc)
    finally:
        con.close()
    return known


def _fingerprint(key_hex: str) -> str:
    return key_fingerprint(bytes.fromhex(key_hex))  # as the registry keeps a removed node's key


def _forward(
    con: sqlite3.Connection,
    target: _TargetState,
    seen: Mapping[int, int],
    new_epoch: bool,
    keyed: frozenset[int] = frozenset(),
) -> tuple[list[NodeOutcome], int]:
    """Raise the restored counters to everything known; a secured node nothing newer is known of gets a
    new key epoch (``new_epoch``). ``keyed``: nodes secured by a key from the secrets file (their registry
    row may hold no key). Knowledge older than the backup (a target whose counter is behind it) is no
    knowledge. Returns the outcome per node and how many target-only keys were retired."""
    outcomes = []
    has_outbox = "outbox" in _tables(con)
    tops = dict(con.execute(_TOPS, (kept_upto(con),))) if has_outbox else {}
    rows = con.execute("SELECT node_id, key_hex, next_fcnt, key_epoch, counter_epoch FROM nodes").fetchall()
    utc = datetime.now(UTC).isoformat(timespec="seconds")
    for nid, key_hex, nxt, kep, cep in rows:
        before = max(nxt, tops.get(nid, -1) + 1)
        fcnt, epoch, how = before, kep, "backup"
        t = target.nodes.get(nid)
        if t is not None and t.key_hex == key_hex:
            if t.key_epoch > kep:
                fcnt, epoch, how = t.next_fcnt, t.key_epoch, "target"
            elif t.key_epoch == kep and t.next_fcnt >= before:
                fcnt, how = t.next_fcnt, "target"
        if nid in seen:
            if how != "target" or epoch == kep:
                fcnt = max(fcnt, seen[nid] + 1)
            how = "seen" if how == "backup" else how
        if key_hex is not None:
            fp = _fingerprint(key_hex)
            old = target.retired.get(fp)
            if old is not None and (old[2], old[1]) >= (epoch, fcnt):  # removed from the target since
                fcnt, epoch = old[1], old[2]
                how = "target" if how == "backup" else how
        if how == "backup" and (key_hex is not None or nid in keyed) and new_epoch:
            if epoch >= MAX_EPOCH:
                raise BackupError(f"restore: node {nid:08x}: key epochs exhausted: re-key it", "epoch")
            fcnt, epoch, how = 0, epoch + 1, "new_epoch"
        if (fcnt, epoch) != (nxt, kep):
            con.execute(
                "UPDATE nodes SET next_fcnt = ?, key_epoch = ?, counter_epoch = ? WHERE node_id = ?",
                (fcnt, epoch, cep + 1, nid),
            )
        if (
            has_outbox and nid in seen and epoch == kep
        ):  # rows a consumer already received: not published again
            con.execute(  # still to deliver only: delivered rows kept as history stay
                f"DELETE FROM outbox WHERE node_id = ? AND fcnt <= ? AND NOT {KEPT_SQL}",
                (nid, seen[nid], kept_upto(con)),
            )
        outcomes.append(NodeOutcome(nid, fcnt, epoch, how, before))
    restored = {nid: key_hex for nid, key_hex, *_ in rows}
    retired = 0
    for nid, t in target.nodes.items():  # added or re-keyed after the backup: never re-added at counter 0
        if t.key_hex is None or (nid in restored and restored[nid] == t.key_hex):
            continue
        if nid in restored:
            log.warning(
                "restore: node %08x had another key here (re-keyed after the backup): the backup's key is"
                " restored, the newer one is retired with its counter %d",
                nid,
                t.next_fcnt,
            )
        con.execute(
            "INSERT OR REPLACE INTO retired_keys (fingerprint, node_id, next_fcnt, key_epoch, removed_utc)"
            " VALUES (?, ?, ?, ?, ?)",
            (_fingerprint(t.key_hex), nid, t.next_fcnt, t.key_epoch, utc),
        )
        retired += 1
    keys = {_fingerprint(k) for _, k, *_ in rows if k is not None}
    for fp, (nid, nxt, kep, when) in target.retired.items():
        if fp in keys:
            continue
        con.execute(
            "INSERT INTO retired_keys (fingerprint, node_id, next_fcnt, key_epoch, removed_utc)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET"
            " next_fcnt = max(next_fcnt, excluded.next_fcnt), key_epoch = max(key_epoch, excluded.key_epoch)",
            (fp, nid, nxt, kep, when),
        )
    return outcomes, retired


def parse_seen(text: str) -> dict[int, int]:
    """The highest counter per node a consumer received: message ids (``00005101-1234``, one per line, or
    JSON lines with ``"msg_id"``) or ``NODE=FCNT`` lines (node ids: hex in message ids, else 0x/decimal)."""
    seen: dict[int, int] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            try:
                line = str(json.loads(line).get("msg_id", ""))
            except (ValueError, AttributeError):
                raise BackupError(
                    f"--seen: not a JSON object with a msg_id: {line[:60]!r}", "bad_input"
                ) from None
        try:
            if "=" in line:
                node_text, fcnt_text = line.split("=", 1)
                node = int(node_text.strip(), 0)
            else:
                node_text, fcnt_text = line.split("-")[:2]
                node = int(node_text, 16)
            fcnt = int(fcnt_text.strip())
        except ValueError:
            raise BackupError(
                f"--seen: {line[:60]!r} is neither a message id (00005101-1234) nor NODE=FCNT", "bad_input"
            ) from None
        seen[node] = max(seen.get(node, -1), fcnt)
    return seen


def restore(
    archive: str | os.PathLike[str],
    state_dir: str | os.PathLike[str],
    passphrase: bytes | None = None,
    seen: Mapping[int, int] | None = None,
    new_epoch: bool = True,
    config_dest: str | os.PathLike[str] | None = None,
    keyed: frozenset[int] = frozenset(),
    owner: tuple[int, int] | None = None,
) -> RestoreResult:
    """Replace the state in ``state_dir`` by the backup, counters only forward (module docstring).

    Run by root, what it creates is given to ``owner`` (uid, gid; default: the state directory's owner
    when it exists), so that the service user can open it."""
    state = Path(state_dir)
    if owner is None and state.is_dir() and state.stat().st_uid != 0:
        owner = (state.stat().st_uid, state.stat().st_gid)
    try:
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise BackupError(f"restore: cannot create {state}: {exc.strerror or exc}", "bad_path") from None
    if not state.is_dir():
        raise BackupError(f"restore: {state} is not a directory", "bad_path")
    data = _open_archive(Path(archive), passphrase)
    db = state / paths.DB_NAME
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with (
        ServiceLock(state, "lora-gw state restore"),
        tempfile.TemporaryDirectory(prefix=".lora-gw-restore-", dir=state) as tmp,
    ):
        work = Path(tmp)
        manifest = _extract(data, work)
        copy = work / paths.DB_NAME
        if not copy.is_file():
            raise BackupError("restore: the backup holds no gateway.db", "corrupt")
        target = _read_target(db)
        con = sqlite3.connect(copy, isolation_level=None)
        try:
            if con.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                raise BackupError("restore: the database in the backup fails its integrity check", "corrupt")
            tables = _tables(con)
            if "nodes" not in tables:
                raise BackupError("restore: the database in the backup has no node registry", "corrupt")
            con.execute("BEGIN IMMEDIATE")
            outcomes, retired = _forward(con, target, seen or {}, new_epoch, keyed)
            con.execute("COMMIT")
            rows = undelivered(con)[0] if "outbox" in tables else 0  # kept history rows are not backlog
            con.execute("PRAGMA journal_mode = WAL")
        finally:
            con.close()
        config_written = _write_config(work / "config", config_dest)
        moved = _set_aside([db, Path(f"{db}-wal"), Path(f"{db}-shm")], stamp)
        statedb.marker_path(db).unlink(missing_ok=True)
        staged = state / f".{paths.DB_NAME}.restored-{os.getpid()}"
        os.replace(copy, staged)
        try:
            os.link(staged, db)
        finally:
            staged.unlink(missing_ok=True)
        statedb.connect(db).close()  # tightens the mode and writes the creation marker
        models = _install_models(work / paths.MODELS_DIR, state / paths.MODELS_DIR)
    if owner is not None and os.geteuid() == 0:
        _give(state, owner)
    log.info("state restored into %s from %s (backup of %s)", db, archive, manifest.get("created_utc"))
    return RestoreResult(
        db,
        str(manifest.get("created_utc", "?")),
        tuple(outcomes),
        moved,
        models,
        rows,
        config_written,
        retired,
    )


def _give(state: Path, owner: tuple[int, int]) -> None:
    """Root restored the state: the directory, lock, database, marker and models go to the service user
    (set-aside files keep the owner they had)."""
    uid, gid = owner
    found = [state, state / LOCK_NAME, state / paths.DB_NAME, statedb.marker_path(state / paths.DB_NAME)]
    models = state / paths.MODELS_DIR
    if models.is_dir():
        found += [models, *models.rglob("*")]
    for p in found:
        with contextlib.suppress(FileNotFoundError):
            os.chown(p, uid, gid, follow_symlinks=False)


def _set_aside(files: list[Path], stamp: str) -> tuple[Path, ...]:
    moved = []
    for p in files:
        if p.exists():
            dest = p.with_name(f"{p.name}.pre-restore-{stamp}")
            os.replace(p, dest)
            moved.append(dest)
    return tuple(moved)


def _install_models(src: Path, dest: Path) -> int:
    if not src.is_dir():
        return 0
    count = 0
    for f in sorted(src.rglob("*")):
        if f.is_file():
            out = dest / f.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.copyfile(f, out)
            count += 1
    return count


def _write_config(src: Path, dest: str | os.PathLike[str] | None) -> tuple[Path, ...]:
    if dest is None or not src.is_dir():
        return ()
    out_dir = Path(dest)
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    written = []
    for f in sorted(src.iterdir()):
        out = out_dir / f.name
        if out.exists():
            out = out_dir / f"{f.name}.restored"
        _write_private(out, f.read_bytes(), force=True)
        written.append(out)
    return tuple(written)


# -- periodic snapshots ----------------------------------------------------------------------------------


def snapshot_name(gateway_id: str, when: float) -> str:
    stamp = datetime.fromtimestamp(when, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"lora-gw-{gateway_id}-{stamp}{SNAPSHOT_SUFFIX}"


def snapshot_time(path: Path) -> float | None:
    """When a snapshot was taken, from its name (its mtime changes when it is copied)."""
    stamp = path.name[: -len(SNAPSHOT_SUFFIX)].rsplit("-", 1)[-1]
    try:
        return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def snapshots(directory: Path, gateway_id: str) -> list[Path]:
    """This gateway's snapshots in ``directory``, oldest first (names sort by time)."""
    try:
        return sorted(directory.glob(f"lora-gw-{gateway_id}-*{SNAPSHOT_SUFFIX}"))
    except OSError:
        return []


class Snapshotter:
    """``[state] backup_dir``: a snapshot every ``backup_interval_h``, the newest ``backup_keep`` kept.

    ``tick(now)`` takes one when due (the first soon after start when the newest is older than the
    interval); ``start`` runs it in a thread of its own (a backup must never hold up the core thread)."""

    def __init__(
        self,
        state_dir: Path,
        backup_dir: str | os.PathLike[str],
        gateway_id: str,
        interval_h: float,
        keep: int,
        config_files: Mapping[str, str | os.PathLike[str]] | None = None,
        passphrase_file: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.dir = Path(backup_dir)
        self.gateway_id = gateway_id
        self.interval_s = interval_h * 3600.0
        self.keep = keep
        self.config_files = dict(config_files or {})
        self.passphrase_file = passphrase_file
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.taken = 0
        self.failed = 0
        newest = snapshots(self.dir, gateway_id)
        last = snapshot_time(newest[-1]) if newest else None
        self.next_due = clock() if last is None else min(last + self.interval_s, clock() + self.interval_s)

    def tick(self, now: float | None = None) -> Path | None:
        now = self._clock() if now is None else now
        if now < self.next_due:
            return None
        self.next_due = now + self.interval_s
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            passphrase = read_passphrase_file(self.passphrase_file) if self.passphrase_file else None
            dest = self.dir / snapshot_name(self.gateway_id, now)
            backup(self.state_dir, dest, self.config_files, passphrase, force=True, as_owner=False)
        except (GatewayError, OSError, sqlite3.Error) as exc:
            self.failed += 1
            message = exc.message if isinstance(exc, GatewayError) else str(exc)
            log.warning(
                "backup: snapshot into %s failed: %s; next try in %.1f h",
                self.dir,
                message,
                self.interval_s / 3600,
            )
            return None
        self.taken += 1
        self._prune()
        log.info("backup: snapshot %s taken", dest)
        return dest

    def _prune(self) -> None:
        found = snapshots(self.dir, self.gateway_id)
        for old in found[: max(0, len(found) - self.keep)]:
            with contextlib.suppress(OSError):
                old.unlink()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="backup", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(max(1.0, min(60.0, self.next_due - self._clock())))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
