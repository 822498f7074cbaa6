"""Which configuration a diagnostic command checks: the service's, as ``lora-gw run`` would load it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gateway.service.config import Config, EmulatorSection, load_config

SERVICE_CONFIG = Path("/etc/lora-gw/gateway.toml")
EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "config" / "gateway.toml"


def default_config_path() -> Path:
    """The installed service's config, else the example config shipped with the source."""
    return SERVICE_CONFIG if SERVICE_CONFIG.exists() else EXAMPLE_CONFIG


def load(path: str | None, emulate: bool = False) -> Config:
    """Load (and validate) the config; ``emulate`` swaps the radio for the default emulated scenario."""
    cfg = load_config(path or default_config_path())
    if emulate:
        radio = dataclasses.replace(cfg.radio, backend="emulator", emulator=EmulatorSection())
        cfg = dataclasses.replace(cfg, radio=radio)
    return cfg
