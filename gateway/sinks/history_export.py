"""Decode the telemetry history into per-node series (and a CSV ``model train`` reads as it is).

Each row is decoded with exactly the installed version that verified it. Versions of one model id
whose schema differs from the reference (the active version's) cannot share a CSV: their rows are
skipped and counted, as are rows whose version is no longer installed or whose payload no longer
decodes. A frame carries N samples but one receive time: sample ``i`` of a frame received at ``T``
is dated ``T − (N − 1 − i)·dt``, with ``dt`` the node's median receive interval per sample between
consecutive counters (0 when the node has no two consecutive frames).
"""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from gateway.codec import CodecError, Model, ModelStore
from gateway.pipeline.render import utc_iso
from gateway.sinks.history import HistoryError, HistoryReader, HistoryRow

log = logging.getLogger(__name__)


@dataclass
class Series:
    """One node's decoded samples in time order (N × C quantised) with their times (Unix ms)."""

    node_id: int
    q: np.ndarray
    times_ms: np.ndarray


@dataclass
class Export:
    model: Model  # the reference version (schema, samples per frame)
    series: list[Series]
    frames: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def samples(self) -> int:
        return sum(len(s.q) for s in self.series)

    def concatenated(self) -> tuple[np.ndarray, list[str], list[int]]:
        """(samples × channels, ISO times, node ids) of every series, one node after the other."""
        c = len(self.model.schema)
        if not self.series:
            return np.zeros((0, c), dtype=np.int64), [], []
        q = np.concatenate([s.q for s in self.series])
        times = [utc_iso(int(t)) for s in self.series for t in s.times_ms]
        nodes = [s.node_id for s in self.series for _ in range(len(s.q))]
        return q, times, nodes


def choose_model(reader: HistoryReader, model_id: int | None) -> int:
    """The model id to export: the one named, or the only one the history holds."""
    if model_id is not None:
        return model_id
    ids = sorted({int(m["model"].split("@")[0]) for m in reader.stats()["models"]})  # type: ignore[union-attr,index]
    if not ids:
        raise HistoryError("history: no learned-model frames stored yet")
    if len(ids) > 1:
        raise HistoryError(f"history holds models {', '.join(map(str, ids))}; name one with --model")
    return ids[0]


def export(
    reader: HistoryReader,
    store: ModelStore,
    model_id: int,
    *,
    node_id: int | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    reference: Model | None = None,
) -> Export:
    """Decode the matching rows; ``reference`` (default: the active version) fixes the schema."""
    ref = reference or store.active(model_id)
    if ref is None:
        raise HistoryError(f"model {model_id} is not installed: its history cannot be decoded")
    out = Export(ref, [])
    models: dict[int, Model | None] = {}
    skipped: dict[str, int] = defaultdict(int)
    per_node: dict[int, list[tuple[HistoryRow, np.ndarray]]] = defaultdict(list)
    for row in reader.rows(node_id=node_id, model_id=model_id, since_ms=since_ms, until_ms=until_ms):
        if row.model_version not in models:
            models[row.model_version] = _version(store, model_id, row.model_version, ref, skipped)
        model = models[row.model_version]
        if model is None:
            skipped["version_unusable"] += 1
            continue
        try:
            q = model.decode(row.payload)
        except CodecError:
            skipped["payload_error"] += 1
            continue
        per_node[row.node_id].append((row, q))
        out.frames += 1
    for nid in sorted(per_node):
        out.series.append(_series(nid, per_node[nid]))
    out.skipped = dict(skipped)
    return out


def _version(
    store: ModelStore, model_id: int, version: int, ref: Model, skipped: dict[str, int]
) -> Model | None:
    try:
        model = store.load(model_id, version)
    except CodecError as exc:
        log.warning("history: model %d@%d cannot decode its rows: %s", model_id, version, exc.message)
        return None
    if model.schema.names != ref.schema.names or not np.array_equal(model.schema.steps, ref.schema.steps):
        log.warning(
            "history: model %d@%d has another schema than %s: its rows are skipped",
            model_id,
            version,
            ref.key,
        )
        return None
    return model


def _series(node_id: int, frames: list[tuple[HistoryRow, np.ndarray]]) -> Series:
    gaps = [
        (b[0].received_ms - a[0].received_ms) / max(1, len(b[1]))
        for a, b in itertools.pairwise(frames)
        if b[0].fcnt == a[0].fcnt + 1 and b[0].received_ms >= a[0].received_ms
    ]
    dt = float(np.median(gaps)) if gaps else 0.0
    times = [row.received_ms - (len(q) - 1 - i) * dt for row, q in frames for i in range(len(q))]
    q = np.concatenate([q for _, q in frames]) if frames else np.zeros((0, 0), dtype=np.int64)
    return Series(node_id, q.astype(np.int64), np.rint(np.array(times)).astype(np.int64))
