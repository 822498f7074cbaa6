"""``lora-gw diag bundle``: one tar.gz a field installer can attach to a support request.

Contents: doctor's report, the config (parsed, secrets removed by name), the structure of the secrets
file (names only), the resolved settings, versions (package, Python, OS, kernel),
the radio register dump (``diag regs --json``), outbox and model stats, and the service's last journal
lines. Then every file is scrubbed by value of every secret known to this gateway (see
:mod:`gateway.diag.redact`), so a password quoted in a log line does not leave either.

The state database is only queried read-only (see :mod:`gateway.diag.system`), never copied.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import platform
import sys
import tarfile
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from gateway import __version__, paths
from gateway.codec.store import ModelStore
from gateway.diag import doctor, radio_regs, setup, system
from gateway.diag.redact import REDACTED, Scrubber, redact_tree, redact_url, secret_values
from gateway.errors import GatewayError
from gateway.service.config import ENV_PASSWORD, ENV_URL, ENV_USERNAME, Config

log = logging.getLogger(__name__)

JOURNAL_LINES = 200
JOURNAL_TIMEOUT_S = 5.0
DEPENDENCIES = (
    "paho-mqtt",
    "cryptography",
    "numpy",
    "crcmod-plus",
    "pyserial",
    "spidev",
    "RPi.GPIO",
    "gpiod",
)


class BundleError(GatewayError):
    reason = "bundle"


@dataclass(slots=True)
class BundleResult:
    path: Path
    members: list[str]
    size_bytes: int
    exit_code: int  # doctor's
    doctor_summary: str
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "path": str(self.path),
            "members": self.members,
            "size_bytes": self.size_bytes,
            "doctor_ok": self.exit_code == 0,
            "doctor": self.doctor_summary,
            "notes": self.notes,
        }


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()


def _read_toml(path: Path) -> tuple[dict | None, str | None]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh), None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return None, f"{path}: {exc}"


def _secrets_path(config_path: Path, raw: dict | None) -> Path | None:
    gw = (raw or {}).get("gateway")
    name = gw.get("secrets_file") if isinstance(gw, dict) else None
    if not isinstance(name, str) or not name:
        return None
    p = Path(name)
    return p if p.is_absolute() else config_path.parent / p


def _effective(cfg: Config) -> dict:
    d = dataclasses.asdict(cfg)
    d["mqtt"]["broker"] = {"url": cfg.mqtt.broker.redacted(), **d["mqtt"]["broker"]}
    d["node_keys"] = {f"0x{k:08x}": v for k, v in cfg.node_keys.items()}
    return d


def _registry_keys(db: Path) -> list[str]:
    """Node keys stored in the registry: they are scrubbed by value, never written."""
    if not db.exists():
        return []
    try:
        con = system.open_readonly(db)
        try:
            rows = con.execute("SELECT key_hex FROM nodes WHERE key_hex IS NOT NULL").fetchall()
        finally:
            con.close()
    except Exception as exc:  # no nodes table, unreadable: nothing to scrub from there
        log.debug("bundle: registry keys unreadable: %s", exc)
        return []
    return [r[0] for r in rows if r[0]]


def _versions() -> dict:
    deps = {}
    for name in DEPENDENCIES:
        try:
            deps[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            deps[name] = None
    os_release: dict[str, str] = {}
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                os_release[k] = v.strip().strip('"')
    except OSError:
        pass
    u = platform.uname()
    return {
        "lora_gw": __version__,
        "python": sys.version,
        "python_executable": sys.executable,
        "os_release": os_release,
        "kernel": {"release": u.release, "version": u.version, "machine": u.machine},
        "dependencies": deps,
    }


def _stats(cfg: Config | None, state: Path | None) -> dict:
    if cfg is None or state is None:
        return {"note": "the configuration did not load: no state directory known"}
    facts = system.read_outbox(state / paths.DB_NAME)
    models = []
    if (state / paths.MODELS_DIR).is_dir():
        try:
            models = [
                {"id": i.model_id, "version": i.version, "size_bytes": i.size_bytes, "active": i.active}
                for i in ModelStore(state).installed()
            ]
        except (GatewayError, OSError) as exc:
            models = [{"error": str(exc)}]
    return {"state_dir": str(state), "outbox": facts.as_dict(), "models": models}


def _register_dump(cfg: Config | None, notes: list[str]) -> tuple[str, bytes] | None:
    if cfg is None:
        notes.append("no register dump: the configuration did not load")
        return None
    try:
        dump = radio_regs.register_dump(cfg)
    except Exception as exc:  # the radio may be absent or broken: that is what the bundle is for
        notes.append(f"no register dump: {type(exc).__name__}: {exc}")
        return None
    if isinstance(dump, str):
        return "radio/registers.txt", dump.encode()
    return "radio/registers.json", _json(dump)


def _journal(host: system.Host, notes: list[str]) -> bytes | None:
    out = host.run(["journalctl", "-u", "lora-gw", "-n", str(JOURNAL_LINES), "--no-pager"], JOURNAL_TIMEOUT_S)
    if out is None:
        notes.append("no journal: journalctl is not installed")
        return None
    if out.returncode != 0:
        first = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[0]
        notes.append(f"no journal: {first}")
        return None
    return out.stdout.encode()


def _collect(
    config: str | None, emulate: bool, state_dir: str | None, host: system.Host
) -> tuple[dict[str, bytes], list[str], doctor.DoctorResult, list[str]]:
    """Every member's bytes (not scrubbed yet) and every secret value to scrub them of."""
    notes: list[str] = []
    result = doctor.run(config, emulate, state_dir, host)
    cfg = result.cfg
    config_path = Path(config) if config else setup.default_config_path()
    raw, raw_error = _read_toml(config_path)
    members: dict[str, bytes] = {"doctor.json": _json(result.report.as_dict())}
    secrets = secret_values(raw or {})
    if raw is not None:
        members["config/gateway.json"] = _json({"source": str(config_path), "config": redact_tree(raw)})
    else:
        notes.append(f"config not included: {raw_error}")
    sp = _secrets_path(config_path, raw)
    if sp is not None:
        sraw, serr = _read_toml(sp)
        if sraw is not None:
            secrets += secret_values(sraw, under_secret=True)  # everything in it counts as secret
            members["config/secrets-file.json"] = _json(
                {"source": str(sp), "structure": redact_tree(sraw, under_secret=True)}
            )
        else:
            notes.append(f"secrets file not read: {serr}")
    env = {k: v for k, v in os.environ.items() if k.startswith("LORA_GW_")}
    secrets += [v for k, v in env.items() if k == ENV_PASSWORD]
    secrets += secret_values({k: v for k, v in env.items() if k == ENV_URL})
    members["config/environment.json"] = _json(
        {k: (REDACTED if k in (ENV_USERNAME, ENV_PASSWORD) else redact_url(v)) for k, v in env.items()}
    )
    state = None
    if cfg is not None:
        secrets += [cfg.mqtt.password] if cfg.mqtt.password else []
        secrets += [k.hex() for k in cfg.node_keys.values()]
        members["config/effective.json"] = _json(redact_tree(_effective(cfg)))
        state = system.state_dir(cfg, state_dir)
    # the registry's keys are scrubbed even when the config did not load (then from the default place)
    secrets += _registry_keys((state or paths.state_dir(state_dir, create=False)) / paths.DB_NAME)
    members["versions.json"] = _json(_versions())
    members["stats.json"] = _json(_stats(cfg, state))
    dump = _register_dump(cfg, notes)
    if dump is not None:
        members[dump[0]] = dump[1]
    journal = _journal(host, notes)
    if journal is not None:
        members["journal.txt"] = journal
    return members, secrets, result, notes


