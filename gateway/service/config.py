"""The gateway's TOML configuration: one frozen dataclass per section, validated on load.

Every problem is a :class:`~gateway.errors.ConfigError` whose one-line message names the key
(``radio.sf: 13 is outside 6..12``). Secrets (MQTT credentials, node keys) may live in a separate
TOML file that must not be readable by group or others; environment variables override the broker
URL and credentials last (``LORA_GW_MQTT_URL``, ``LORA_GW_MQTT_USERNAME``, ``LORA_GW_MQTT_PASSWORD``).
Layering, lowest first: built-in defaults, the config file, the secrets file, the environment; each
layer overrides only what it sets (``LORA_GW_MQTT_URL`` without user info keeps the secrets file's
username and password). Where the credentials came from is kept (``MqttSection.credentials_source``) so
that ``config check`` and the startup line can say it without showing a value.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import ConfigError
from gateway.radio.faults import FAULTS
from gateway.sinks.url import BrokerUrl, parse_broker_url, redact_url

if TYPE_CHECKING:  # the emulated air is loaded only when interferers are configured
    from gateway.radio.air import Interferer

ENV_URL = "LORA_GW_MQTT_URL"
ENV_USERNAME = "LORA_GW_MQTT_USERNAME"
ENV_PASSWORD = "LORA_GW_MQTT_PASSWORD"

BANDWIDTHS_HZ = (7800, 10400, 15600, 20800, 31250, 41700, 62500, 125000, 250000, 500000)
CODING_RATES = ("4/5", "4/6", "4/7", "4/8")
CRC_POLICIES = ("drop_failed", "require_ok", "check_frame")
REGIONS = {  # frequency band in Hz, default duty cycle in percent (ETSI EN 300 220 sub-bands; FCC: none)
    "EU868": ((863_000_000, 870_000_000), 1.0),
    "EU433": ((433_050_000, 434_790_000), 10.0),
    "US915": ((902_000_000, 928_000_000), 100.0),
    "AU915": ((915_000_000, 928_000_000), 100.0),
    "AS923": ((915_000_000, 928_000_000), 1.0),
    "IN865": ((865_000_000, 867_000_000), 100.0),
}
LOG_LEVELS = ("debug", "info", "warning", "error")
SECRET_KEYS = frozenset({"username", "password"})  # their values are never shown, not even when invalid
_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array"}


def _kind(v: Any) -> str:
    """What a TOML value is, for a message that must not show the value itself."""
    return _TYPE_NAMES.get(type(v)) or ("a table" if isinstance(v, dict) else "a date/time")


def _shown(v: Any) -> str:
    """A config value as an error message may quote it: strings with URL user info redacted, numbers as
    they are, anything else (an array or table could hold a URL with a password) by its kind only."""
    if isinstance(v, str):
        return repr(redact_url(v))
    if isinstance(v, bool | int | float):
        return repr(v)
    return _kind(v)


@dataclass(frozen=True, slots=True)
class GatewaySection:
    """Identity and housekeeping; ``state_dir`` holds gateway.db (node registry and outbox)."""

    id: str
    state_dir: str | None = None
    stats_interval_s: float = 60.0
    secrets_file: str | None = None


@dataclass(frozen=True, slots=True)
class EmulatorSection:
    """Simulated nodes on a virtual air, used when ``radio.backend = "emulator"``.

    ``fault``, ``interferers`` and ``path_loss_db`` let every field diagnostic fail on purpose.
    """

    nodes: int = 3
    interval_s: float = 10.0
    seed: int = 1
    loss: float = 0.0
    speed: float = 1.0
    fault: str = "none"
    interferers: tuple[Interferer, ...] = ()
    path_loss_db: float = 110.0


@dataclass(frozen=True, slots=True)
class RadioSection:
    backend: str = "sx1276"
    spi_device: str = "/dev/spidev0.0"
    spi_speed_hz: int = 8_000_000
    gpio: str = "auto"
    reset_pin: int = 17  # Dragino LoRa HAT: RESET GPIO17, DIO0 GPIO4, NSS GPIO25
    dio0_pin: int | None = 4
    dio1_pin: int | None = None
    frequency_hz: int = 868_100_000
    sf: int = 7
    bw_hz: int = 125_000
    cr: str = "4/5"
    sync_word: int = 0x12
    preamble: int = 8
    crc_policy: str = "drop_failed"
    region: str = "EU868"
    duty_cycle_percent: float = 1.0
    tx_power_dbm: int = 14
    downlink_invert_iq: bool = True  # LoRaWAN practice: nodes listen with inverted IQ
    emulator: EmulatorSection = field(default_factory=EmulatorSection)


@dataclass(frozen=True, slots=True)
class MqttSection:
    broker: BrokerUrl = field(default_factory=lambda: BrokerUrl("127.0.0.1", 1883, False))
    protocol: str = "5"
    client_id: str | None = None
    topic_prefix: str = "lora"
    keepalive_s: int = 60
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    tls_insecure: bool = False
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    max_inflight: int = 200
    ack_timeout_s: float = 30.0
    connect_timeout_s: float = 2.0
    retain_telemetry: bool = False
    credential_origins: tuple[tuple[str, str], ...] = ()  # (username|password, where it came from)

    @property
    def credentials_source(self) -> str:
        """Where the username/password came from (never the values), e.g. ``"secrets file"``."""
        return credentials_source(dict(self.credential_origins))

    @property
    def username(self) -> str | None:
        return self.broker.username

    @property
    def password(self) -> str | None:
        return self.broker.password


@dataclass(frozen=True, slots=True)
class OutboxSection:
    synchronous: str = "normal"
    commit_frames: int = 256
    commit_interval_ms: int = 25
    max_rows: int = 500_000
    max_age_days: float = 30.0
    redecode_interval_s: float = 60.0
    min_free_mb: float = 32.0
    max_db_mb: float = 0.0


@dataclass(frozen=True, slots=True)
class StateSection:
    """Periodic snapshots of the state (gateway.backup): an SD card failure then costs at most one
    interval. Off while ``backup_dir`` is unset."""

    backup_dir: str | None = None
    backup_interval_h: float = 24.0
    backup_keep: int = 7
    backup_passphrase_file: str | None = None  # encrypt the snapshots with the passphrase in this file


@dataclass(frozen=True, slots=True)
class LoggingSection:
    level: str = "info"
    file: str | None = None


@dataclass(frozen=True, slots=True)
class NodeDefaults:
    report_interval_s: float = 300.0
    gap_filling: bool = False
    gap_filling_nodes: tuple[int, ...] = ()  # nodes with gap filling on even when the default is off

    def gap_filling_for(self, node_id: int) -> bool:
        return self.gap_filling or node_id in self.gap_filling_nodes


@dataclass(frozen=True, slots=True)
class DownlinkSection:
    """``[downlink]``: acknowledgements and commands (Class A windows; docs/downlink.md)."""

    enabled: bool = True
    rx_delay_ms: int = 1000  # window = uplink RxDone + this (the node's receive delay)
    frequency_hz: int = 0  # 0: the uplink's channel
    max_late_ms: float = 2.0  # a window the radio cannot start within this is skipped, never sent late
    max_queue: int = 8  # commands queued per node


@dataclass(frozen=True, slots=True)
class Config:
    gateway: GatewaySection
    radio: RadioSection
    mqtt: MqttSection
    outbox: OutboxSection
    logging: LoggingSection
    nodes: NodeDefaults
    node_keys: Mapping[int, bytes] = field(default_factory=dict, repr=False)
    source: str | None = None
    state: StateSection = field(default_factory=StateSection)
    homeassistant: HomeAssistantSection = field(default_factory=lambda: HomeAssistantSection())
    http: HttpSection = field(default_factory=lambda: HttpSection())
    history: HistorySection = field(default_factory=lambda: HistorySection())
    models: ModelsSection = field(default_factory=lambda: ModelsSection())
    downlink: DownlinkSection = field(default_factory=DownlinkSection)


class _Section:
    """Typed, range-checked access to one TOML table; remembers which keys were read."""

    def __init__(self, name: str, table: Any) -> None:
        if not isinstance(table, dict):
            raise ConfigError(f"{name}: must be a table, got {type(table).__name__}")
        self.name = name
        self.table = table
        self.used: set[str] = set()

    def key(self, k: str) -> str:
        return f"{self.name}.{k}" if self.name else k

    def _get(self, k: str) -> Any:
        self.used.add(k)
        return self.table.get(k)

    def str(self, k: str, default: str | None, choices: tuple[str, ...] | None = None) -> Any:
        v = self._get(k)
        if v is None:
            return default
        if not isinstance(v, str):
            if k in SECRET_KEYS:  # the type may be named, never the value
                raise ConfigError(f"{self.key(k)}: must be a string, not {_kind(v)} (the value is not shown)")
            raise ConfigError(f"{self.key(k)}: {_shown(v)} is not a string")
        if choices is not None and v not in choices:
            raise ConfigError(f"{self.key(k)}: {_shown(v)} is not one of {', '.join(choices)}")
        return v

    def int(self, k: str, default: Any, lo: int, hi: int, choices: tuple[int, ...] | None = None) -> Any:
        v = self._get(k)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{self.key(k)}: {_shown(v)} is not an integer")
        if choices is not None and v not in choices:
            raise ConfigError(f"{self.key(k)}: {v} is not one of {', '.join(map(str, choices))}")
        if not lo <= v <= hi:
            raise ConfigError(f"{self.key(k)}: {v} is outside {lo}..{hi}")
        return v

    def float(self, k: str, default: float, lo: float, hi: float) -> float:
        v = self._get(k)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ConfigError(f"{self.key(k)}: {_shown(v)} is not a number")
        if not lo <= v <= hi:
            raise ConfigError(f"{self.key(k)}: {v} is outside {lo:g}..{hi:g}")
        return float(v)

    def bool(self, k: str, default: bool) -> bool:
        v = self._get(k)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise ConfigError(f"{self.key(k)}: {_shown(v)} is not true or false")
        return v

    def sub(self, k: str) -> _Section:
        self.used.add(k)
        return _Section(self.key(k), self.table.get(k, {}))

    def finish(self) -> None:
        for k in self.table:
            if k not in self.used:
                raise ConfigError(f"{self.key(k)}: unknown option")


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{what}: {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"{what}: {path} is not readable by this user") from None
    except IsADirectoryError:
        raise ConfigError(f"{what}: {path} is a directory, not a TOML file") from None
    except NotADirectoryError:
        raise ConfigError(f"{what}: {path}: a part of the path is not a directory") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1 if isinstance(exc.object, bytes) else 0
        raise ConfigError(
            f"{what}: {path} is not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} on line {line});"
            " save it as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what}: {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{what}: {path} cannot be read: {exc.strerror or exc}") from None


def _check_private(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"gateway.secrets_file: {path} is readable by group or others (mode {stat.S_IMODE(mode):04o}); "
            f"run chmod 600 {path}"
        )


def log_file_error(path: str, exc: OSError) -> ConfigError:
    """The one-line error for a ``logging.file`` that cannot be opened for appending."""
    parent = os.path.dirname(os.path.abspath(path))
    if isinstance(exc, IsADirectoryError):
        why = "is a directory, not a file"
    elif isinstance(exc, FileNotFoundError):
        why = f"cannot be created: the directory {parent} does not exist"
    elif isinstance(exc, NotADirectoryError):
        why = f"cannot be created: a part of {parent} is not a directory"
    else:
        why = f"is not writable: {exc.strerror or exc}"
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            why += " (under the systemd unit only /var/log/lora-gw is writable, by the lora-gw user)"
    return ConfigError(f"logging.file: {path} {why}")


def check_log_file(path: str) -> None:
    """Open ``path`` for appending as the service would, without leaving a file behind: an unwritable log
    file is a config error at start and in ``config check``, not an OSError that crash-loops the service.
    (A file created here by root would be root's, and the service user could not write it later.)"""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except OSError as exc:
            raise log_file_error(path, exc) from None
        os.close(fd)
        return
    except OSError as exc:
        raise log_file_error(path, exc) from None
    os.close(fd)
    os.unlink(path)


@dataclass(frozen=True, slots=True)
class User:
    """Whose access a path check is about: this process, or the user the service runs as."""

    name: str
    uid: int
    gids: frozenset[int]

    @classmethod
    def current(cls) -> User:
        import pwd

        uid = os.geteuid()
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        return cls(name, uid, frozenset(os.getgroups()) | {os.getegid()})

    @classmethod
    def named(cls, name: str) -> User:
        import grp
        import pwd

        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            raise ConfigError(f"--user: no user {name!r} on this machine") from None
        gids = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
        return cls(name, pw.pw_uid, frozenset(gids))


def _may(path: Path, user: User, bits: int) -> bool:
    """Whether ``user`` has ``bits`` (os.R_OK/W_OK/X_OK) on ``path``, from its mode (ACLs aside)."""
    if user.uid == os.geteuid():
        return os.access(path, bits)
    if user.uid == 0:
        return True
    st = path.stat()
    shift = 6 if st.st_uid == user.uid else 3 if st.st_gid in user.gids else 0
    return (st.st_mode >> shift) & bits == bits


def dir_problem(path: str | os.PathLike[str], key: str, user: User | None = None) -> str | None:
    """Why ``user`` (default: this process) could not use ``path`` as a directory it writes, creating it
    if needed (None: it could). ``key`` names the option in the message."""
    user = user or User.current()
    p = Path(path)
    who = "this user" if user.uid == os.geteuid() else f"user {user.name}"
    try:
        if p.exists() and not p.is_dir():
            return f"{key}: {p} is a file, not a directory"
        if p.is_dir():
            if not _may(p, user, os.W_OK | os.X_OK):
                return f"{key}: {p} is not writable by {who}"
            return None
        ancestor = p.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            return f"{key}: {p} cannot be created: {ancestor} is a file, not a directory"
        if not _may(ancestor, user, os.W_OK | os.X_OK):
            return f"{key}: {p} cannot be created: {ancestor} is not writable by {who}"
    except OSError as exc:  # a part of the path is not searchable (EACCES) or a loop (ELOOP)
        return f"{key}: {p} is not usable: {exc.strerror or exc}"
    return None


def file_problem(path: str, key: str, user: User) -> str | None:
    """Why ``user`` could not append to ``path`` (creating it if needed); for another user than this
    process (``config check`` as root for the service user)."""
    p = Path(path)
    who = f"user {user.name}"
    try:
        if p.is_dir():
            return f"{key}: {p} is a directory, not a file"
        if p.exists():
            return None if _may(p, user, os.W_OK) else f"{key}: {p} is not writable by {who}"
        if not p.parent.is_dir():
            return f"{key}: {p} cannot be created: the directory {p.parent} does not exist"
        if not _may(p.parent, user, os.W_OK | os.X_OK):
            return f"{key}: {p} cannot be created: {p.parent} is not writable by {who}"
    except OSError as exc:
        return f"{key}: {p} is not usable: {exc.strerror or exc}"
    return None


def config_files(cfg: Config) -> dict[str, Path]:
    """The files ``cfg`` was read from (the config and its secrets file), for a backup of the state."""
    if not cfg.source:
        return {}
    main = Path(cfg.source)
    out = {main.name: main}
    if cfg.gateway.secrets_file:
        sp = Path(cfg.gateway.secrets_file)
        sp = sp if sp.is_absolute() else main.parent / sp
        out[sp.name if sp.name != main.name else f"secrets-{sp.name}"] = sp
    return out


def state_dir_of(cfg: Config) -> str | None:
    """The state directory the service uses for ``cfg`` (None: the default, see gateway.paths)."""
    return cfg.gateway.state_dir


def path_problems(cfg: Config, user: User | None = None) -> list[str]:
    """Every configured path ``user`` (default: this process) could not use, one line each."""
    user = user or User.current()
    out = []
    if cfg.gateway.state_dir:
        out.append(dir_problem(cfg.gateway.state_dir, "gateway.state_dir", user))
    if cfg.state.backup_dir:
        out.append(dir_problem(cfg.state.backup_dir, "state.backup_dir", user))
    if cfg.logging.file and user.uid != os.geteuid():
        out.append(file_problem(cfg.logging.file, "logging.file", user))
    if cfg.state.backup_passphrase_file:
        out.append(_passphrase_file_problem(Path(cfg.state.backup_passphrase_file), user))
    return [p for p in out if p]


def _passphrase_file_problem(p: Path, user: User) -> str | None:
    key = "state.backup_passphrase_file"
    try:
        st = p.stat()
        if not p.is_file():
            return f"{key}: {p} is not a file"
        if st.st_mode & 0o077:
            mode = st.st_mode & 0o777
            return f"{key}: {p} is readable by group or others (mode {mode:04o}); run chmod 600 {p}"
        if not _may(p, user, os.R_OK):
            return f"{key}: {p} is not readable by user {user.name}"
    except FileNotFoundError:
        return f"{key}: {p} does not exist"
    except OSError as exc:
        return f"{key}: {p} is not usable: {exc.strerror or exc}"
    return None


def _optional_pin(sec: _Section, k: str, default: int | None) -> int | None:
    v = sec.table.get(k)
    if v is False or v == -1:
        sec.used.add(k)
        return None
    return sec.int(k, default, 0, 63)


def _tx_power(sec: _Section, default: int) -> int:
    v = sec.int("tx_power_dbm", default, 2, 20)
    if v in (18, 19):  # PA_BOOST: 2..17 dBm, or 20 dBm with the high-power setting (datasheet 5.4.3)
        raise ConfigError(f"radio.tx_power_dbm: {v} is not 2..17 or 20 (PA_BOOST)")
    return v


def _interferers(sec: _Section, k: str) -> tuple[Interferer, ...]:
    v = sec._get(k)
    if v is None:
        return ()
    if not isinstance(v, list):
        raise ConfigError(f"{sec.key(k)}: must be a list of {{freq_hz = ..., rssi_dbm = ...}} tables")
    if not v:
        return ()
    from gateway.radio.air import Interferer

    out = []
    for i, item in enumerate(v):
        one = _Section(f"{sec.key(k)}[{i}]", item)
        freq = one.int("freq_hz", None, 137_000_000, 1_020_000_000)
        rssi = one.float("rssi_dbm", float("nan"), -160.0, 20.0)
        one.finish()
        if freq is None or rssi != rssi:
            raise ConfigError(f"{one.name}: needs both freq_hz and rssi_dbm")
        out.append(Interferer(freq_hz=freq, rssi_dbm=rssi))
    return tuple(out)


def _parse_emulator(emu: _Section) -> EmulatorSection:
    de = EmulatorSection()
    emulator = EmulatorSection(
        nodes=emu.int("nodes", de.nodes, 0, 250),
        interval_s=emu.float("interval_s", de.interval_s, 0.01, 86400.0),
        seed=emu.int("seed", de.seed, 0, 2**31 - 1),
        loss=emu.float("loss", de.loss, 0.0, 1.0),
        speed=emu.float("speed", de.speed, 0.01, 10000.0),
        fault=emu.str("fault", de.fault, FAULTS),
        interferers=_interferers(emu, "interferers"),
        path_loss_db=emu.float("path_loss_db", de.path_loss_db, 0.0, 200.0),
    )
    emu.finish()
    return emulator


def _parse_radio(sec: _Section) -> RadioSection:
    d = RadioSection()
    region = sec.str("region", d.region, tuple(REGIONS))
    (band_lo, band_hi), region_duty = REGIONS[region]
    emulator = _parse_emulator(sec.sub("emulator"))
    sf = sec.int("sf", d.sf, 6, 12)
    bw = sec.int("bw_hz", d.bw_hz, 7800, 500_000, BANDWIDTHS_HZ)
    freq = sec.int("frequency_hz", d.frequency_hz, 137_000_000, 1_020_000_000)
    if not band_lo <= freq <= band_hi:
        raise ConfigError(f"radio.frequency_hz: {freq} is outside the {region} band {band_lo}..{band_hi}")
    preamble = sec.int("preamble", d.preamble, 6, 65535)
    return RadioSection(
        backend=sec.str("backend", d.backend, ("sx1276", "emulator")),
        spi_device=sec.str("spi_device", d.spi_device),
        spi_speed_hz=sec.int("spi_speed_hz", d.spi_speed_hz, 100_000, 10_000_000),
        gpio=sec.str("gpio", d.gpio, ("auto", "rpi", "gpiod")),
        reset_pin=sec.int("reset_pin", d.reset_pin, 0, 63),
        dio0_pin=_optional_pin(sec, "dio0_pin", d.dio0_pin),
        dio1_pin=_optional_pin(sec, "dio1_pin", d.dio1_pin),
        frequency_hz=freq,
        sf=sf,
        bw_hz=bw,
        cr=sec.str("cr", d.cr, CODING_RATES),
        sync_word=sec.int("sync_word", d.sync_word, 0, 0xFF),
        preamble=preamble,
        crc_policy=sec.str("crc_policy", d.crc_policy, CRC_POLICIES),
        region=region,
        duty_cycle_percent=sec.float("duty_cycle_percent", region_duty, 0.0, region_duty),
        tx_power_dbm=_tx_power(sec, d.tx_power_dbm),
        downlink_invert_iq=sec.bool("downlink_invert_iq", d.downlink_invert_iq),
        emulator=emulator,
    )


def _parse_mqtt(sec: _Section, origin: Mapping[str, str] | None = None) -> MqttSection:
    """``origin``: where mqtt.username/password came from when not the config file (the secrets file)."""
    d = MqttSection()
    origin = origin or {}
    url = sec.str("url", None)
    broker = parse_broker_url(url, "mqtt.url") if url else d.broker
    sources = {k: "config file (mqtt.url)" for k in ("username", "password") if getattr(broker, k)}
    username = sec.str("username", None)
    password = sec.str("password", None)
    if username is not None:
        broker = replace(broker, username=username)
        sources["username"] = origin.get("username", "config file")
    if password is not None:
        broker = replace(broker, password=password)
        sources["password"] = origin.get("password", "config file")
    prefix = sec.str("topic_prefix", d.topic_prefix)
    if not prefix or any(c in prefix for c in "#+\0") or prefix.startswith("/") or prefix.endswith("/"):
        raise ConfigError(f"mqtt.topic_prefix: {_shown(prefix)} must be non-empty, without + # or outer /")
    files = {}
    for k in ("ca_file", "cert_file", "key_file"):
        v = sec.str(k, None)
        if v is not None and not Path(v).is_file():
            raise ConfigError(f"mqtt.{k}: {v} does not exist")
        files[k] = v
    if files["key_file"] and not files["cert_file"]:
        raise ConfigError("mqtt.key_file: set mqtt.cert_file too (a client key needs its certificate)")
    rmin = sec.float("reconnect_min_s", d.reconnect_min_s, 0.1, 3600.0)
    rmax = sec.float("reconnect_max_s", d.reconnect_max_s, 0.1, 3600.0)
    if rmax < rmin:
        raise ConfigError(f"mqtt.reconnect_max_s: {rmax:g} is below mqtt.reconnect_min_s {rmin:g}")
    return MqttSection(
        broker=broker,
        protocol=sec.str("protocol", d.protocol, ("5", "3.1.1")),
        client_id=sec.str("client_id", None),
        topic_prefix=prefix,
        keepalive_s=sec.int("keepalive_s", d.keepalive_s, 5, 3600),
        ca_file=files["ca_file"],
        cert_file=files["cert_file"],
        key_file=files["key_file"],
        tls_insecure=sec.bool("tls_insecure", d.tls_insecure),
        reconnect_min_s=rmin,
        reconnect_max_s=rmax,
        max_inflight=sec.int("max_inflight", d.max_inflight, 1, 65535),
        ack_timeout_s=sec.float("ack_timeout_s", d.ack_timeout_s, 1.0, 3600.0),
        connect_timeout_s=sec.float("connect_timeout_s", d.connect_timeout_s, 0.1, 60.0),
        credential_origins=tuple(sources.items()),
        retain_telemetry=sec.bool("retain_telemetry", d.retain_telemetry),
    )


def credentials_source(sources: Mapping[str, str]) -> str:
    """``"secrets file"``, ``"username from environment (LORA_GW_MQTT_USERNAME), password from secrets
    file"`` or ``"none"``: where the credentials came from, for messages that must not show them."""
    if not sources:
        return "none"
    if len(sources) == 2 and len(set(sources.values())) == 1:
        return next(iter(sources.values()))
    return ", ".join(f"{k} from {v}" for k, v in sorted(sources.items(), key=lambda kv: kv[0] != "username"))


def _parse_state(sec: _Section) -> StateSection:
    d = StateSection()
    state = StateSection(
        backup_dir=sec.str("backup_dir", None),
        backup_interval_h=sec.float("backup_interval_h", d.backup_interval_h, 0.01, 8760.0),
        backup_keep=sec.int("backup_keep", d.backup_keep, 1, 10_000),
        backup_passphrase_file=sec.str("backup_passphrase_file", None),
    )
    sec.finish()
    return state


def _parse_outbox(sec: _Section) -> OutboxSection:
    d = OutboxSection()
    return OutboxSection(
        synchronous=sec.str("synchronous", d.synchronous, ("normal", "full")),
        commit_frames=sec.int("commit_frames", d.commit_frames, 1, 100_000),
        commit_interval_ms=sec.int("commit_interval_ms", d.commit_interval_ms, 0, 60_000),
        max_rows=sec.int("max_rows", d.max_rows, 100, 100_000_000),
        max_age_days=sec.float("max_age_days", d.max_age_days, 0.001, 3650.0),
        redecode_interval_s=sec.float("redecode_interval_s", d.redecode_interval_s, 1.0, 86400.0),
        min_free_mb=sec.float("min_free_mb", d.min_free_mb, 0.0, 1e6),
        max_db_mb=sec.float("max_db_mb", d.max_db_mb, 0.0, 1e6),
    )


def _parse_node_keys(sec: _Section) -> dict[int, bytes]:
    keys: dict[int, bytes] = {}
    for name in list(sec.table):
        sec.used.add(name)
        try:
            node_id = int(name, 0)
        except ValueError:
            raise ConfigError(f'{sec.key(name)}: the node id is not a number (e.g. "0x2a")') from None
        if not 0 <= node_id <= 0xFFFFFFFF:
            raise ConfigError(f"{sec.key(name)}: node id is outside 0..0xFFFFFFFF")
        value = sec.table[name]
        try:
            key = bytes.fromhex(value) if isinstance(value, str) else b""
        except ValueError:
            key = b""
        if len(key) != 16:
            raise ConfigError(f"{sec.key(name)}: the key must be 32 hex digits (AES-128)")
        keys[node_id] = key
    return keys


def _node_ids(sec: _Section, k: str) -> tuple[int, ...]:
    v = sec._get(k)
    if v is None:
        return ()
    if not isinstance(v, list):
        raise ConfigError(f"{sec.key(k)}: must be a list of node ids")
    out = []
    for item in v:
        try:
            nid = int(item, 0) if isinstance(item, str) else item
        except ValueError:
            nid = None
        if isinstance(nid, bool) or not isinstance(nid, int) or not 0 <= nid <= 0xFFFFFFFF:
            raise ConfigError(f"{sec.key(k)}: {_shown(item)} is not a node id (0..0xFFFFFFFF)")
        out.append(nid)
    return tuple(out)


def _layer_env(mqtt: MqttSection, env: Mapping[str, str]) -> MqttSection:
    """The environment overrides what it sets, and only that: a ``LORA_GW_MQTT_URL`` without user info
    changes the broker address and keeps the credentials of the layers below."""
    broker = mqtt.broker
    sources = dict(mqtt.credential_origins)
    if env.get(ENV_URL):
        url = parse_broker_url(env[ENV_URL], ENV_URL)
        for k in ("username", "password"):
            if getattr(url, k):
                sources[k] = f"environment ({ENV_URL})"
            else:
                url = replace(url, **{k: getattr(broker, k)})
        broker = url
    for k, name in (("username", ENV_USERNAME), ("password", ENV_PASSWORD)):
        if env.get(name):
            broker = replace(broker, **{k: env[name]})
            sources[k] = f"environment ({name})"
    return replace(mqtt, broker=broker, credential_origins=tuple(sorted(sources.items(), reverse=True)))


def parse_config(
    data: Mapping[str, Any],
    secrets: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    source: str | None = None,
) -> Config:
    """Build a validated Config from parsed TOML tables (and optional secrets and environment)."""
    root = _Section("", dict(data))
    gw = root.sub("gateway")
    gateway = GatewaySection(
        id=gw.str("id", None) or socket.gethostname().split(".")[0] or "gateway",
        state_dir=gw.str("state_dir", None),
        stats_interval_s=gw.float("stats_interval_s", 60.0, 1.0, 86400.0),
        secrets_file=gw.str("secrets_file", None),
    )
    if any(c in gateway.id for c in "/#+\0"):
        raise ConfigError(f"gateway.id: {_shown(gateway.id)} must not contain / + or #")
    gw.finish()
    radio_sec = root.sub("radio")
    radio = _parse_radio(radio_sec)
    radio_sec.finish()
    mqtt_sec = root.sub("mqtt")
    mqtt_sec.table = dict(mqtt_sec.table)  # secrets are layered in; never mutate the caller's tables
    origin: dict[str, str] = {}
    if secrets:
        sroot = _Section("secrets", dict(secrets))
        smqtt = sroot.sub("mqtt")
        for k in ("username", "password"):
            v = smqtt.str(k, None)
            if v is not None:
                mqtt_sec.table[k] = v
                origin[k] = "secrets file"
        smqtt.finish()
        key_sec = sroot.sub("node_keys")
        node_keys = _parse_node_keys(key_sec)
        sroot.finish()
    else:
        node_keys = {}
    mqtt = _parse_mqtt(mqtt_sec, origin)
    mqtt_sec.finish()
    mqtt = _layer_env(mqtt, env if env is not None else os.environ)
    if mqtt.broker.password and not mqtt.broker.username:
        raise ConfigError("mqtt.password: a password needs a username")
    ob = root.sub("outbox")
    outbox = _parse_outbox(ob)
    ob.finish()
    lg = root.sub("logging")
    logging_sec = LoggingSection(level=lg.str("level", "info", LOG_LEVELS), file=lg.str("file", None))
    if logging_sec.file:
        check_log_file(logging_sec.file)
    lg.finish()
    nd = root.sub("nodes")
    nodes = NodeDefaults(
        report_interval_s=nd.float("report_interval_s", 300.0, 1.0, 86400.0 * 7),
        gap_filling=nd.bool("gap_filling", False),
        gap_filling_nodes=_node_ids(nd, "gap_filling_nodes"),
    )
    nd.finish()
    state = _parse_state(root.sub("state"))
    ha, http = _parse_homeassistant(root.sub("homeassistant")), _parse_http(root.sub("http"))
    history, models = _parse_history(root.sub("history")), _parse_models(root.sub("models"))
    downlink = _parse_downlink(root.sub("downlink"), radio)
    root.finish()
    return Config(
        gateway, radio, mqtt, outbox, logging_sec, nodes, node_keys, source,
        state=state, homeassistant=ha, http=http, history=history, models=models, downlink=downlink,
    )


def _parse_downlink(sec: _Section, radio: RadioSection) -> DownlinkSection:
    d = DownlinkSection()
    freq = sec.int("frequency_hz", d.frequency_hz, 0, 1_020_000_000)
    (lo, hi), _duty = REGIONS[radio.region]
    if freq and not lo <= freq <= hi:
        raise ConfigError(f"downlink.frequency_hz: {freq} is outside the {radio.region} band {lo}..{hi}")
    out = DownlinkSection(
        enabled=sec.bool("enabled", d.enabled),
        rx_delay_ms=sec.int("rx_delay_ms", d.rx_delay_ms, 100, 15_000),
        frequency_hz=freq,
        max_late_ms=sec.float("max_late_ms", d.max_late_ms, 0.1, 100.0),
        max_queue=sec.int("max_queue", d.max_queue, 1, 1000),
    )
    sec.finish()
    return out


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, layer and validate the config file at ``path`` (and its secrets file, if any)."""
    p = Path(path)
    data = _read_toml(p, "config")
    secrets = None
    gw = data.get("gateway")
    secrets_file = gw.get("secrets_file") if isinstance(gw, dict) else None
    if isinstance(secrets_file, str) and secrets_file:
        sp = Path(secrets_file)
        if not sp.is_absolute():
            sp = p.parent / sp
        if not sp.exists():
            raise ConfigError(f"gateway.secrets_file: {sp} does not exist")
        _check_private(sp)
        secrets = _read_toml(sp, "gateway.secrets_file")
    cfg = parse_config(data, secrets, env, source=str(p))
    problems = path_problems(cfg)
    if problems:
        raise ConfigError(problems[0])
    return cfg


# -- [homeassistant] and [http] (issue 16) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HomeAssistantSection:
    enabled: bool = False
    discovery_prefix: str = "homeassistant"


@dataclass(frozen=True, slots=True)
class HttpSection:
    """The optional status page and ``/metrics`` listener; off when ``listen`` is None."""

    listen: tuple[str, int] | None = None
    token: str | None = field(default=None, repr=False)

    @property
    def loopback(self) -> bool:
        return self.listen is None or self.listen[0] in ("127.0.0.1", "::1", "localhost")


def parse_listen(text: str, what: str) -> tuple[str, int]:
    """``"host:port"`` (``[v6]:port``) → (host, port), or a one-line ConfigError."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{what}: {_shown(text)} is not host:port (e.g. 127.0.0.1:9108)")
    return host, int(port)


