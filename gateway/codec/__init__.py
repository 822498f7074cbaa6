"""Learned telemetry codec: channel schema, integer model, training, weight files, model store.

Public API: :class:`Schema`, :class:`Model` (``encode``/``decode``/``values``/``generate``/
``fill_gap``), :func:`train`, :func:`load_weights`/:func:`save_weights`, :class:`ModelStore`
(``resolve(model_id, version_mod8)``), :class:`CodecStats` and :func:`demo_model`.
"""

from __future__ import annotations

import importlib
from importlib import resources
from typing import TYPE_CHECKING, Any

from gateway.codec.errors import CodecError, DataError, PayloadError, SchemaError, StoreError, WeightsError
from gateway.codec.stats import CodecStats
from gateway.codec.store import ModelStore

if TYPE_CHECKING:
    from gateway.codec.model import MAX_SAMPLES, Model
    from gateway.codec.schema import Channel, Schema
    from gateway.codec.train import train, train_to_size
    from gateway.codec.weights import load as load_weights
    from gateway.codec.weights import save as save_weights

# Loaded on first use (PEP 562): they need numpy, which a gateway with no learned model installed never
# loads (about 16 MB of its memory; README, "pipeline: peak RSS").
_LAZY = {
    "MAX_SAMPLES": ("gateway.codec.model", "MAX_SAMPLES"),
    "Model": ("gateway.codec.model", "Model"),
    "Channel": ("gateway.codec.schema", "Channel"),
    "Schema": ("gateway.codec.schema", "Schema"),
    "train": ("gateway.codec.train", "train"),
    "train_to_size": ("gateway.codec.train", "train_to_size"),
    "load_weights": ("gateway.codec.weights", "load"),
    "save_weights": ("gateway.codec.weights", "save"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


DEMO_MODEL = "weather-demo.npz"


def demo_model() -> Model:
    """The small weather model shipped in the package (trained on Greensboro TMY3 data)."""
    data = resources.files("gateway.codec").joinpath("data", DEMO_MODEL).read_bytes()
    from gateway.codec.weights import from_bytes

    return from_bytes(data, DEMO_MODEL)


__all__ = [
    "MAX_SAMPLES",
    "Channel",
    "CodecError",
    "CodecStats",
    "DataError",
    "Model",
    "ModelStore",
    "PayloadError",
    "Schema",
    "SchemaError",
    "StoreError",
    "WeightsError",
    "demo_model",
    "load_weights",
    "save_weights",
    "train",
    "train_to_size",
]
