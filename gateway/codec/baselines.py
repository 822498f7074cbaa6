"""Reference coders the learned model is compared with (sizes only; they are not wire formats here).

- Cayenne LPP: 2 header bytes (channel, type) plus the type's value size per reading; the type
  comes from the channel's device_class (temperature 2 B, humidity 1 B, pressure 2 B, illuminance
  2 B, otherwise analog input 2 B). Consecutive channels of class ``accelerometer`` (or
  ``gyrometer``) share one three-axis reading of 6 value bytes.
- Sprintz-style: per frame, the first sample raw at 16 bits per channel, then delta + zigzag and,
  per block of 8 deltas and channel, a 4-bit width header plus width bits per delta; the frame is
  rounded up to whole bytes (so every frame decodes on its own).
"""

from __future__ import annotations

import numpy as np

from gateway.codec.schema import Schema

LPP_VALUE_BYTES = {
    "temperature": 2,
    "humidity": 1,
    "pressure": 2,
    "atmospheric_pressure": 2,
    "illuminance": 2,
    "irradiance": 2,
    "battery": 1,
    "voltage": 2,
    "current": 2,
    "power": 2,
    "distance": 4,
    "energy": 4,
    "frequency": 4,
}
SPRINTZ_BLOCK = 8
SPRINTZ_WIDTH_BITS = 4


def lpp_bytes_per_sample(schema: Schema) -> int:
    """Bytes one multichannel sample costs in Cayenne LPP (one reading per channel or axis triple)."""
    total = 0
    axes = 0
    for ch in schema.channels:
        if ch.device_class in ("accelerometer", "gyrometer"):
            if axes % 3 == 0:
                total += 2 + 6
            axes += 1
            continue
        axes = 0
        total += 2 + LPP_VALUE_BYTES.get(ch.device_class or "", 2)
    return total


def _zigzag(d: np.ndarray) -> np.ndarray:
    return np.where(d >= 0, 2 * d, -2 * d - 1)


def sprintz_frame_bytes(frame: np.ndarray) -> int:
    """Size of one frame (N × C quantised ints) under the Sprintz-style coder."""
    frame = np.asarray(frame, dtype=np.int64)
    n, c = frame.shape
    bits = 16 * c
    z = _zigzag(np.diff(frame, axis=0))
    for s in range(0, n - 1, SPRINTZ_BLOCK):
        block = z[s : s + SPRINTZ_BLOCK]
        widths = np.frexp(block.max(axis=0).astype(np.float64))[1]  # bit length of the largest delta
        bits += int((SPRINTZ_WIDTH_BITS + widths * len(block)).sum())
    return (bits + 7) // 8


def varint_frame_bytes(frame: np.ndarray) -> int:
    """Size of one frame as first sample raw (16 bits per channel) + zigzag LEB128 varint deltas."""
    frame = np.asarray(frame, dtype=np.int64)
    z = _zigzag(np.diff(frame, axis=0)).ravel()
    nbits = np.frexp(np.maximum(z, 1).astype(np.float64))[1]
    return 2 * frame.shape[1] + int(np.maximum(1, -(-nbits // 7)).sum())
