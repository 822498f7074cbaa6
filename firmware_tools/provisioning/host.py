"""The host side of provisioning: open the port, write every setting, commit, read everything back."""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from firmware_tools.provisioning.protocol import (
    KCV_LEN,
    PROTOCOL_VERSION,
    Field,
    FrameReader,
    Message,
    MsgType,
    NakReason,
    NodeSettings,
    decode_value,
    encode_value,
    frame,
    key_check_value,
)
from gateway.errors import GatewayError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 0.5
DEFAULT_RETRIES = 3
_MISSING = (errno.ENOENT, errno.ENXIO, errno.ENODEV)
_DENIED = (errno.EACCES, errno.EPERM)
_BUSY = (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK)


class ProvisionError(GatewayError):
    """A provisioning step failed; ``reason`` names the kind (port_missing, no_answer, nak, ...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Port(Protocol):
    def write(self, data: bytes) -> int | None: ...
    def read(self, size: int = 1) -> bytes: ...


def open_port(device: str, baud: int, opener: Callable[..., Port] | None = None) -> Port:
    """The serial port, opened exclusively; pyserial's errors become one-line ProvisionErrors."""
    import serial

    opener = opener or serial.Serial
    try:
        return opener(device, baud, timeout=0.02, exclusive=True)
    except (serial.SerialException, OSError) as exc:
        code = getattr(exc, "errno", None)
        if code in _MISSING:
            raise ProvisionError(
                "port_missing", f"{device}: no such serial port (USB adapters are /dev/ttyUSB*, /dev/ttyACM*)"
            ) from None
        if code in _DENIED:
            raise ProvisionError(
                "permission",
                f"{device}: permission denied; add your user to the dialout group"
                " (sudo usermod -aG dialout $USER) and log in again",
            ) from None
        if code in _BUSY:
            raise ProvisionError(
                "port_busy",
                f"{device}: port is busy: another program has it open (a serial monitor, ModemManager,"
                " lora-fw console)",
            ) from None
        raise ProvisionError("port", f"{device}: cannot open ({exc})") from None


@dataclass(frozen=True, slots=True)
class Verified:
    field: Field
    value: int | bytes  # for the key: its check value


class Provisioner:
    """Request/response over one port: sequence numbers, ACK/NAK, retries with a timeout per try."""

    def __init__(
        self,
        port: Port,
        device: str = "port",
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.port = port
        self.device = device
        self.timeout_s = timeout_s
        self.retries = retries
        self.clock = clock
        self.seq = 0
        self.reader = FrameReader()
        self.node_text = ""

    def request(self, msg_type: MsgType, payload: bytes = b"", what: str = "") -> Message:
        what = what or msg_type.name
        seq = self.seq
        self.seq = (self.seq + 1) & 0xFF
        crc_failures = 0
        for attempt in range(1 + self.retries):
            if attempt:
                log.info("%s: %s, try %d", self.device, what, attempt + 1)
            self.port.write(frame(msg_type, seq, payload))
            deadline = self.clock() + self.timeout_s
            retry = False
            while not retry and self.clock() < deadline:
                for msg in self.reader.feed(self.port.read(max(1, getattr(self.port, "in_waiting", 0)))):
                    if msg is None:
                        crc_failures += 1
                        retry = True
                        break
                    if msg.seq != seq:
                        continue  # a late answer to an earlier try
                    if msg.type == MsgType.ACK:
                        return msg
                    if msg.type == MsgType.NAK:
                        reason = msg.payload[0] if msg.payload else 0
                        text = msg.payload[1:].decode("ascii", "replace")
                        if reason == NakReason.BAD_CRC:
                            retry = True  # the node saw our frame damaged: send it again
                            break
                        self._nak(what, reason, text)
        if crc_failures:
            raise ProvisionError(
                "bad_crc",
                f"{self.device}: {what}: {crc_failures} answers failed their CRC"
                f" after {1 + self.retries} tries (wrong --baud, or a noisy line)",
            )
        raise ProvisionError(
            "no_answer",
            f"{self.device}: {what}: no answer after {1 + self.retries} tries of {self.timeout_s:g} s"
            " (wrong port or --baud, or the node is not in provisioning mode)",
        )

    def _nak(self, what: str, reason: int, text: str) -> None:
        if reason == NakReason.VERSION:
            raise ProvisionError(
                "version", f"{self.device}: the node refuses protocol v{PROTOCOL_VERSION}: {text}"
            )
        label = NakReason(reason).label if reason in NakReason._value2member_map_ else f"reason {reason}"
        raise ProvisionError("nak", f"{self.device}: {what}: the node answered NAK {label}: {text or '-'}")

    def hello(self) -> int:
        msg = self.request(MsgType.HELLO, bytes((PROTOCOL_VERSION,)), "HELLO")
        version = msg.payload[0] if msg.payload else 0
        self.node_text = msg.payload[1:].decode("ascii", "replace")
        if version != PROTOCOL_VERSION:
            raise ProvisionError(
                "version",
                f"{self.device}: the node speaks provisioning protocol v{version}, this lora-fw"
                f" v{PROTOCOL_VERSION}: update the node's firmware or lora-fw",
            )
        return version

    def set(self, field_id: Field, value: int | bytes) -> None:
        self.request(MsgType.SET, bytes((field_id,)) + encode_value(field_id, value), f"SET {field_id.name}")

    def get(self, field_id: Field) -> int | bytes:
        msg = self.request(MsgType.GET, bytes((field_id,)), f"GET {field_id.name}")
        if not msg.payload or msg.payload[0] != field_id:
            raise ProvisionError("bad_answer", f"{self.device}: GET {field_id.name}: answer names another")
        data = msg.payload[1:]
        if field_id is Field.ROOT_KEY:
            if len(data) != KCV_LEN:
                raise ProvisionError("bad_answer", f"{self.device}: GET ROOT_KEY: not a 3-byte check value")
            return data
        try:
            return decode_value(field_id, data)
        except Exception:
            raise ProvisionError(
                "bad_answer", f"{self.device}: GET {field_id.name}: {len(data)} bytes do not hold the value"
            ) from None

    def provision(self, settings: NodeSettings) -> list[Verified]:
        """HELLO, SET every field, COMMIT, then GET every field and compare (the key by check value)."""
        self.hello()
        fields = settings.fields()
        for field_id, value in fields:
            self.set(field_id, value)
        self.request(MsgType.COMMIT, b"", "COMMIT")
        verified = []
        for field_id, value in fields:
            got = self.get(field_id)
            want = key_check_value(value) if field_id is Field.ROOT_KEY else value  # type: ignore[arg-type]
            if got != want:
                shown = f"wrote {want!r}, read {got!r}"
                if field_id is Field.ROOT_KEY:
                    shown = "the key's check value differs"
                raise ProvisionError("verify", f"{self.device}: {field_id.name}: {shown}")
            verified.append(Verified(field_id, got))
        log.info("node %d provisioned on %s", settings.node_id, self.device)
        return verified
