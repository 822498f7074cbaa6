"""End to end through ``lora-gw run`` (emulated radio, real Mosquitto): the simulated nodes report their
firmware, the operator switches one with ``lora-gw nodes set-model``, the node acknowledges, and the
gateway then decodes its frames under the new version."""

from __future__ import annotations

import json
import signal

from gateway.cli import main as cli
from tests.downlink.test_set_model import version_2
from tests.history.util import install_demo
from tests.service.helpers import Collector
from tests.service.test_service import start, wait, write_config

BASE = "lora/gwt/nodes"


def test_operator_switches_a_reporting_node_and_its_frames_decode_under_the_new_version(
    tmp_path, broker, capsys
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    install_demo(state)
    version_2(state)  # installed before the start: the simulated firmware holds 0@1 and 0@2
    sub = Collector(broker.port, "lora/gwt/#")

    def lora_gw(*argv: str) -> tuple[int, str, str]:
        code = cli.main(["--state-dir", str(state), *argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    def reported(node: str) -> dict | None:
        code, out, _ = lora_gw("nodes", "show", node, "--json")
        return json.loads(out)["node_info"] if code == 0 else None

    log = tmp_path / "service.log"
    # 2x virtual time, not 4x or 8x: receive windows a loaded host (every core busy) still meets
    proc = start(write_config(tmp_path, broker.port, nodes=2, interval_s=2.0, speed=2.0), log=log)
    try:
        assert wait(lambda: reported("sim-1") is not None, 20), log.read_text()[-3000:]
        info = reported("sim-1")
        assert info["firmware"] == "1.0.0" and info["active_model"] == "0@1"
        assert [(m["model_id"], m["version"]) for m in info["models"]] == [(0, 1), (0, 2)]
        code, _, err = lora_gw("nodes", "set-model", "sim-1", "0@3")
        assert code == 2 and "model 0@3 is not installed on the gateway" in err
        version_2(state, 3)  # installed after the nodes' firmware was built: one they lack
        code, _, err = lora_gw("nodes", "set-model", "sim-1", "0@3", "--force")
        assert code == 2 and "reported holding 0@1, 0@2 (" in err and "not 0@3; refused" in err

        code, out, err = lora_gw("nodes", "set-model", "sim-1", "0@2", "--confirm")
        assert code == 0 and "set model 0@2 queued" in out, err

        def statuses() -> list[str]:
            return [m["status"] for m in sub.json_on("/sim-1/command/status") if m["id"] == "set-model-0@2"]

        assert sub.wait_for(lambda: "acknowledged" in statuses(), 40), (statuses(), log.read_text()[-3000:])
        assert statuses()[0] == "sent"

        def versions(node: str) -> set[int]:
            return {m["model_version"] for m in sub.json_on(f"/{node}/telemetry")}

        assert sub.wait_for(lambda: 2 in versions("sim-1"), 30), versions("sim-1")
        assert versions("sim-2") == {1}  # only the node told to switch did
        after = [m for m in sub.json_on("/sim-1/telemetry") if m["model_version"] == 2][-1]
        assert after["values"] and after["model_id"] == 0
        # the node reported again after switching: the gateway knows what it sends with now
        assert wait(lambda: (reported("sim-1") or {}).get("active_model") == "0@2", 10)
        code, out, _ = lora_gw("nodes", "show", "sim-1", "--json")
        assert [(c["id"], c["status"]) for c in json.loads(out)["commands"]] == [
            ("set-model-0@2", "acknowledged")
        ]
        # the stats topic shows each node's report where it shows the node
        assert sub.wait_for(
            lambda: any(
                (m["nodes"].get("sim-1") or {}).get("node_info", {}).get("active_model") == "0@2"
                for m in sub.json_on("lora/gwt/stats")
            ),
            10,
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()
