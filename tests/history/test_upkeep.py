"""Issue 18 item 3: `[models] auto_retrain` stages candidates; activation stays the operator's decision."""

from __future__ import annotations

from gateway.codec import ModelStore, demo_model
from gateway.codec.csvio import read_csv
from gateway.service.config import parse_config
from gateway.service.upkeep import ModelUpkeep
from tests.history.util import DATA, HOUR_MS, T0_MS, Site, install_demo

NODE = 0x5A01


def test_auto_retrain_stages_an_inactive_version_once(tmp_path):
    old = install_demo(tmp_path)
    q = read_csv(DATA / "sandpoint-1800.csv", demo_model().schema)[0]
    site = Site(tmp_path, [NODE])
    try:
        site.stream(NODE, old, q[:1600], T0_MS)
    finally:
        site.close()
    now_s = (T0_MS + 1600 * HOUR_MS) / 1000
    cfg = parse_config({"models": {"auto_retrain": "weekly"}}).models
    upkeep = ModelUpkeep(
        tmp_path, cfg.auto_retrain, auto_activate=cfg.auto_activate, days=70, clock=lambda: now_s
    )
    [outcome] = upkeep.run_once()
    store = ModelStore(tmp_path)
    assert outcome.installed and store.versions(0) == [1, 2]
    assert store.active(0).version == 1  # staged: the operator activates it
    assert upkeep.run_once() == [] and store.versions(0) == [1, 2]  # no second candidate while one waits
    store.remove(0, 2)  # the operator rejected it; with auto_activate the next candidate goes live
    active = ModelUpkeep(tmp_path, "daily", auto_activate=True, days=70, clock=lambda: now_s)
    [outcome] = active.run_once()
    assert outcome.installed and store.active(0).version == 2 and store.versions(0) == [1, 2]
