"""Cayenne LPP: channel, type (IPSO id − 3200), big-endian value; readings concatenated.

Standard types plus the common extended ones of the ElectronicCats library. Decoding never raises
anything but :class:`FrameError` (``bad_payload``); encoding refuses out-of-range values instead of
clamping them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.frames.errors import FrameError, Reason
from gateway.frames.types import Reading


@dataclass(frozen=True, slots=True)
class LppType:
    code: int
    name: str
    size: int  # bytes per field
    divisor: int  # raw / divisor = value (1 → integer values)
    signed: bool
    unit: str | None
    fields: tuple[str, ...] = ()  # several fields → the value is a dict
    field_size: int = 0  # bytes per field when several


TYPES: tuple[LppType, ...] = (
    LppType(0x00, "digital_input", 1, 1, False, None),
    LppType(0x01, "digital_output", 1, 1, False, None),
    LppType(0x02, "analog_input", 2, 100, True, None),
    LppType(0x03, "analog_output", 2, 100, True, None),
    LppType(0x64, "generic", 4, 1, False, None),
    LppType(0x65, "illuminance", 2, 1, False, "lx"),
    LppType(0x66, "presence", 1, 1, False, None),
    LppType(0x67, "temperature", 2, 10, True, "°C"),
    LppType(0x68, "humidity", 1, 2, False, "%"),
    LppType(0x71, "accelerometer", 6, 1000, True, "g", ("x", "y", "z"), 2),
    LppType(0x73, "barometer", 2, 10, False, "hPa"),
    LppType(0x74, "voltage", 2, 100, False, "V"),
    LppType(0x75, "current", 2, 1000, False, "A"),
    LppType(0x76, "frequency", 4, 1, False, "Hz"),
    LppType(0x78, "percentage", 1, 1, False, "%"),
    LppType(0x79, "altitude", 2, 1, True, "m"),
    LppType(0x80, "power", 2, 1, False, "W"),
    LppType(0x82, "distance", 4, 1000, False, "m"),
    LppType(0x83, "energy", 4, 1000, False, "kWh"),
    LppType(0x84, "direction", 2, 1, False, "°"),
    LppType(0x85, "unix_time", 4, 1, False, "s"),
    LppType(0x86, "gyrometer", 6, 100, True, "°/s", ("x", "y", "z"), 2),
    LppType(0x88, "gps", 9, 0, True, None, ("latitude", "longitude", "altitude"), 3),
    LppType(0x8E, "switch", 1, 1, False, None),
)
BY_CODE: dict[int, LppType] = {t.code: t for t in TYPES}
BY_NAME: dict[str, LppType] = {t.name: t for t in TYPES}
# GPS fields: latitude/longitude 0.0001°, altitude 0.01 m.
GPS_DIVISORS = {"latitude": 10000, "longitude": 10000, "altitude": 100}
GPS_UNITS = {"latitude": "°", "longitude": "°", "altitude": "m"}


def _scale(raw: int, divisor: int) -> float | int:
    return raw if divisor == 1 else raw / divisor


def decode(payload: bytes) -> list[Reading]:
    """All readings in ``payload``; an unknown type or a truncated value is ``bad_payload``."""
    data = bytes(payload)
    readings: list[Reading] = []
    pos = 0
    end = len(data)
    from_bytes = int.from_bytes
    while pos < end:
        if end - pos < 2:
            raise FrameError(Reason.BAD_PAYLOAD, f"LPP: truncated reading at byte {pos}")
        channel = data[pos]
        code = data[pos + 1]
        kind = BY_CODE.get(code)
        if kind is None:
            raise FrameError(Reason.BAD_PAYLOAD, f"LPP: unknown type 0x{code:02x} at byte {pos + 1}")
        start = pos + 2
        stop = start + kind.size
        if stop > end:
            raise FrameError(Reason.BAD_PAYLOAD, f"LPP: {kind.name} at byte {pos} is truncated")
        if kind.fields:
            fs = kind.field_size
            value: float | int | dict = {}
            for i, name in enumerate(kind.fields):
                raw = from_bytes(data[start + i * fs : start + (i + 1) * fs], "big", signed=True)
                value[name] = raw / (GPS_DIVISORS[name] if kind.code == 0x88 else kind.divisor)
        else:
            raw = from_bytes(data[start:stop], "big", signed=kind.signed)
            value = _scale(raw, kind.divisor)
        readings.append(Reading(channel, kind.name, value, kind.unit))
        pos = stop
    return readings


def _raw(value: float, divisor: int, size: int, signed: bool, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FrameError(Reason.BAD_PAYLOAD, f"LPP: {what} needs a number, not {value!r}")
    raw = round(value * divisor)
    bits = 8 * size
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not low <= raw <= high:
        raise FrameError(Reason.BAD_PAYLOAD, f"LPP: {what} {value!r} is outside the type's range")
    return raw


def encode_reading(channel: int, type_name: str, value: float | int | dict) -> bytes:
    """One reading; ``type_name`` as in :data:`TYPES`; dict values for accelerometer, gyrometer, gps."""
    kind = BY_NAME.get(type_name)
    if kind is None:
        raise FrameError(Reason.BAD_PAYLOAD, f"LPP: unknown type {type_name!r}")
    if not 0 <= channel <= 255:
        raise FrameError(Reason.BAD_PAYLOAD, f"LPP: channel {channel} is outside 0..255")
    out = bytearray((channel, kind.code))
    if kind.fields:
        if not isinstance(value, dict) or set(value) != set(kind.fields):
            raise FrameError(Reason.BAD_PAYLOAD, f"LPP: {kind.name} needs fields {', '.join(kind.fields)}")
        for name in kind.fields:
            div = GPS_DIVISORS[name] if kind.code == 0x88 else kind.divisor
            raw = _raw(value[name], div, kind.field_size, True, f"{kind.name}.{name}")
            out += raw.to_bytes(kind.field_size, "big", signed=True)
    else:
        raw = _raw(value, kind.divisor, kind.size, kind.signed, kind.name)  # type: ignore[arg-type]
        out += raw.to_bytes(kind.size, "big", signed=kind.signed)
    return bytes(out)


def encode(readings: Iterable[Reading | tuple[int, str, float | int | dict]]) -> bytes:
    """Concatenate readings (``Reading`` objects or ``(channel, type, value)`` tuples)."""
    parts = []
    for item in readings:
        if isinstance(item, Reading):
            parts.append(encode_reading(item.channel, item.type, item.value))  # type: ignore[arg-type]
        else:
            parts.append(encode_reading(*item))
    return b"".join(parts)
