"""The airtime budget: sub-bands, the sliding hour, persistence across restarts, dwell time."""

from __future__ import annotations

import sqlite3

from gateway.downlink.commands import DownlinkStore
from gateway.downlink.dutycycle import WINDOW_S, DutyCycleLedger, sub_bands
from gateway.downlink.manager import Downlinker, DownlinkSettings, Uplink
from gateway.downlink.scheduler import TxQueue
from gateway.frames import Node, NodeRegistry
from gateway.radio.sx1276 import LoRaConfig


class Wall:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def _db(tmp_path):
    return sqlite3.connect(tmp_path / "gateway.db", isolation_level=None)


def test_eu868_sub_bands_and_sliding_hour(tmp_path):
    wall = Wall()
    led = DutyCycleLedger(_db(tmp_path), sub_bands("EU868", 100.0), wall)
    assert led.band_of(868_100_000).duty_percent == 1.0
    assert led.band_of(868_900_000).duty_percent == 0.1
    assert led.band_of(869_525_000).duty_percent == 10.0
    assert led.band_of(868_650_000) is None  # between sub-bands: never transmitted
    assert not led.reserve(868_650_000, 0.01).allowed
    # 1 % of an hour = 36 s at 868.1 MHz
    for _ in range(36):
        assert led.reserve(868_100_000, 1.0).allowed
        wall.t += 10
    v = led.reserve(868_100_000, 0.05)
    assert not v.allowed and v.reason == "duty_cycle"
    assert led.reserve(869_525_000, 1.0).allowed  # another sub-band has its own budget
    wall.t += WINDOW_S - 350  # the first entries leave the window
    assert led.reserve(868_100_000, 1.0).allowed
    assert led.dropped == 2


def test_budget_survives_restart(tmp_path):
    wall = Wall()
    led = DutyCycleLedger(_db(tmp_path), sub_bands("EU868", 1.0), wall)
    assert led.reserve(868_900_000, 3.5).allowed  # 0.1 % = 3.6 s per hour
    led2 = DutyCycleLedger(_db(tmp_path), sub_bands("EU868", 1.0), wall)  # a restart
    assert led2.used_s(868_900_000) == 3.5
    assert not led2.reserve(868_900_000, 0.2).allowed
    wall.t += WINDOW_S + 1
    led3 = DutyCycleLedger(_db(tmp_path), sub_bands("EU868", 1.0), wall)
    assert led3.reserve(868_900_000, 0.2).allowed


def test_us915_dwell_time(tmp_path):
    led = DutyCycleLedger(_db(tmp_path), sub_bands("US915", 100.0), Wall())
    assert led.reserve(915_000_000, 0.39).allowed
    v = led.reserve(915_000_000, 0.41)
    assert not v.allowed and v.reason == "dwell_time"


def test_flood_of_confirmed_frames_stays_within_budget(tmp_path):
    """Every uplink asks for an ack, far more than 1 % allows: total airtime stays ≤ 36 s per hour and
    every refused acknowledgement is counted, none queued for the radio."""
    wall = Wall()
    reg = NodeRegistry(tmp_path / "gateway.db")
    reg.add(Node(node_id=0x10, name="flood"))
    db = _db(tmp_path)
    led = DutyCycleLedger(db, sub_bands("EU868", 1.0), wall)
    cfg = LoRaConfig(sf=12)
    q = TxQueue()
    dl = Downlinker(reg.get, DownlinkStore(db, wall), led, q, cfg.time_on_air_s, DownlinkSettings())
    n = 200
    for i in range(n):
        dl.committed(Uplink(0x10, i, True, 1000.0 + i * 5, 868_100_000))
        wall.t += 5
    toa = cfg.time_on_air_s(9)
    assert len(q) * toa <= 36.0 + 1e-9
    assert len(q) + led.dropped == n and led.dropped > 0
    assert len(q) == int(36.0 // toa)
    reg.close()
