"""Channel schema: names, units and the resolution (``step``) values are quantised to.

The codec works on integers ``q = round(value / step)``; it is lossless on those, so a schema's
step should be the sensor's real resolution (finer steps cost bits and carry no information).
"""

from __future__ import annotations

import json
import math
import tomllib
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from gateway.codec.errors import SchemaError

MAX_CHANNELS = 32
#: Quantised values must stay within ±2**30 so that residuals fit a signed 32-bit range.
Q_LIMIT = 1 << 30


def printable(text: str) -> bool:
    """True when ``text`` has no control, format or line/paragraph separator characters (names and
    units end up in CSV headers, log lines and MQTT JSON, where those would forge or break lines)."""
    return not any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text)


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    unit: str
    step: float
    min: float | None = None
    max: float | None = None
    device_class: str | None = None

    @property
    def decimals(self) -> int:
        """Digits after the decimal point needed to print a value at this step."""
        exp = Decimal(repr(self.step)).normalize().as_tuple().exponent
        return max(0, -int(exp))

    @property
    def qmin(self) -> int | None:
        return None if self.min is None else math.ceil(self.min / self.step - 1e-9)

    @property
    def qmax(self) -> int | None:
        return None if self.max is None else math.floor(self.max / self.step + 1e-9)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "unit": self.unit, "step": self.step}
        for key in ("min", "max", "device_class"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True, slots=True)
class Schema:
    channels: tuple[Channel, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.channels)

    @property
    def steps(self) -> np.ndarray:
        return np.array([c.step for c in self.channels], dtype=np.float64)

    def __len__(self) -> int:
        return len(self.channels)

    def quantise(self, values: np.ndarray) -> np.ndarray:
        """Physical values (samples × channels) → int64 at each channel's step."""
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != len(self):
            raise SchemaError(f"expected samples × {len(self)} channels, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise SchemaError("values contain NaN or infinity")
        q = np.rint(arr / self.steps)
        if np.any(np.abs(q) >= Q_LIMIT):
            raise SchemaError(f"a value exceeds ±{Q_LIMIT} steps; use a coarser step")
        return q.astype(np.int64)

    def values(self, q: np.ndarray) -> np.ndarray:
        """Quantised ints → physical values rounded to each channel's decimals."""
        arr = np.asarray(q, dtype=np.float64) * self.steps
        for i, ch in enumerate(self.channels):
            arr[..., i] = np.round(arr[..., i], ch.decimals)
        return arr

    def format_row(self, q_row: np.ndarray) -> list[str]:
        """One quantised sample as strings at the schema's resolution (for CSV output)."""
        out = []
        for ch, v in zip(self.channels, q_row, strict=True):
            out.append(f"{int(v) * ch.step:.{ch.decimals}f}")
        return out

    def to_list(self) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self.channels]

    @classmethod
    def from_list(cls, items: list[dict[str, Any]], source: str = "schema") -> Schema:
        if not isinstance(items, list) or not items:
            raise SchemaError(f"{source}: needs at least one [[channel]] table")
        if len(items) > MAX_CHANNELS:
            raise SchemaError(f"{source}: at most {MAX_CHANNELS} channels, got {len(items)}")
        channels = []
        seen: set[str] = set()
        for i, item in enumerate(items):
            where = f"{source}: channel {i + 1}"
            if not isinstance(item, dict):
                raise SchemaError(f"{where}: must be a table")
            unknown = set(item) - {"name", "unit", "step", "min", "max", "device_class"}
            if unknown:
                raise SchemaError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
            name = item.get("name")
            if not isinstance(name, str) or not name or name == "time" or "," in name or not printable(name):
                raise SchemaError(
                    f"{where}: 'name' must be a non-empty string other than 'time', "
                    "without commas or control characters"
                )
            if name in seen:
                raise SchemaError(f"{where}: duplicate channel name {name!r}")
            seen.add(name)
            step = item.get("step")
            if (
                isinstance(step, bool)
                or not isinstance(step, int | float)
                or not step > 0
                or not math.isfinite(step)
            ):
                raise SchemaError(f"{where} ({name}): 'step' must be a positive number")
            unit = item.get("unit", "")
            if not isinstance(unit, str) or not printable(unit):
                raise SchemaError(f"{where} ({name}): 'unit' must be a string without control characters")
            bounds = []
            for key in ("min", "max"):
                v = item.get(key)
                if v is not None and (
                    isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
                ):
                    raise SchemaError(f"{where} ({name}): '{key}' must be a number")
                bounds.append(None if v is None else float(v))
            if bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]:
                raise SchemaError(f"{where} ({name}): 'min' is above 'max'")
            dc = item.get("device_class")
            if dc is not None and (not isinstance(dc, str) or not printable(dc)):
                raise SchemaError(
                    f"{where} ({name}): 'device_class' must be a string without control characters"
                )
            channels.append(Channel(name, unit, float(step), bounds[0], bounds[1], dc))
        return cls(tuple(channels))

    @classmethod
    def from_toml(cls, text: str, source: str = "schema") -> Schema:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SchemaError(f"{source}: not valid TOML ({exc})") from None
        return cls.from_list(doc.get("channel", []), source)

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SchemaError(f"cannot read schema {path}: {exc.strerror}") from None
        return cls.from_toml(text, str(path))

    def to_toml(self) -> str:
        lines = []
        for ch in self.channels:
            lines.append("[[channel]]")
            for key, value in ch.to_dict().items():
                lines.append(f"{key} = {json.dumps(value)}")
            lines.append("")
        return "\n".join(lines)
