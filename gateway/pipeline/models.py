"""The installed learned models as the frame layer and the renderer see them.

A learned-model frame names its model by id and version modulo 8; its CRC/MIC covers the model's
fingerprint, so the frame decoder tries each installed version that matches (``candidates``, newest
first) and the frame carries the version whose check passed. The renderer then loads exactly that
version (``model``). The service and ``lora-gw decode`` share this class, so both pick the same
model for the same frame. Weight files are read and verified once per ``ttl_s``, not per frame.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.codec import CodecError, ModelStore

if TYPE_CHECKING:
    from gateway.codec import Model

log = logging.getLogger(__name__)


class InstalledModels:
    """A cached view of ``ModelStore(state_dir)``: a newly installed model is seen within ``ttl_s``."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        ttl_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = ModelStore(state_dir)
        self._ttl = ttl_s
        self._clock = clock
        self._cands: dict[tuple[int, int], tuple[float, list[tuple[int, bytes]]]] = {}
        self._models: dict[tuple[int, int], tuple[float, Model | None]] = {}

    def candidates(self, model_id: int, version_mod8: int) -> list[tuple[int, bytes]]:
        """(version, fingerprint) of every usable installed version matching, newest first."""
        now = self._clock()
        hit = self._cands.get((model_id, version_mod8))
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        out = []
        if 0 <= model_id <= 15 and 0 <= version_mod8 <= 7:
            for version in sorted(self._store.versions(model_id), reverse=True):
                if version % 8 == version_mod8:
                    model = self.model(model_id, version)
                    if model is not None:
                        out.append((version, model.fingerprint))
        self._cands[(model_id, version_mod8)] = (now, out)
        return out

    def model(self, model_id: int, version: int) -> Model | None:
        """Exactly this installed version (None if absent or unusable). A version below 8 stored by an
        older gateway (on-air version only) resolves through the store's mod-8 rule."""
        now = self._clock()
        hit = self._models.get((model_id, version))
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        model: Model | None = None
        try:
            if version in self._store.versions(model_id):
                model = self._store.load(model_id, version)
            elif 0 <= version <= 7:
                model = self._store.resolve(model_id, version)
        except CodecError as exc:
            log.warning("model %d@%d unusable: %s", model_id, version, exc.message)
        self._models[(model_id, version)] = (now, model)
        return model
