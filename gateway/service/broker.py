"""A private Mosquitto on a free loopback port, for the demo and the benchmarks.

A module of its own so that a benchmark can start a broker without loading the demo (and, through it,
everything the service can wire)."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from gateway.errors import GatewayError
from gateway.sinks.url import BrokerUrl

log = logging.getLogger(__name__)


class BrokerUnavailable(GatewayError):
    reason = "no_broker"


def _answers(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds the listening socket on 127.0.0.1:``port`` (Linux /proc; True
    where there is no /proc to ask)."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return True
    want = f"0100007F:{port:04X}"
    inodes = {f[9] for f in (ln.split() for ln in lines) if f[1] == want and f[3] == "0A"}
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


class PrivateMosquitto:
    """A mosquitto on a free 127.0.0.1 port, anonymous, no persistence; removed on ``stop``."""

    def __init__(self) -> None:
        binary = shutil.which("mosquitto") or next(
            (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
        )
        if binary is None:
            raise BrokerUnavailable(
                "no MQTT broker answers on 127.0.0.1:1883 and mosquitto is not installed: "
                "sudo apt-get install mosquitto (or pass --broker mqtt://host:port)"
            )
        self.dir = Path(tempfile.mkdtemp(prefix="lora-gw-mosquitto-"))
        # The free port is probed, then handed to mosquitto: another program may take it in between.
        # Mosquitto then exits ("Address already in use"), and a new port is tried.
        for attempt in range(5):
            err = self._start(binary)
            if err is None:
                break
            if "in use" not in err or attempt == 4:
                self.stop()
                raise BrokerUnavailable(f"private mosquitto did not start: {err}")
            log.info("private mosquitto: port %d was taken meanwhile; trying another", self.port)
        log.info("started a private mosquitto on 127.0.0.1:%d", self.port)

    def _start(self, binary: str) -> str | None:
        """Start mosquitto on a newly probed port: None once it answers, else its last error line."""
        self.port = _free_port()
        conf = self.dir / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false"]
        if os.geteuid() == 0:
            lines.append("user root")  # else it switches to user mosquitto, who cannot read our temp dir
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        # answering is not enough: the program that took the port answers too
        while not (_answers("127.0.0.1", self.port, 0.2) and _listens(self.proc.pid, self.port)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait(5)
                err = self.proc.stderr.read().decode(errors="replace").strip() if self.proc.stderr else ""
                if self.proc.stderr is not None:
                    self.proc.stderr.close()
                return err.splitlines()[-1] if err else "?"
            time.sleep(0.05)
        return None

    @property
    def url(self) -> BrokerUrl:
        return BrokerUrl("127.0.0.1", self.port, False)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)
