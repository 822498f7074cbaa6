"""Installed weight files under ``<state_dir>/models``: install, activate, roll back, resolve.

Layout: ``m<ID>-v<VERSION>.npz`` per installed version and ``index.json`` holding, per model id,
the ``active`` version and the ``previous`` one (the backup a rollback returns to). Files and
the index are replaced atomically (temp file + fsync + rename). Versions are immutable: a second
install of the same id and version must carry the same SHA-256.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.codec.errors import StoreError, WeightsError
from gateway.paths import MODELS_DIR

if TYPE_CHECKING:
    from gateway.codec.model import Model

log = logging.getLogger(__name__)
_NAME = re.compile(r"^m(\d+)-v(\d+)\.npz$")


def _weights() -> Any:
    """gateway.codec.weights, imported when a weight file is read or written (it needs numpy)."""
    from gateway.codec import weights

    return weights


@dataclass(frozen=True, slots=True)
class Installed:
    model_id: int
    version: int
    path: Path
    size_bytes: int
    active: bool
    backup: bool


def parse_ref(text: str) -> tuple[int, int | None]:
    """``ID`` or ``ID@VERSION`` → (id, version or None)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:@\s*(\d+)\s*)?", text)
    if not m:
        raise StoreError(f"bad model reference {text!r}; expected ID or ID@VERSION")
    mid = int(m.group(1))
    if mid > 15:
        raise StoreError(f"model id {mid} is out of range 0..15")
    return mid, (int(m.group(2)) if m.group(2) else None)


