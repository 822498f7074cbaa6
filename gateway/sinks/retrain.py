"""Retraining from the history: export, hold back the newest data, adapt, judge, install if better.

Shared by ``lora-gw model retrain`` and the service's ``[models] auto_retrain``. The candidate is
judged against the version it starts from on the newest ``holdout_pct`` of each node's series (data
neither was fitted to), and installed as the next version only when it is lossless, at least
``min_gain_pct`` smaller and its bitstream part fits a node (4096 bytes: the weight file without the
learned time structure for generation, which stays on the gateway and may add several KB). The old
version stays installed: frames are bound to their version's fingerprint, so nodes switch explicitly.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway import paths
from gateway.codec import ModelStore
from gateway.codec.adapt import adapt, score
from gateway.codec.errors import DataError, StoreError
from gateway.codec.model import Model
from gateway.codec.weights import bitstream_bytes, save, to_bytes
from gateway.sinks.history import HistoryReader
from gateway.sinks.history_export import Export, export

log = logging.getLogger(__name__)
MAX_WEIGHT_BYTES = 4096  # the bitstream part a node's firmware holds (model train's --max-bytes default)


@dataclass
class Outcome:
    init: Model
    candidate: Model
    result: dict[str, object]  # JSON-ready: the comparison and the decision

    @property
    def installed(self) -> bool:
        return bool(self.result["installed"])


def split_recent(exp: Export, holdout_pct: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each node's series: the oldest (100 − holdout) % to train on, the newest held back to judge."""
    spf = exp.model.samples_per_frame
    train, test = [], []
    for s in exp.series:
        keep = round(len(s.q) * (1 - holdout_pct / 100) / spf) * spf
        if keep:
            train.append(s.q[:keep])
        if len(s.q) - keep >= 1:
            test.append(s.q[keep:])
    q = np.concatenate(train) if train else np.zeros((0, len(exp.model.schema)), dtype=np.int64)
    return q, test


def retrain_model(
    state_dir: str | os.PathLike[str],
    model_id: int,
    version: int | None = None,
    *,
    days: float = 60.0,
    min_gain_pct: float = 3.0,
    holdout_pct: float = 20.0,
    dry_run: bool = False,
    activate: bool = True,
    progress: Callable[[str], None] | None = None,
    now_s: float | None = None,
) -> Outcome:
    """Train, judge and (if better) install the next version of ``model_id`` from its history."""
    say = progress or (lambda _msg: None)
    if not 0 < holdout_pct < 100:
        raise DataError("--holdout must be between 0 and 100 (percent)")
    if days <= 0:
        raise DataError("--days must be positive")
    store = ModelStore(state_dir)
    init = store.active(model_id) if version is None else store.load(model_id, version)
    if init is None:
        raise StoreError(f"model {model_id} is not installed (see lora-gw model list)")
    db = Path(state_dir) / paths.DB_NAME
    if not db.exists():
        raise DataError(f"no state database at {db}: the gateway has kept no history yet")
    since = int(((time.time() if now_s is None else now_s) - days * 86400) * 1000)
    say(f"exporting the last {days:g} days of model {model_id}'s history")
    with HistoryReader(db) as reader:
        exp = export(reader, store, model_id, since_ms=since, reference=init)
    q, test = split_recent(exp, holdout_pct)
    need = max(2 * init.samples_per_frame, 16)
    if len(q) < need or sum(len(t) for t in test) < init.samples_per_frame:
        raise DataError(
            f"only {exp.samples} samples of model {model_id} in the last {days:g} days of history;"
            f" need at least {need + init.samples_per_frame} to train and judge a new version"
        )
    t0 = time.perf_counter()
    candidate = adapt(init, q, version=max(store.versions(model_id)) + 1, progress=say)
    train_s = time.perf_counter() - t0
    say("scoring the candidate and the version it started from on the held-back data")
    before, after = score(init, test), score(candidate, test)
    a, c = float(before["bytes_per_sample"]), float(after["bytes_per_sample"])  # type: ignore[arg-type]
    gain = (a - c) / a * 100 if a else 0.0
    node_size = bitstream_bytes(candidate)
    size = len(to_bytes(candidate))  # after: the metadata in step with the whole file
    if not after["lossless"]:
        refused = "it is not lossless"
    elif node_size > MAX_WEIGHT_BYTES:
        refused = (
            f"its bitstream part ({node_size} bytes of the {size}-byte weight file) exceeds the"
            f" {MAX_WEIGHT_BYTES} bytes a node holds"
        )
    elif gain < min_gain_pct:
        refused = f"gain {gain:.2f} % < {min_gain_pct:g} %"
    else:
        refused = None
    result: dict[str, object] = {
        "model": init.key,
        "candidate": candidate.key,
        "train_samples": len(q),
        "test_samples": after["samples"],
        "nodes": len(exp.series),
        "skipped": exp.skipped,
        "train_s": round(train_s, 3),
        "before": before,
        "after": after,
        "gain_pct": round(gain, 2),
        "weight_file_bytes": size,
        "bitstream_bytes": node_size,
        "min_gain_pct": min_gain_pct,
        "better": refused is None,
        "refused": refused,
        "installed": False,
        "dry_run": dry_run,
    }
    if refused is None and not dry_run:
        candidate.meta["metrics"]["evaluation"] = {  # what drift is judged against (gateway.codec.drift)
            "bytes_per_sample": c,
            "samples": after["samples"],
            "against": init.key,
            "against_bytes_per_sample": a,
        }
        candidate.meta["training"]["source"] = f"history, {days:g} days"
        with tempfile.TemporaryDirectory(dir=store.root) as tmp:
            path = Path(tmp) / f"m{candidate.model_id}-v{candidate.version}.npz"
            save(candidate, path)
            store.install(path, activate=activate)
        result["installed"], result["active"] = True, activate
        log.info(
            "model %s learned from %d samples of history: %.4f → %.4f bytes/sample (%.1f %%), installed%s",
            candidate.key,
            len(q),
            a,
            c,
            gain,
            "" if activate else " inactive",
        )
    return Outcome(init, candidate, result)
