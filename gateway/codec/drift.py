"""Drift: a model whose live bytes per sample stay well above the figure it was judged by.

Each model version's reference is the bytes/sample measured when it was evaluated on data it was not
fitted to (``metrics.evaluation``, written by ``model retrain``), else the figure on its training data
(``metrics.bytes_per_sample``). Live traffic is summed in one-hour buckets of the monitor's clock;
drift is a degradation of at least ``threshold_pct`` over the last ``window_s`` of traffic, judged
only once the model has been seen for a whole window (and ``min_samples`` samples): a burst of odd
frames is not drift, a season is. It is reported once (a WARNING naming the suggested
``lora-gw model retrain`` command, and ``drift`` in the stats topic), and armed again only after the
degradation fell below half the threshold.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.codec.stats import CodecStats

if TYPE_CHECKING:  # no numpy until a model frame is decoded (gateway.codec.stats)
    import numpy as np

    from gateway.codec.model import Model

log = logging.getLogger(__name__)
BUCKET_S = 3600.0


@dataclass(frozen=True, slots=True)
class DriftSettings:
    threshold_pct: float = 10.0
    window_s: float = 24 * 3600.0
    min_samples: int = 256


def reference_bytes_per_sample(model: Model) -> float | None:
    metrics = model.meta.get("metrics") or {}
    evaluation = metrics.get("evaluation") or {}
    ref = evaluation.get("bytes_per_sample", metrics.get("bytes_per_sample"))
    return float(ref) if isinstance(ref, int | float) and ref > 0 else None


@dataclass
class _Track:
    model_id: int
    reference: float | None
    first_s: float
    buckets: deque = field(default_factory=deque)  # (bucket index, payload bytes, samples)
    drifting: bool = False
    reports: int = 0
    since_s: float | None = None
    last: dict[str, object] = field(default_factory=dict)
    reported: dict[str, object] = field(default_factory=dict)  # the window that was reported


class DriftMonitor:
    """Per ``ID@VERSION``: live bytes/sample over a sliding window against the model's reference."""

    def __init__(self, settings: DriftSettings | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings or DriftSettings()
        self._clock = clock
        self._lock = threading.Lock()
        self._tracks: dict[str, _Track] = {}

    def observe(self, model: Model, payload_bytes: int, samples: int) -> None:
        now = self._clock()
        b = int(now // BUCKET_S)
        with self._lock:
            tr = self._tracks.get(model.key)
            if tr is None:
                tr = self._tracks[model.key] = _Track(model.model_id, reference_bytes_per_sample(model), now)
            if tr.buckets and tr.buckets[-1][0] == b:
                _, nbytes, nsamples = tr.buckets[-1]
                tr.buckets[-1] = (b, nbytes + payload_bytes, nsamples + samples)
            else:
                tr.buckets.append((b, payload_bytes, samples))
            self._judge(model.key, tr, now)

    def _judge(self, key: str, tr: _Track, now: float) -> None:
        s = self.settings
        oldest = int((now - s.window_s) // BUCKET_S) + 1
        while tr.buckets and tr.buckets[0][0] < oldest:
            tr.buckets.popleft()
        nbytes = sum(x[1] for x in tr.buckets)
        nsamples = sum(x[2] for x in tr.buckets)
        if tr.reference is None or not nsamples:
            return
        live = nbytes / nsamples
        degradation = (live / tr.reference - 1) * 100
        tr.last = {"live_bytes_per_sample": round(live, 4), "degradation_pct": round(degradation, 2)}
        judged = now - tr.first_s >= s.window_s and nsamples >= s.min_samples
        if not tr.drifting and judged and degradation >= s.threshold_pct:
            tr.drifting, tr.since_s = True, now
            tr.reports += 1
            tr.reported = {"live_bytes_per_sample": round(live, 4), "degradation_pct": round(degradation, 2)}
            log.warning(
                "model %s drift: %.4f bytes/sample over the last %.0f h of traffic, %.1f %% above the %.4f"
                " it was evaluated at; suggested: lora-gw model retrain %d",
                key,
                live,
                s.window_s / 3600,
                degradation,
                tr.reference,
                tr.model_id,
            )
        elif tr.drifting and degradation < s.threshold_pct / 2:
            tr.drifting, tr.since_s = False, None
            log.info("model %s: drift over (%.1f %% above its evaluation figure)", key, degradation)

    def snapshot(self) -> dict[str, dict[str, object]]:
        """JSON-ready drift state per model key (the stats topic's ``models.<key>.drift``)."""
        with self._lock:
            return {
                key: {
                    "drift": tr.drifting,
                    "reports": tr.reports,
                    "reference_bytes_per_sample": tr.reference,
                    "threshold_pct": self.settings.threshold_pct,
                    "window_h": round(self.settings.window_s / 3600, 3),
                    **tr.last,
                    **(
                        {
                            "since": _iso(tr.since_s),
                            "reported": tr.reported,
                            "suggested": f"lora-gw model retrain {tr.model_id}",
                        }
                        if tr.drifting and tr.since_s is not None
                        else {}
                    ),
                }
                for key, tr in self._tracks.items()
            }

    def drifting(self) -> list[str]:
        with self._lock:
            return [k for k, tr in self._tracks.items() if tr.drifting]


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class DriftingStats(CodecStats):
    """The live codec stats with drift judged on the same frames (what the service's renderer feeds)."""

    def __init__(self, monitor: DriftMonitor | None = None) -> None:
        super().__init__()
        self.drift = monitor or DriftMonitor()

    def observe(self, model: Model, payload: bytes, samples: np.ndarray) -> None:
        super().observe(model, payload, samples)
        self.drift.observe(model, len(payload), len(samples))

    def snapshot(self) -> dict[str, dict[str, object]]:
        out = super().snapshot()
        for key, state in self.drift.snapshot().items():
            out.setdefault(key, {})["drift"] = state
        return out