def _parse_homeassistant(sec: _Section) -> HomeAssistantSection:
    d = HomeAssistantSection()
    prefix = sec.str("discovery_prefix", d.discovery_prefix)
    if not prefix or any(c in prefix for c in "#+\0") or prefix.startswith("/") or prefix.endswith("/"):
        raise ConfigError(f"homeassistant.discovery_prefix: {_shown(prefix)} is not a topic prefix")
    out = HomeAssistantSection(enabled=sec.bool("enabled", d.enabled), discovery_prefix=prefix)
    sec.finish()
    return out


def _parse_http(sec: _Section) -> HttpSection:
    listen = sec.str("listen", None)
    out = HttpSection(
        listen=parse_listen(listen, "http.listen") if listen else None, token=sec.str("token", None) or None
    )
    if not out.loopback and not out.token:
        raise ConfigError(
            f"http.listen: {listen} is reachable from other machines: set http.token (the page asks for it)"
        )
    sec.finish()
    return out


# -- [history] and [models] (issue 18) ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HistorySection:
    """The telemetry history (gateway.sinks.history): model frames kept for retraining, bounded."""

    enabled: bool = True
    retention_days: float = 90.0
    max_mb: float = 64.0


@dataclass(frozen=True, slots=True)
class ModelsSection:
    """Model upkeep: drift reporting and automatic retraining (gateway.codec.drift, gateway.codec.adapt)."""

    drift_threshold_pct: float = 10.0  # live bytes/sample this much above the evaluation figure ...
    drift_window_h: float = 24.0  # ... sustained over this much traffic time is drift
    auto_retrain: str = "off"  # "off" | "daily" | "weekly": stage candidates as inactive versions
    auto_activate: bool = False  # activate a staged candidate (else the operator decides)
    min_gain_pct: float = 3.0  # a candidate must be this much smaller to be installed


def _parse_history(sec: _Section) -> HistorySection:
    d = HistorySection()
    out = HistorySection(
        enabled=sec.bool("enabled", d.enabled),
        retention_days=sec.float("retention_days", d.retention_days, 0.01, 36500.0),
        max_mb=sec.float("max_mb", d.max_mb, 0.1, 1e6),
    )
    sec.finish()
    return out


def _parse_models(sec: _Section) -> ModelsSection:
    d = ModelsSection()
    out = ModelsSection(
        drift_threshold_pct=sec.float("drift_threshold_pct", d.drift_threshold_pct, 0.1, 1000.0),
        drift_window_h=sec.float("drift_window_h", d.drift_window_h, 0.01, 8760.0),
        auto_retrain=sec.str("auto_retrain", d.auto_retrain, ("off", "daily", "weekly")),
        auto_activate=sec.bool("auto_activate", d.auto_activate),
        min_gain_pct=sec.float("min_gain_pct", d.min_gain_pct, 0.0, 100.0),
    )
    sec.finish()
    return out
