"""``[mqtt] retain_telemetry`` through a real core and Mosquitto, and the packet list with rejected packets
and their reason (what the status page shows)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.service.core import CoreSettings
from gateway.service.operations import Operations, OperationsSettings
from tests.service.core_util import GW, Running, encoders, register
from tests.service.helpers import Collector


@pytest.mark.parametrize("retain", [True, False])
def test_telemetry_is_retained_only_when_asked_and_rejects_are_listed(
    broker, tmp_path: Path, retain: bool
) -> None:
    db = tmp_path / "gateway.db"
    register(db, {0x21: "porch"})
    enc = encoders({0x21: "porch"})[0x21]
    ops = Operations(GW, f"lora/{GW}", OperationsSettings(), lambda nid: None)
    run = Running(
        db, broker.port, settings=CoreSettings(health_interval_s=0.2, retain_telemetry=retain), observer=ops
    )
    ops.attach(run.core)
    live = Collector(broker.port, f"lora/{GW}/#")
    try:
        run.submit(enc.encode_lpp([(1, "temperature", 6.8)]))
        run.submit(b"\x00garbage")
        assert live.wait_for(lambda: len(live.json_on("/telemetry")) == 1)
        assert live.wait_for(lambda: len(ops.monitor.packets()) == 2)
        newest, oldest = ops.monitor.packets()
        assert oldest["result"] == "accepted" and oldest["node"] == "00000021"
        assert newest["result"] not in ("accepted", "") and newest["rssi"] == -90.0
        assert live.json_on("/telemetry")[0]["readings"] == {"temperature": 6.8}
        later = Collector(broker.port, f"lora/{GW}/nodes/+/telemetry")
        try:
            got = later.wait_for(lambda: bool(later.messages), 0.5)
            assert got is retain
            if retain:
                assert later.messages[0][2] is True  # delivered as a retained message
        finally:
            later.close()
    finally:
        live.close()
        run.stop()
