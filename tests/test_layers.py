"""Dependencies point down only (docs/architecture.md): checked on the import statements themselves."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "gateway"

# Layer order, lowest first. A module may import its own layer and those below it, never one above.
LAYERS = [
    *("errors", "paths", "statedb", "hw", "radio", "frames", "codec"),
    *("pipeline", "sinks", "web", "service", "diag", "cli"),
]


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "gateway" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            if node.module == "gateway":  # from gateway import paths
                found += [f"gateway.{a.name}" for a in node.names]
    return found


MODULES = sorted(p for p in PKG.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG.parent)))
def test_no_upward_import(path: Path) -> None:
    rel = path.relative_to(PKG.parent).with_suffix("")
    own = layer_of(".".join(rel.parts))
    if own is None:
        return  # gateway/__init__.py
    for target in imports(path):
        other = layer_of(target)
        if other is not None:
            assert LAYERS.index(other) <= LAYERS.index(own), f"{rel} ({own}) imports {target} ({other})"


def test_emulator_never_imports_the_driver() -> None:
    for name in ("emulator.py", "air.py"):
        assert "gateway.radio.sx1276" not in imports(PKG / "radio" / name)


PAHO_IMPORTERS = ("gateway/sinks/mqtt.py", "gateway/sinks/probe.py")  # the sink, and doctor's broker probe


def test_only_the_mqtt_sink_imports_paho_and_only_hw_imports_hardware_libraries() -> None:
    for path in MODULES:
        rel = path.relative_to(PKG.parent).as_posix()
        for target in imports(path):
            root = target.split(".")[0]
            if root == "paho":
                assert rel in PAHO_IMPORTERS, rel
            if root in ("spidev", "RPi", "gpiod"):
                assert rel.startswith("gateway/hw/"), rel
