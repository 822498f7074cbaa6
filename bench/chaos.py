"""A chaos run anyone can repeat: the real service under random faults, then the data invariants.

    python bench/chaos.py [--minutes M] [--seed N] [--json] [--fault-every S] [--keep DIR]

``lora-gw run`` (emulated radio, simulated nodes — two secured, one open) runs as a separate process
against a private Mosquitto with persistence, watched by a persistent MQTT v5 subscriber (QoS 1, session
kept) that records every message. A seeded schedule injects, one at a time: broker stop/start, broker
SIGKILL, broker stalled (SIGSTOP/SIGCONT), gateway SIGKILL and restart, gateway SIGTERM and restart, the
state directory's filesystem full (a small tmpfs the run mounts; where it cannot mount, a restart with
``min_free_mb`` above the free space — the same code path as ENOSPC), an emulated chip reset, missed
DIO0 edges, bursts of corrupted, forged (wrong MIC), replayed and downgraded (open frame for a secured
node) frames, and operator commands on the live state directory from other processes.

Which frames the gateway *accepted* is recorded from inside the database: a trigger on the outbox adds
(node, counter, time) to an audit table in the same transaction that stores the frame — so the audit
holds exactly the frames whose commit succeeded, the gateway's own promise. Frames injected by the run
carry the marker ``CHAOS`` in their payload: none may ever be published.

Invariants checked at the end (exit status 1 when one fails, with the evidence):
- every accepted frame reached the subscriber at least once (by ``msg_id``);
- no forged, replayed, corrupted or downgraded frame was published;
- a duplicate always has the same ``msg_id`` and identical content;
- the service never went longer than its watchdog interval without a ``WATCHDOG=1``.
A broker SIGKILL can lose messages the broker had acknowledged but not yet saved or passed on; such
losses are reported apart (``lost_after_broker_kill``) as the broker's, not the gateway's — a known
limit of any MQTT bridge whose broker dies without ``fsync``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from gateway.frames import FrameEncoder, PayloadCodec  # noqa: E402
from gateway.frames.wire import crc16  # noqa: E402
from gateway.pipeline.message import message_id  # noqa: E402

SIM_BASE = 0x5100
SECURED = {0x5101: bytes(range(16)), 0x5102: bytes(range(32, 48))}
OPEN_SIM = 0x5103
OPERATOR_NODE = 0x7777
MARKER = b"CHAOS"
WATCHDOG_S = 6.0  # WATCHDOG_USEC given to the service: it pings every 3 s, a 6 s silence is a hang
FAULT_KINDS = (
    "broker_restart",
    "broker_kill",
    "broker_stall",
    "gateway_kill",
    "gateway_term",
    "disk_full",
    "chip_reset",
    "missed_dio0",
    "bad_frames",
    "operator_cli",
)
AUDIT_SQL = """
CREATE TABLE IF NOT EXISTS chaos_accepted (node_id INTEGER, fcnt INTEGER, at REAL);
CREATE TRIGGER IF NOT EXISTS chaos_audit AFTER INSERT ON outbox BEGIN
  INSERT INTO chaos_accepted VALUES (NEW.node_id, NEW.fcnt, (julianday('now') - 2440587.5) * 86400.0);
