"""``diag tx`` goes through the same duty-cycle ledger as every other transmission."""

from __future__ import annotations

import sqlite3

from gateway.diag import radio_tx
from gateway.diag.radio_rig import open_rig
from gateway.diag.setup import load
from gateway.downlink.dutycycle import ledger_for
from gateway.service.radio import lora_config


def test_diag_tx_stops_at_the_persisted_budget(tmp_path):
    cfg = load(None, True)
    payload = radio_tx.DEFAULT_PAYLOAD
    airtime = lora_config(cfg.radio).time_on_air_s(len(payload))
    plan = radio_tx.make_plan(cfg.radio, airtime, 5, 0.1, payload)
    assert plan.refusal is None  # five frames alone are within 1 %
    wall = [1_700_000_000.0]
    db = sqlite3.connect(tmp_path / "gateway.db", isolation_level=None)
    earlier = ledger_for(cfg.radio, db, lambda: wall[0])
    assert earlier.reserve(cfg.radio.frequency_hz, 36.0 - 2.5 * airtime, "ack").allowed  # acks spent the rest
    ledger = ledger_for(cfg.radio, db, lambda: wall[0])  # as a separate process would see it
    with open_rig(cfg, with_nodes=False, begin=True) as rig:
        result = radio_tx.transmit(rig, plan, ledger)
    assert len(result.sent) == 2 and "duty-cycle budget" in (result.error or "")
    assert ledger.dropped == 1
    assert ledger.used_s(cfg.radio.frequency_hz) <= 36.0
