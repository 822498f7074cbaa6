"""A private Mosquitto per test that needs one: a free 127.0.0.1 port, anonymous access (or a password
file: ``passwords={"user": "password"}``), optional ACL.

Tests FAIL (not skip) when the mosquitto binary is missing: ``sudo apt-get install mosquitto``.
"""

from __future__ import annotations

import fcntl
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def _port_range() -> range:
    """Ports outside the kernel's ephemeral range (``ip_local_port_range``, 32768-60999 on Debian): no
    bind to port 0 and no outgoing connection, of this test run or any other program, is handed one."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    below, above = range(max(1024, low - 12000), low), range(high + 1, 65536)
    return below if len(below) >= len(above) else above


PORTS = _port_range()
_LOCK_FILE = Path(tempfile.gettempdir()) / "lora-gw-test-ports.lock"
_lock_fd: int | None = None
_next = random.randrange(len(PORTS))


def free_port() -> int:
    """A 127.0.0.1 TCP port nobody listens on, for a private broker or web server to bind later.

    Outside the ephemeral range, so nothing else is given it between this probe and that bind, or while
    a test has stopped its broker to start it again on the same port; and reserved (a lock on byte
    ``port`` of a file shared by all test processes, held until this process exits), so two xdist
    workers, or two test runs, never pick the same one."""
    global _lock_fd, _next
    if _lock_fd is None:
        _lock_fd = os.open(_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    for _ in range(len(PORTS)):
        port = PORTS[_next % len(PORTS)]
        _next += 1
        try:
            fcntl.lockf(_lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
        except OSError:
            continue  # another test process has it
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            continue  # another program listens there (or a connection lingers): stays reserved, unused
        return port
    raise RuntimeError(f"no free port in {PORTS.start}..{PORTS.stop - 1}")


def _wait_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"mosquitto did not open 127.0.0.1:{port}")


@dataclass
class Broker:
    """A private mosquitto; ``stop``/``start`` simulate an outage on the same port."""

    workdir: Path
    port: int
    acl: str | None = None
    persistence: bool = False  # keep sessions and queued messages across stop/start (saved on SIGTERM)
    extra: tuple[str, ...] = ()  # more lines for the listener (TLS settings)
    passwords: dict[str, str] | None = None  # a password file with these users; anonymous access off
    proc: subprocess.Popen | None = None
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if binary is None:
            pytest.fail("mosquitto is not installed: sudo apt-get install mosquitto")
        conf = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'false' if self.passwords is not None else 'true'}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "max_inflight_messages 0",
            "max_queued_messages 100000",
            f"log_dest file {self.workdir / 'mosquitto.log'}",
        ]
        lines[1:1] = self.extra
        if os.geteuid() == 0:  # as root mosquitto would switch to user "mosquitto", who cannot read tmp_path
            lines.append("user root")
        if self.passwords is not None:
            lines.append(f"password_file {self._password_file()}")
        if self.acl is not None:
            acl = self.workdir / "acl"
            acl.write_text(self.acl)
            lines.append(f"acl_file {acl}")
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            _wait_port(self.port)
        except RuntimeError:
            err = self.proc.stderr.read().decode() if self.proc.poll() is not None else ""
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {err}") from None

    def _password_file(self) -> Path:
        """Hashed with Debian's mosquitto_passwd (same package as the broker)."""
        tool = shutil.which("mosquitto_passwd")
        if tool is None:
            pytest.fail("mosquitto_passwd is not installed: sudo apt-get install mosquitto")
        path = self.workdir / "passwd"
        path.write_text("")
        for user, password in (self.passwords or {}).items():
            subprocess.run([tool, "-b", str(path), user, password], check=True, capture_output=True)
        return path

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator:
    started: list[Broker] = []

    def make(
        acl: str | None = None,
        persistence: bool = False,
        extra: tuple[str, ...] = (),
        passwords: dict[str, str] | None = None,
    ) -> Broker:
        d = tmp_path / f"mosquitto{len(started)}"
        d.mkdir()
        b = Broker(
            workdir=d, port=free_port(), acl=acl, persistence=persistence, extra=extra, passwords=passwords
        )
        b.start()
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()


@pytest.fixture
def broker(broker_factory) -> Broker:
    return broker_factory()