END;
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Broker:
    """A private Mosquitto on a free loopback port, persistence on and saved after every change."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise SystemExit("error: mosquitto is not installed (sudo apt-get install mosquitto)")
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.dir}/",
            "autosave_interval 1",
            "autosave_on_changes true",
            "max_inflight_messages 0",
            "max_queued_messages 1000000",
            f"log_dest file {self.dir / 'mosquitto.log'}",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        (self.dir / "mosquitto.conf").write_text("\n".join(lines) + "\n")
        self.binary = binary

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.dir / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not _wait_port(self.port):
            raise RuntimeError("mosquitto did not start")

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


class Subscriber:
    """Persistent MQTT v5 session, QoS 1: every message with its arrival time."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[float, str, bytes]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="chaos-consumer", protocol=mqtt.MQTTv5
        )
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("lora/#", qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 86400
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((time.time(), msg.topic, bytes(msg.payload)))

    def delivered(self) -> dict[str, list[tuple[float, str, bytes]]]:
        out: dict[str, list[tuple[float, str, bytes]]] = defaultdict(list)
        with self.lock:
            msgs = list(self.messages)
        for t, topic, payload in msgs:
            if "/nodes/" not in topic:
                continue
            try:
                mid = json.loads(payload).get("msg_id")
            except (ValueError, AttributeError):
                continue
            if mid:
                out[mid].append((t, topic, payload))
        return out

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Watchdog:
    """The systemd notify socket: WATCHDOG=1 pings, and the longest silence while the service ran."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.last: float | None = None
        self.max_gap = 0.0
        self.pings = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def reset(self) -> None:
        """The service (re)starts or stops: a silence across it is not a hang."""
        self.last = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096).decode(errors="replace")
            except TimeoutError:
                continue
            except OSError:
                return
            if "WATCHDOG=1" in data:
                now = time.monotonic()
                if self.last is not None:
                    self.max_gap = max(self.max_gap, now - self.last)
                self.last = now
                self.pings += 1

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


@dataclass
class Fault:
    kind: str
    start: float  # wall time
    end: float = 0.0
    detail: str = ""


@dataclass
class Run:
    work: Path
    seed: int
    minutes: float
    fault_every: float
    rng: random.Random = field(init=False)
    faults: list[Fault] = field(default_factory=list)
    injected: list[bytes] = field(default_factory=list)
    gateway_runs: list[dict] = field(default_factory=list)
    cli: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.state = self.work / "fs" / "state"
        self.control = self.work / "control"
        self.control.mkdir(parents=True, exist_ok=True)
        self.db = self.state / "gateway.db"
        self.log = self.work / "gateway.log"
        self.mounted = False
        self.gw: subprocess.Popen | None = None
        self.extra_env: dict[str, str] = {}

    # -- set-up ------------------------------------------------------------------------------------------

    def mount(self) -> None:
        fs = self.work / "fs"
        fs.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            res = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", str(fs)],
                capture_output=True,
                text=True,
            )
            self.mounted = res.returncode == 0
        if not self.mounted:
            self.notes.append(
                "no tmpfs mount (not root or not allowed): disk full simulated with min_free_mb"
            )
        self.state.mkdir(mode=0o700, exist_ok=True)

    def cli_run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli.main", "--state-dir", str(self.state), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            input=stdin,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def prepare(self, port: int) -> None:
        res = self.cli_run("state", "init")
        if res.returncode != 0:
            raise SystemExit(f"error: state init failed: {res.stderr.strip()}")
        for i, (nid, key) in enumerate(SECURED.items()):
            res = self.cli_run(
                "nodes", "add", hex(nid), "--name", f"sim-{i + 1}", "--key", "-", stdin=key.hex()
            )
            if res.returncode != 0:
                raise SystemExit(f"error: nodes add failed: {res.stderr.strip()}")
        self.cli_run("nodes", "add", hex(OPERATOR_NODE), "--name", "operator-test")
        self.config = self.work / "gateway.toml"
        self.write_config(port)

    def write_config(self, port: int, min_free_mb: float = 1.0) -> None:
        self.config.write_text(f"""
[gateway]
id = "chaos"
state_dir = "{self.state}"
stats_interval_s = 2
[radio]
backend = "emulator"
[radio.emulator]
nodes = 3
interval_s = 1.0
speed = 2.0
seed = {self.seed}
[mqtt]
url = "mqtt://127.0.0.1:{port}"
reconnect_min_s = 0.2
reconnect_max_s = 1.0
ack_timeout_s = 5.0
[outbox]
min_free_mb = {min_free_mb}
commit_interval_ms = 25
[logging]
level = "info"
""")
        self.config.chmod(0o600)

    def add_audit(self) -> bool:
        try:
            with contextlib.closing(sqlite3.connect(self.db, timeout=5)) as c:
                if not c.execute("SELECT 1 FROM sqlite_master WHERE name='outbox'").fetchone():
                    return False
                c.executescript(AUDIT_SQL)
                return True
        except sqlite3.Error:
            return False

    # -- the gateway ---------------------------------------------------------------------------------------

    def start_gateway(self) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "NOTIFY_SOCKET": str(self.work / "notify.sock"),
            "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6)),
            "LORA_GW_EMULATOR_CONTROL": str(self.control),
            **self.extra_env,
        }
        self.watchdog.reset()
        self.gw = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli.main", "run", "--config", str(self.config)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("ab"),
        )
        self.gateway_runs.append({"pid": self.gw.pid, "started": time.time()})

    def stop_gateway(self, sig: int) -> int | None:
        if self.gw is None:
            return None
        self.gw.send_signal(sig)
        try:
            code = self.gw.wait(30)
        except subprocess.TimeoutExpired:
            self.gw.kill()
            code = self.gw.wait(5)
            self.notes.append(f"gateway pid {self.gw.pid} did not stop within 30 s of signal {sig}")
        self.watchdog.reset()
        self.gateway_runs[-1]["exit"] = code
        self.gw = None
        return code

    def db_next(self) -> dict[int, int]:
        try:
            with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=2)) as c:
                return dict(c.execute("SELECT node_id, next_fcnt FROM nodes"))
        except sqlite3.Error:
            return {}

    # -- faults --------------------------------------------------------------------------------------------

    def command(self, *lines: str) -> None:
        name = f"{time.time_ns()}.cmd"
        tmp = self.control / (name + ".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.rename(self.control / name)

    def bad_frames(self) -> str:
        nxt = self.db_next()
        kinds = Counter()
        lines = []
        for _ in range(self.rng.randint(4, 10)):
            nid = self.rng.choice(list(SECURED))
            key = SECURED[nid]
            base = nxt.get(nid, 0)
            kind = self.rng.choice(("corrupted", "forged", "replayed", "downgraded", "corrupted_open"))
            payload = MARKER + bytes([FAULT_KINDS.index("bad_frames"), len(self.injected) & 0xFF])
            if kind == "corrupted":
                frame = bytearray(FrameEncoder(nid, key).encode(payload, fcnt=base + self.rng.randint(2, 50)))
                frame[self.rng.randrange(len(frame))] ^= 1 << self.rng.randrange(8)
            elif kind == "forged":
                wrong = bytes(self.rng.randrange(256) for _ in range(16))
                frame = bytearray(
                    FrameEncoder(nid, wrong).encode(payload, fcnt=base + self.rng.randint(2, 50))
                )
            elif kind == "replayed":
                if base < 3:
                    continue
                frame = bytearray(
                    FrameEncoder(nid, key).encode(payload, fcnt=self.rng.randrange(0, base - 2))
                )
            elif kind == "downgraded":
                frame = bytearray(FrameEncoder(nid).encode(payload, fcnt=base + self.rng.randint(2, 50)))
            else:
                nid = OPEN_SIM
                frame = bytearray(
                    FrameEncoder(nid).encode(
                        payload, codec=PayloadCodec.RAW, fcnt=nxt.get(nid, 0) + self.rng.randint(2, 50)
                    )
                )
                i = self.rng.randrange(len(frame))
                frame[i] ^= 1 << self.rng.randrange(8)
                body, crc = bytes(frame[:-2]), frame[-2] | (frame[-1] << 8)
                if crc16(body) == crc:  # (cannot happen for one flipped bit; kept honest)
                    continue
            kinds[kind] += 1
            self.injected.append(bytes(frame))
            lines.append(f"send {bytes(frame).hex()}")
        if lines:
            self.command(*lines)
        return ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))

    def operator(self) -> str:
        choice = self.rng.choice(
            ("nodes list", "nodes add", "reset-counter", "model install", "state backup")
        )
        if choice == "nodes list":
            res = self.cli_run("nodes", "list", "--json")
        elif choice == "nodes add":
            nid = 0x8000 + len(self.faults)
            res = self.cli_run("nodes", "add", hex(nid), "--name", f"op-{nid:x}")
        elif choice == "reset-counter":
            res = self.cli_run("nodes", "reset-counter", hex(OPERATOR_NODE), "--next", "0")  # open: no epoch
        elif choice == "model install":
            res = self.cli_run(
                "model", "install", str(ROOT / "gateway" / "codec" / "data" / "weather-demo.npz")
            )
        else:
            res = self.cli_run("state", "backup", str(self.work / f"backup-{len(self.faults)}.db"))
        self.cli[f"{choice}: exit {res.returncode}"] += 1
        return f"{choice} → {res.returncode}" + (
            f" ({res.stderr.strip().splitlines()[-1]})" if res.returncode and res.stderr.strip() else ""
        )

    def disk_full(self, hold: float) -> str:
        if not self.mounted:
            self.stop_gateway(signal.SIGTERM)
            free = shutil.disk_usage(self.state).free / 1048576
            self.write_config(self.broker.port, min_free_mb=free + 1024)
            self.start_gateway()
            time.sleep(hold)
            self.stop_gateway(signal.SIGTERM)
            self.write_config(self.broker.port)
            self.start_gateway()
            return "simulated (min_free_mb above the free space)"
        filler = self.work / "fs" / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as fh:
            chunk = b"\0" * (1 << 20)
            while True:
                fh.write(chunk)
                fh.flush()
        with contextlib.suppress(OSError), filler.open("ab") as fh:  # the last few KiB too
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
        time.sleep(hold)
        filler.unlink()
        return f"tmpfs filled for {hold:.1f} s"

    def inject(self, kind: str) -> Fault:
        f = Fault(kind, time.time())
        r = self.rng
        if kind == "broker_restart":
            self.broker.stop()
            time.sleep(r.uniform(1, 4))
            self.broker.start()
        elif kind == "broker_kill":
            self.broker.stop(kill=True)
            time.sleep(r.uniform(0.5, 3))
            self.broker.start()
        elif kind == "broker_stall":
            self.broker.signal(signal.SIGSTOP)
            time.sleep(r.uniform(2, 8))
            self.broker.signal(signal.SIGCONT)
        elif kind == "gateway_kill":
            self.stop_gateway(signal.SIGKILL)
            time.sleep(r.uniform(0.2, 2))
            self.start_gateway()
        elif kind == "gateway_term":
            code = self.stop_gateway(signal.SIGTERM)
            f.detail = f"exit {code}"
            self.start_gateway()
        elif kind == "disk_full":
            f.detail = self.disk_full(r.uniform(2, 6))
        elif kind == "chip_reset":
            self.command("chip-reset")
        elif kind == "missed_dio0":
            self.command("fault no-dio0")
            time.sleep(r.uniform(0.5, 3))
            self.command("fault none")
        elif kind == "bad_frames":
            f.detail = self.bad_frames()
        elif kind == "operator_cli":
            f.detail = self.operator()
        f.end = time.time()
        return f

    # -- the run -------------------------------------------------------------------------------------------

    def execute(self) -> dict:
        self.mount()
        self.broker = Broker(self.work / "mosquitto")
        self.broker.start()
        self.sub = Subscriber(self.broker.port)
        self.watchdog = Watchdog(self.work / "notify.sock")
        self.prepare(self.broker.port)
        self.start_gateway()
        deadline = time.monotonic() + 20
        while not self.add_audit():
            if time.monotonic() > deadline:
                raise SystemExit(f"error: the gateway did not create its outbox (see {self.log})")
            time.sleep(0.05)
        t_end = time.monotonic() + self.minutes * 60
        # every kind at least once (in a seeded order), then at random
        order = list(FAULT_KINDS)
        self.rng.shuffle(order)
        while time.monotonic() < t_end:
            time.sleep(self.rng.uniform(0.5, 1.5) * self.fault_every)
            if time.monotonic() >= t_end:
                break
            kind = order.pop() if order else self.rng.choice(FAULT_KINDS)
            fault = self.inject(kind)
            self.faults.append(fault)
            print(f"[{time.strftime('%H:%M:%S')}] {kind} {fault.detail}", file=sys.stderr, flush=True)
            if self.gw is not None and self.gw.poll() is not None:
                self.notes.append(f"gateway exited by itself ({self.gw.returncode}) before {kind}; restarted")
                self.gateway_runs[-1]["exit"] = self.gw.returncode
                self.start_gateway()
        return self.finish()

    def drain(self, timeout_s: float = 90.0) -> None:
        """Faults over: wait until every audited frame was delivered or the outbox is empty."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=2)) as c:
                    left = c.execute("SELECT count(*) FROM outbox WHERE state < 2").fetchone()[0]
            except sqlite3.Error:
                left = -1
            if left == 0 and not (self.accepted() - set(self.sub.delivered())):
                return
            time.sleep(0.5)

    def accepted(self) -> set[str]:
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)) as c:
            return {message_id(n, f) for n, f in c.execute("SELECT node_id, fcnt FROM chaos_accepted")}

    def finish(self) -> dict:
        self.drain()
        self.stop_gateway(signal.SIGTERM)
        time.sleep(1.0)
        with contextlib.closing(sqlite3.connect(self.db, timeout=5)) as c:
            audit = [
                (message_id(n, f), at)
                for n, f, at in c.execute("SELECT node_id, fcnt, at FROM chaos_accepted")
            ]
            parked = {
                message_id(n, f) for n, f in c.execute("SELECT node_id, fcnt FROM outbox WHERE state >= 2")
            }
        delivered = self.sub.delivered()
        accepted_at: dict[str, float] = {}
        for mid, at in audit:
            accepted_at.setdefault(mid, at)
        accepted = set(accepted_at) | set(delivered)
        lost = sorted(set(accepted_at) - set(delivered) - parked)
        lost_gateway, lost_broker = [], []
        evidence = []
        for mid in lost:
            at = accepted_at[mid]
            before = [f for f in self.faults if f.start <= at + 5.0]
            last = before[-1] if before else None
            entry = {
                "msg_id": mid,
                "accepted_at": round(at, 3),
                "fault_before": None if last is None else f"{last.kind} at {last.start:.3f} {last.detail}",
            }
            (
                lost_broker
                if last is not None and last.kind == "broker_kill" and at <= last.start + 1.0
                else lost_gateway
            ).append(mid)
            evidence.append(entry)
        dup_count, dup_bad = 0, []
        forged = []
        for mid, copies in delivered.items():
            per_topic: dict[str, set[bytes]] = defaultdict(set)
            for _, topic, payload in copies:
                per_topic[topic].add(payload)
            n_copies = Counter(topic for _, topic, _ in copies)
            dup_count += sum(n - 1 for n in n_copies.values())
            for topic, bodies in per_topic.items():
                if len(bodies) > 1:
                    dup_bad.append(
                        {"msg_id": mid, "topic": topic, "versions": [b.decode()[:300] for b in bodies]}
                    )
            for _, topic, payload in copies:
                if MARKER.hex() in payload.decode(errors="replace").lower() or MARKER in payload:
                    forged.append({"msg_id": mid, "topic": topic, "payload": payload.decode()[:300]})
        recovery = []
        first_seen = sorted(min(t for t, _, _ in copies) for copies in delivered.values())
        for f in self.faults:
            nxt = next((t for t in first_seen if t > f.end), None)
            if nxt is not None:
                recovery.append(nxt - f.end)
        received, drops = self.radio_totals()
        kinds = Counter(f.kind for f in self.faults)
        invariants = {
            "no_accepted_frame_lost": not lost_gateway,
            "no_forged_published": not forged,
            "duplicates_identical": not dup_bad,
            "watchdog_never_missed": self.watchdog.max_gap < WATCHDOG_S,
        }
        return {
            "minutes": self.minutes,
            "seed": self.seed,
            "machine": f"{platform.machine()} {platform.python_implementation()} "
            f"{platform.python_version()}, {os.cpu_count()} CPUs",
            "commit": _commit(),
            "faults_injected": dict(sorted(kinds.items())),
            "faults_total": len(self.faults),
            # packets the gateway's radio received (the stats topic, summed over runs)
            "frames_sent": received,
            "frames_injected_bad": len(self.injected),
            "frames_accepted": len(accepted),
            "frames_delivered": len(set(delivered) & accepted),
            "frames_lost": len(lost_gateway),
            "lost_after_broker_kill": len(lost_broker),
            "parked": len(parked),
            "rejected": dict(sorted(drops.items())),
            "duplicates": dup_count,
            "forged_published": len(forged),
            "max_recovery_s": round(max(recovery), 2) if recovery else None,
            "max_watchdog_gap_s": round(self.watchdog.max_gap, 2),
            "watchdog_s": WATCHDOG_S,
            "gateway_runs": len(self.gateway_runs),
            "operator_commands": dict(self.cli),
            "invariants": invariants,
            "evidence": {"lost": evidence[:50], "duplicates_differing": dup_bad[:10], "forged": forged[:10]},
            "faults": [
                {
                    "kind": f.kind,
                    "t": round(f.start - self.faults[0].start, 2),
                    "s": round(f.end - f.start, 2),
                    "detail": f.detail,
                }
                for f in self.faults
            ],
            "notes": self.notes,
        }

    def radio_totals(self) -> tuple[int, Counter]:
        """Packets received and rejections by reason, from the last stats message of each gateway run
        (a run's counters start at 0; a SIGKILLed run's last few seconds are not counted)."""
        with self.sub.lock:
            stats = [json.loads(p) for _, t, p in self.sub.messages if t.endswith("/stats")]
        received, drops, last = 0, Counter(), None
        for s in [*stats, None]:
            if last is not None and (s is None or s.get("uptime_s", 0) < last.get("uptime_s", 0)):
                received += last.get("received", 0)
                drops.update(last.get("drops", {}))
            last = s
        return received, drops

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            if self.gw is not None and self.gw.poll() is None:
                self.gw.kill()
                self.gw.wait(5)
        with contextlib.suppress(Exception):
            self.sub.close()
        with contextlib.suppress(Exception):
            self.broker.stop()
        with contextlib.suppress(Exception):
            self.watchdog.close()
        if self.mounted:
            subprocess.run(["umount", str(self.work / "fs")], capture_output=True)


def _commit() -> str | None:
    """The checkout's commit (with ``+dirty`` for uncommitted changes), so a saved run names its code."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10)
        return done.stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+dirty" if dirty else "")) or None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--fault-every", type=float, default=20.0, help="mean seconds between faults (default 20)"
    )
    ap.add_argument("--keep", help="work in this directory and keep it (logs, database, broker files)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lora-gw-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    run = Run(work, args.seed, args.minutes, args.fault_every)
    try:
        result = run.execute()
    finally:
        run.cleanup()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    ok = all(result["invariants"].values())
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"faults {result['faults_total']} {result['faults_injected']}")
        for k in (
            "frames_sent",
            "frames_accepted",
            "frames_delivered",
            "frames_lost",
            "lost_after_broker_kill",
            "duplicates",
            "forged_published",
            "max_recovery_s",
            "max_watchdog_gap_s",
        ):
            print(f"{k}: {result[k]}")
        for name, good in result["invariants"].items():
            print(f"{'ok  ' if good else 'FAIL'} {name}")
        if not ok:
            print(json.dumps(result["evidence"], indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
