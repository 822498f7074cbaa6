"""Issue 18 item 4: a model version nodes use is never removed by mistake; `model list` shows them."""

from __future__ import annotations

import json
import time

import pytest

from gateway.cli.main import main
from gateway.codec import ModelStore, demo_model
from gateway.codec.csvio import read_csv
from gateway.codec.errors import StoreError
from gateway.sinks.history import NodeModel, versions_in_use
from tests.history.util import DATA, Site, install_demo

A, B = 0x0A01, 0x0B02
DAY_MS = 86400_000


def test_versions_in_use_are_each_nodes_latest_and_recent_ones():
    uses = [
        NodeModel(A, 0, 1, 0, 10 * DAY_MS, 5),  # A moved from 1 to 2 long ago
        NodeModel(A, 0, 2, 10 * DAY_MS, 100 * DAY_MS, 5),
        NodeModel(B, 0, 1, 0, 95 * DAY_MS, 5),  # B still sent 1 five days ago, then 3
        NodeModel(B, 0, 3, 95 * DAY_MS, 99 * DAY_MS, 5),
    ]
    got = versions_in_use(uses, 100 * DAY_MS, 30 * 86400)
    assert got == {(0, 2): [A], (0, 1): [B], (0, 3): [B]}
    assert versions_in_use(uses, 100 * DAY_MS, 1 * 86400) == {(0, 2): [A], (0, 3): [B]}


def test_store_refuses_a_version_in_use_unless_forced(tmp_path):
    install_demo(tmp_path)
    store = ModelStore(tmp_path)
    with pytest.raises(StoreError, match=r"model 0@1 is in use by 1 node\(s\) \(00000a01\)"):
        store.remove(0, 1, {(0, 1): [A]})
    assert store.versions(0) == [1]
    assert store.remove(0, 1, {(0, 1): [A]}, force=True) == [1]


def test_model_remove_and_list_read_the_nodes_from_the_state_database(tmp_path, capsys):
    model = install_demo(tmp_path)
    q = read_csv(DATA / "sandpoint-1800.csv", demo_model().schema)[0]
    site = Site(tmp_path, [A, B])
    try:  # A sent frames in the last hours, B none
        site.stream(A, model, q[:64], int(time.time() * 1000) - 64 * 3_600_000)
    finally:
        site.close()
    state = ["--state-dir", str(tmp_path)]
    assert main([*state, "model", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["model_id"], r["version"], r["nodes"]) for r in rows] == [(0, 1, ["00000a01"])]
    assert main([*state, "model", "list"]) == 0
    assert "nodes: 1 (00000a01)" in capsys.readouterr().out
    assert main([*state, "model", "remove", "0@1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lora-gw: model 0@1 is in use by 1 node(s) (00000a01)") and err.count("\n") == 1
    assert ModelStore(tmp_path).versions(0) == [1]
    assert main([*state, "model", "remove", "0@1", "--force"]) == 0
    assert ModelStore(tmp_path).versions(0) == []