class ModelStore:
    """The gateway's installed models. Safe to share between threads of one process."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.root = Path(state_dir) / MODELS_DIR
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        self._cache: dict[tuple[int, int], tuple[float, Model]] = {}

    # ------------------------------------------------------------------ index
    @property
    def _index_path(self) -> Path:
        return self.root / "index.json"

    def _index(self) -> dict[str, dict[str, int | None]]:
        try:
            doc = json.loads(self._index_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self._index_path}: unreadable ({exc})") from None
        return doc.get("models", {}) if isinstance(doc, dict) else {}

    def _save_index(self, index: dict[str, Any]) -> None:
        data = json.dumps({"models": index}, indent=1, sort_keys=True).encode()
        _weights().write_atomic(self._index_path, data, StoreError)

    def path(self, model_id: int, version: int) -> Path:
        return self.root / f"m{model_id}-v{version}.npz"

    def versions(self, model_id: int) -> list[int]:
        out = []
        for p in self.root.glob(f"m{model_id}-v*.npz"):
            m = _NAME.match(p.name)
            if m and int(m.group(1)) == model_id:
                out.append(int(m.group(2)))
        return sorted(out)

    def ids(self) -> list[int]:
        return sorted({int(m.group(1)) for p in self.root.glob("m*-v*.npz") if (m := _NAME.match(p.name))})

    # ------------------------------------------------------------------ lifecycle
    def install(self, source: str | os.PathLike[str], activate: bool = True) -> Model:
        """Verify a weight file and install it as the active version of its model id (``activate=False``:
        staged, installed beside the active version, which stays active)."""
        data = _weights().read_file(source, StoreError)
        model = _weights().from_bytes(data, str(source))
        with self._lock:
            dest = self.path(model.model_id, model.version)
            if dest.exists():
                old = _weights().load(dest)
                if old.meta.get("sha256") != model.meta.get("sha256"):
                    raise StoreError(
                        f"model {model.key} is already installed with different weights; "
                        "give the new file a higher version or remove the old one first"
                    )
            else:
                _weights().write_atomic(dest, data, StoreError)
            index = self._index()
            entry = index.get(str(model.model_id), {})
            if not activate and entry.get("active") is not None:
                pass  # staged: the index keeps its active and backup versions
            elif entry.get("active") != model.version:
                entry = {"active": model.version, "previous": entry.get("active")}
            index[str(model.model_id)] = entry
            self._save_index(index)
        log.info(
            "model %s installed%s (sha256 %s)",
            model.key,
            "" if activate else " (staged, not active)",
            model.meta["sha256"][:12],
        )
        return model

    def activate(self, model_id: int, version: int | None = None) -> int:
        with self._lock:
            versions = self.versions(model_id)
            if not versions:
                raise StoreError(f"model {model_id} is not installed")
            version = versions[-1] if version is None else version
            if version not in versions:
                raise StoreError(f"model {model_id}@{version} is not installed")
            _weights().load(self.path(model_id, version))  # refuse to activate a corrupt file
            index = self._index()
            entry = index.get(str(model_id), {})
            if entry.get("active") != version:
                index[str(model_id)] = {"active": version, "previous": entry.get("active")}
                self._save_index(index)
            return version

    def rollback(self, model_id: int) -> int:
        """Make the backup version active again (the current one becomes the backup)."""
        with self._lock:
            entry = self._index().get(str(model_id), {})
            prev = entry.get("previous")
            if prev is None or not self.path(model_id, prev).exists():
                raise StoreError(f"model {model_id} has no backup version to roll back to")
        return self.activate(model_id, prev)

    def remove(
        self,
        model_id: int,
        version: int | None = None,
        in_use: Mapping[tuple[int, int], Sequence[int]] | None = None,
        force: bool = False,
    ) -> list[int]:
        """Remove one version (or all of a model id); returns the versions removed.

        ``in_use`` maps (id, version) to the nodes still using it (the caller reads them from the
        state database): such a version is refused unless ``force``, because frames made with it —
        arriving, or waiting in the outbox or the history — decode only with exactly that version."""
        with self._lock:
            versions = self.versions(model_id)
            targets = versions if version is None else [v for v in versions if v == version]
            if not targets:
                ref = model_id if version is None else f"{model_id}@{version}"
                raise StoreError(f"model {ref} is not installed")
            busy = [(v, list((in_use or {}).get((model_id, v), ()))) for v in targets]
            busy = [(v, nodes) for v, nodes in busy if nodes]
            if busy and not force:
                v, nodes = busy[0]
                shown = ", ".join(f"{n:08x}" for n in sorted(nodes)[:5]) + (" …" if len(nodes) > 5 else "")
                raise StoreError(
                    f"model {model_id}@{v} is in use by {len(nodes)} node(s) ({shown}): their frames decode"
                    " only with it; switch them to another version first, or --force to remove it anyway"
                )
            for v, nodes in busy:
                log.warning("model %d@%d removed by force while %d node(s) use it", model_id, v, len(nodes))
            for v in targets:
                self.path(model_id, v).unlink(missing_ok=True)
                self._cache.pop((model_id, v), None)
            index = self._index()
            left = [v for v in versions if v not in targets]
            entry = index.get(str(model_id), {})
            if not left:
                index.pop(str(model_id), None)
            else:
                active = entry.get("active") if entry.get("active") in left else left[-1]
                previous = entry.get("previous") if entry.get("previous") in left else None
                index[str(model_id)] = {
                    "active": active,
                    "previous": previous if previous != active else None,
                }
            self._save_index(index)
            return targets

    # ------------------------------------------------------------------ queries
    def load(self, model_id: int, version: int) -> Model:
        """Load (cached by file mtime) one installed version; WeightsError if it is corrupt."""
        path = self.path(model_id, version)
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            raise StoreError(f"model {model_id}@{version} is not installed") from None
        cached = self._cache.get((model_id, version))
        if cached and cached[0] == mtime:
            return cached[1]
        model = _weights().load(path)
        if (model.model_id, model.version) != (model_id, version):
            raise WeightsError(f"{path}: file holds model {model.key}")
        self._cache[(model_id, version)] = (mtime, model)
        return model

    def active(self, model_id: int) -> Model | None:
        entry = self._index().get(str(model_id), {})
        version = entry.get("active")
        return None if version is None else self.load(model_id, int(version))

    def resolve(self, model_id: int, version_mod8: int) -> Model | None:
        """The installed model a frame names: the active version if it matches, else the newest match.

        Returns None when no installed version matches (the caller keeps the frame raw) or the
        matching file fails verification (logged).
        """
        if not 0 <= model_id <= 15 or not 0 <= version_mod8 <= 7:
            return None
        entry = self._index().get(str(model_id), {})
        matches = [v for v in self.versions(model_id) if v % 8 == version_mod8]
        if not matches:
            return None
        active = entry.get("active")
        version = active if active in matches else matches[-1]
        try:
            return self.load(model_id, int(version))
        except (WeightsError, StoreError) as exc:
            log.warning("model %s@%s unusable: %s", model_id, version, exc.message)
            return None

    def installed(self) -> list[Installed]:
        index = self._index()
        out = []
        for mid in self.ids():
            entry = index.get(str(mid), {})
            for v in self.versions(mid):
                p = self.path(mid, v)
                out.append(
                    Installed(
                        mid, v, p, p.stat().st_size, entry.get("active") == v, entry.get("previous") == v
                    )
                )
        return out

    def verify(
        self, model_id: int | None = None, version: int | None = None
    ) -> list[tuple[Installed, str | None]]:
        """Re-check every (or the named) installed file; returns (entry, error message or None)."""
        out = []
        for item in self.installed():
            if model_id is not None and item.model_id != model_id:
                continue
            if version is not None and item.version != version:
                continue
            try:
                _weights().load(item.path)
                out.append((item, None))
            except WeightsError as exc:
                out.append((item, exc.message))
        return out
