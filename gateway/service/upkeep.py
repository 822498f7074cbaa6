"""``[models] auto_retrain``: stage new model versions from the history, daily or weekly.

Each round tries every installed model id with history (gateway.sinks.retrain, from its active
version); a better candidate is installed *inactive* unless ``auto_activate``: which version nodes
are provisioned with stays the operator's decision. A round that fails (too little history, a
corrupt file) is logged and costs nothing else. Runs in its own thread with its own connections.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gateway.codec import ModelStore
from gateway.errors import GatewayError
from gateway.sinks.retrain import Outcome, retrain_model

log = logging.getLogger(__name__)
PERIOD_S = {"daily": 86400.0, "weekly": 7 * 86400.0}


class ModelUpkeep:
    def __init__(
        self,
        state_dir: Path,
        schedule: str,
        *,
        auto_activate: bool = False,
        min_gain_pct: float = 3.0,
        days: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if schedule not in PERIOD_S:
            raise ValueError(f"auto_retrain {schedule!r} is not daily or weekly")
        self.state_dir, self.period_s = state_dir, PERIOD_S[schedule]
        self.auto_activate, self.min_gain_pct, self.days = auto_activate, min_gain_pct, days
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> list[Outcome]:
        """One round over every installed model id; returns the outcomes that were judged."""
        out = []
        store = ModelStore(self.state_dir)
        for mid in store.ids():
            active = store.active(mid)
            if active is not None and max(store.versions(mid)) > active.version:
                log.info("auto_retrain: model %d: a staged version awaits activation; not retraining", mid)
                continue
            try:
                o = retrain_model(
                    self.state_dir,
                    mid,
                    days=self.days,
                    min_gain_pct=self.min_gain_pct,
                    activate=self.auto_activate,
                    now_s=self._clock(),
                )
            except GatewayError as exc:
                log.info("auto_retrain: model %d: %s", mid, exc.message)
                continue
            out.append(o)
            if not o.installed:
                log.info(
                    "auto_retrain: model %s: candidate not installed (%s)", o.init.key, o.result["refused"]
                )
        return out

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="model-upkeep", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.run_once()
            except Exception:  # a bug here must not stop the gateway's reception
                log.exception("auto_retrain round failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
