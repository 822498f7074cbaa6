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


# Modules of the optional features: a service with them off must not load them (peak RSS, README).
# [downlink] is on by default (docs/downlink.md), the others are off.
OPTIONAL = {
    "homeassistant": ("gateway.sinks.homeassistant",),
    "http": ("gateway.web", "gateway.web.server", "gateway.web.metrics", "prometheus_client"),
    # (not gateway.frames.downlink: the emulated nodes check the gateway's downlinks with it)
    "downlink": ("gateway.downlink", "gateway.downlink.manager", "gateway.service.downlink"),
    "auto_retrain": ("gateway.service.upkeep", "gateway.sinks.retrain", "gateway.sinks.history_export"),
}

def clean_env() -> dict[str, str]:
    """The environment for a service subprocess, without what other tests may have left in it
    (LORA_GW_* overrides, a systemd notify socket)."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("LORA_GW_") and k != "NOTIFY_SOCKET"}
    return {**env, "PYTHONPATH": str(PKG.parent)}


RUN_SERVICE = r"""
import json, sys, threading, time
from gateway.service.app import Gateway
from gateway.service.config import load_config

gw = Gateway(load_config(sys.argv[1]))

def stop_when_published():
    deadline = time.monotonic() + 8
    while gw.core.published < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    gw.request_stop()

threading.Thread(target=stop_when_published, daemon=True).start()
gw.run()
print(json.dumps({"published": gw.core.published, "modules": sorted(sys.modules)}))
"""


def run_service(tmp_path: Path, extra: str) -> tuple[int, set[str]]:
    """A real service (emulated radio, the broker at 127.0.0.1:1883) in a fresh interpreter, stopped once
    it has published 3 frames: what it published and every module it had loaded."""
    import json
    import subprocess
    import sys
    import uuid

    gw_id = f"layers-{uuid.uuid4().hex[:8]}"
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(
        f'[gateway]\nid = "{gw_id}"\nstate_dir = "{state}"\n'
        '[radio]\nbackend = "emulator"\n[radio.emulator]\nnodes = 2\ninterval_s = 0.5\nspeed = 20.0\n'
        f'[mqtt]\nurl = "mqtt://127.0.0.1:1883"\ntopic_prefix = "lora-test"\n{extra}'
    )
    out = subprocess.run(
        [sys.executable, "-c", RUN_SERVICE, str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PKG.parent,
        env=clean_env(),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.splitlines()[-1])
    return result["published"], set(result["modules"])


def test_a_service_with_the_optional_features_off_does_not_import_them(tmp_path: Path) -> None:
    published, modules = run_service(tmp_path, "[downlink]\nenabled = false\n")
    assert published >= 3  # it ran the whole pipeline: radio → frames → outbox → MQTT
    for feature, names in OPTIONAL.items():
        loaded = sorted(set(names) & modules)
        assert not loaded, f"{feature} is off but {loaded} were imported"


def test_the_same_service_with_the_features_on_imports_them(tmp_path: Path) -> None:
    """The check above can fail: with every feature on, their modules are loaded."""
    from tests.service.conftest import free_port

    port = free_port()
    extra = (
        f'[homeassistant]\nenabled = true\n[http]\nlisten = "127.0.0.1:{port}"\n'
        '[models]\nauto_retrain = "weekly"\n'  # and [downlink], on by default
    )
    published, modules = run_service(tmp_path, extra)
    assert published >= 3
    for feature, names in OPTIONAL.items():
        assert names[0] in modules, f"{feature} is on but {names[0]} was not imported"


RUN_ON_A_CHIP = r"""
import json, sys, threading, time
import gateway.service.radio as service_radio
from gateway.frames import FrameEncoder, Node
from gateway.radio.sim import RadioSim
from gateway.service.app import Gateway
from gateway.service.config import load_config

sim = None

def open_emulated_sx1276(radio):  # the real driver on the register-level emulator instead of spidev
    global sim
    sim = RadioSim(nodes=1, config=service_radio.lora_config(radio), speed=1.0)
    sim.gateway.begin(receive=True)
    return sim.gateway

service_radio.open_sx1276 = open_emulated_sx1276
gw = Gateway(load_config(sys.argv[1]))
gw.registry.add(Node(node_id=0x77, name="lpp-node"))

def node_then_stop():
    enc = FrameEncoder(0x77)
    deadline = time.monotonic() + 8
    while gw.core.published < 3 and time.monotonic() < deadline:
        sim.nodes[0].send(enc.encode_lpp([(1, "temperature", 21.5)]))
        time.sleep(0.1)
    gw.request_stop()

threading.Thread(target=node_then_stop, daemon=True).start()
gw.run()
print(json.dumps({"published": gw.core.published, "modules": sorted(sys.modules)}))
"""


def test_a_service_on_a_chip_without_a_learned_model_never_imports_numpy(tmp_path: Path) -> None:
    """``[radio] backend = "sx1276"`` with the default sections (downlink on, the rest off), LPP frames,
    no model installed: numpy (16 MB of the service's memory) and the codec's model code stay unloaded."""
    import json
    import subprocess
    import sys
    import uuid

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(
        f'[gateway]\nid = "layers-{uuid.uuid4().hex[:8]}"\nstate_dir = "{state}"\n'
        '[radio]\nbackend = "sx1276"\n'
        '[mqtt]\nurl = "mqtt://127.0.0.1:1883"\ntopic_prefix = "lora-test"\n'
    )
    out = subprocess.run(
        [sys.executable, "-c", RUN_ON_A_CHIP, str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PKG.parent,
        env=clean_env(),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.splitlines()[-1])
    modules = set(result["modules"])
    assert result["published"] >= 3
    assert "gateway.service.downlink" in modules  # on by default
    loaded = sorted(m for m in modules if m == "numpy" or m.startswith(("numpy.", "gateway.codec.model")))
    assert not loaded, loaded
