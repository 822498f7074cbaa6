"""Live per-model statistics the service publishes: bytes per sample and prediction error.

``error_ratio`` compares the live mean |residual| with the one measured at training time, so a
model that no longer fits its nodes shows as a ratio well above 1.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy only once a model frame is decoded (none without a learned model installed)
    import numpy as np

    from gateway.codec.model import Model


def _empty() -> np.ndarray:
    import numpy as np

    return np.zeros(0)


@dataclass
class _Acc:
    frames: int = 0
    samples: int = 0
    payload_bytes: int = 0
    abs_err: np.ndarray = field(default_factory=_empty)
    err_samples: int = 0
    trained: list[float] = field(default_factory=list)
    names: tuple[str, ...] = ()
    steps: np.ndarray = field(default_factory=_empty)


class CodecStats:
    """Thread-safe accumulators keyed by ``"ID@VERSION"``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._acc: dict[str, _Acc] = {}

    def observe(self, model: Model, payload: bytes, samples: np.ndarray) -> None:
        """Account one decoded frame (its payload and the N × C quantised samples)."""
        import numpy as np

        x = np.asarray(samples, dtype=np.int64)
        resid = np.abs(model.residuals(x[None])[0, 1:]) if len(x) > 1 else np.zeros((0, x.shape[1]))
        with self._lock:
            acc = self._acc.get(model.key)
            if acc is None:
                metrics = model.meta.get("metrics", {}) or {}
                acc = _Acc(
                    abs_err=np.zeros(x.shape[1]),
                    trained=list(metrics.get("mean_abs_residual", [])),
                    names=model.schema.names,
                    steps=model.schema.steps,
                )
                self._acc[model.key] = acc
            acc.frames += 1
            acc.samples += len(x)
            acc.payload_bytes += len(payload)
            acc.abs_err += resid.sum(axis=0)
            acc.err_samples += len(resid)

    def snapshot(self) -> dict[str, dict[str, object]]:
        """JSON-ready stats per model."""
        out: dict[str, dict[str, object]] = {}
        with self._lock:
            for key, acc in self._acc.items():
                import numpy as np  # a model has decoded frames, so numpy is loaded already

                mean = acc.abs_err / acc.err_samples if acc.err_samples else np.zeros_like(acc.abs_err)
                entry: dict[str, object] = {
                    "frames": acc.frames,
                    "samples": acc.samples,
                    "bytes_per_sample": round(acc.payload_bytes / acc.samples, 4) if acc.samples else None,
                    "mean_abs_error": {
                        n: round(float(m * s), 6) for n, m, s in zip(acc.names, mean, acc.steps, strict=True)
                    },
                }
                if acc.trained and acc.err_samples and len(acc.trained) == len(mean):
                    trained = np.maximum(np.array(acc.trained), 1e-9)
                    entry["error_ratio"] = round(float((mean / trained).mean()), 4)
                out[key] = entry
        return out
