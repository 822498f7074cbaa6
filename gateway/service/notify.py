"""sd_notify without libsystemd: one datagram to ``$NOTIFY_SOCKET`` (``@`` = abstract namespace).

A no-op outside systemd. ``watchdog_interval_s`` is half of ``WatchdogSec`` (from ``$WATCHDOG_USEC``),
the rate systemd recommends for ``WATCHDOG=1``.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)

SIGNIFICANT_WAIT_S = 2.0  # READY/STOPPING: how long to wait for room in a busy listener's queue


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        if path.startswith("@"):
            self.address = "\0" + path[1:]
        elif path.startswith("/"):
            self.address = path
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_interval_s: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval_s = int(usec) / 2e6
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str, wait_s: float = 0.0) -> bool:
        """Send ``KEY=VALUE`` lines; False (logged at debug) if systemd is not listening.

        A listener that stops reading must never stall the core thread: routine messages (WATCHDOG,
        STATUS) are dropped when its queue is full (``wait_s`` 0); READY and STOPPING wait up to
        ``wait_s`` for room, since systemd acts on them."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.settimeout(wait_s)
            self._sock.sendto("\n".join(fields).encode(), self.address)
            return True
        except OSError as exc:  # includes the timeout and a full queue (EAGAIN)
            log.debug("sd_notify to %r failed: %s", self.address, exc)
            return False

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}", wait_s=SIGNIFICANT_WAIT_S)

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def stopping(self, status: str = "stopping") -> bool:
        return self.send("STOPPING=1", f"STATUS={status}", wait_s=SIGNIFICANT_WAIT_S)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