def _readme(result: doctor.DoctorResult, notes: list[str], names: list[str]) -> bytes:
    lines = [
        f"lora-gw {__version__} support bundle, {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC",
        "",
        "Passwords and node keys are replaced by <redacted> everywhere, user names in the config and URLs.",
        "",
        "Files:",
        *(f"  {n}" for n in names),
        "",
        "doctor:",
        result.report.render(colour=False),
    ]
    if notes:
        lines += ["", "Notes:", *(f"  {n}" for n in notes)]
    return ("\n".join(lines) + "\n").encode()


def _tar(path: Path, files: dict[str, bytes]) -> None:
    """Write a tar.gz next to ``path`` (mode 0600) and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w:gz") as tar:
            now = time.time()
            for name, data in files.items():
                info = tarfile.TarInfo(f"lora-gw-bundle/{name}")
                info.size, info.mtime, info.mode = len(data), now, 0o600
                tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build(
    out: str | os.PathLike[str],
    config: str | None = None,
    emulate: bool = False,
    state_dir: str | None = None,
    host: system.Host | None = None,
) -> BundleResult:
    """Write the archive (0600, atomically) and return what went in; exit code as doctor's."""
    host = host or system.default_host()
    members, secrets, result, notes = _collect(config, emulate, state_dir, host)
    files = {"README.txt": _readme(result, notes, ["README.txt", *members]), **members}
    scrub = Scrubber(secrets)
    files = {name: scrub(data) for name, data in files.items()}
    path = Path(out)
    try:
        _tar(path, files)
    except OSError as exc:
        raise BundleError(f"cannot write {path}: {exc.strerror or exc}") from None
    failed = sum(1 for c in result.report.checks if c.ok is False)
    summary = f"{len(result.report.checks)} checks, {failed} failed" if failed else "all checks fine"
    log.info("bundle %s written (%d files, %d secret forms scrubbed)", path, len(files), len(scrub.forms))
    return BundleResult(path, list(files), path.stat().st_size, result.exit_code, summary, notes)
