"""End to end through a real Mosquitto: commands from MQTT to simulated nodes, ``demo --confirmed``."""

from __future__ import annotations

import json
import threading
import time

from gateway.service import demo
from tests.service.helpers import Collector

BASE = f"lora/{demo.DEMO_GATEWAY_ID}/nodes"


def _statuses(sub: Collector, cmd_id: str) -> list[str]:
    return [m["status"] for m in sub.json_on("/command/status") if m.get("id") == cmd_id]


def test_commands_queued_sent_acknowledged_expired_rejected(broker):
    sub = Collector(broker.port, f"{BASE}/+/command/status")
    online = Collector(broker.port, f"lora/{demo.DEMO_GATEWAY_ID}/status")
    result: dict = {}
    stop = threading.Event()  # the demo runs until the checks are done, however slow the host is
    t = threading.Thread(
        target=lambda: result.update(
            demo.run_demo(
                nodes=2,
                seconds=None,
                broker_url=broker.url,
                on_reading=None,
                interval_s=2.0,
                speed=4.0,
                stop=stop,
            )
        ),
        daemon=True,
    )
    t.start()
    try:
        assert online.wait_for(
            lambda: b"online" in online.payloads(f"lora/{demo.DEMO_GATEWAY_ID}/status"), 15
        )
        pub = sub.client

        def send(node: str, body: object) -> None:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            pub.publish(f"{BASE}/{node}/command", raw, qos=1).wait_for_publish(5)

        # the gateway subscribes right after it says "online": commands may need a moment to be heard,
        # so a probe (for no node: refused) goes again until its refusal shows that they are
        deadline = time.monotonic() + 15
        while not _statuses(sub, "probe") and time.monotonic() < deadline:
            send("nobody", {"payload_hex": "01", "id": "probe"})
            sub.wait_for(lambda: bool(_statuses(sub, "probe")), 0.3)
        assert _statuses(sub, "probe") == ["rejected"], sub.messages
        time.sleep(0.3)  # as before the probe: the nodes' boot reports come before the commands
        send("sim-1", {"payload_hex": "010600", "confirm": True, "id": "interval"})  # every 6 s
        send("sim-2", {"payload_b64": "ARQA", "expires_s": 0.001, "id": "late"})
        send("sim-2", {"payload_b64": "AgMJAA==", "id": "model"})  # set model 3@9: not installed
        send("sim-1", b"{not json")
        send("nobody", {"payload_hex": "01", "id": "who"})
        send("sim-2", {"payload_hex": "00" * 49, "id": "big"})
        # the command sets sim-1's interval to 6 s (1.5 s here): an acknowledgement lost to a collision
        # costs another send and two intervals; the wait allows the worst a loaded host may see
        assert sub.wait_for(lambda: _statuses(sub, "interval")[-1:] == ["acknowledged"], 60), sub.messages
        fate = _statuses(sub, "interval")
        # queued → sent → acknowledged; "sent" again when the node missed it (a collision at the node)
        assert fate[0] == "queued" and fate[-1] == "acknowledged" and 1 <= fate.count("sent") == len(fate) - 2
        assert sub.wait_for(lambda: "expired" in _statuses(sub, "late"), 10)
        assert "sent" not in _statuses(sub, "late")  # an expired command is never sent
        rejected = {
            m.get("id"): m["reason"] for m in sub.json_on("/command/status") if m["status"] == "rejected"
        }
        assert rejected["who"] == "unknown node"
        assert rejected["big"].startswith("oversized")
        assert rejected["model"].startswith("model switch refused: node sim-2: model 3@9 is not installed")
        assert rejected[None].startswith("malformed")
    finally:
        stop.set()
        t.join(30)
        sub.close()
        online.close()
    assert result["frames_published"] > 0  # nothing else was affected


def test_demo_confirmed_acknowledges_what_it_accepted(broker):
    s = demo.run_demo(
        nodes=3,
        seconds=12.0,
        broker_url=broker.url,
        on_reading=None,
        interval_s=3.0,
        speed=2.0,  # 2× real time (6 s): at 4× a busy machine starves the nodes, which then miss every ack
        confirmed=True,
    )
    assert s["confirmed"] is True and s["ack_requests_accepted"] > 0
    # every request is accounted for: sent in its window, or counted as missed / over budget
    assert s["acks_sent"] + s["ack_windows_missed"] + s["tx_dropped_duty_cycle"] == s["ack_requests_accepted"]
    assert 0 < s["acks_received_by_nodes"] <= s["acks_sent"]
    assert s["tx_dropped_duty_cycle"] == 0 and 0 < s["duty_cycle_used_percent"] <= 1.0
    assert s["tx_max_start_error_ms"] <= 1.0
