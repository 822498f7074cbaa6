"""``lora-gw nodes …`` and ``lora-gw decode …`` through the real CLI entry point and a real state dir."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gateway.cli import main as cli
from gateway.frames import FrameEncoder, NodeRegistry, PayloadCodec

KEY_HEX = "000102030405060708090a0b0c0d0e0f"


def test_commands_are_registered() -> None:
    assert {"gateway.cli.nodes", "gateway.cli.decode"} <= set(cli.COMMAND_MODULES)


def test_nodes_add_list_show_remove(run) -> None:
    code, out, _ = run("nodes", "add", "0x1234", "--name", "garden", "--key", KEY_HEX, "--model", "3",
                       "--interval", "60", "--location", "52.1,4.3")  # fmt: skip
    assert code == 0 and "garden" in out and KEY_HEX not in out and "hidden" in out
    assert (
        run("nodes", "add", "7", "--format", "radiohead", "--radiohead-address", "9", "--payload", "raw")[0]
        == 0
    )
    code, out, _ = run("nodes", "list")
    assert code == 0 and "garden" in out and "node-7" in out and KEY_HEX not in out
    code, out, _ = run("nodes", "list", "--json")
    listed = json.loads(out)
    assert [n["node_id"] for n in listed] == [7, 0x1234] and all("key" not in n for n in listed)
    assert listed[1]["location"] == [52.1, 4.3] and listed[1]["secured"] and listed[0]["payload"] == "raw"
    code, out, _ = run("nodes", "show", "garden", "--json", "--show-keys")
    assert json.loads(out)["key"] == KEY_HEX
    code, out, _ = run("nodes", "show", "4660", "--show-keys")
    assert KEY_HEX in out
    assert run("nodes", "remove", "garden")[0] == 0
    code, _, err = run("nodes", "show", "garden")
    assert code == 2 and err.startswith("lora-gw: no node garden")


def test_generated_key_is_stored_and_hidden(run) -> None:
    code, out, _ = run("nodes", "add", "5", "--generate-key", "--json")
    assert code == 0 and "key" not in json.loads(out) and json.loads(out)["secured"]
    with NodeRegistry.open(run.state) as registry:
        key = registry.get(5).key
    assert key is not None and len(key) == 16
    assert key.hex() not in out


def test_nodes_errors_are_one_line(run) -> None:
    run("nodes", "add", "5")
    code, _, err = run("nodes", "add", "5")
    assert code == 2 and err.strip() == "lora-gw: node 5 (0x00000005) is already registered"
    key_file = run.state.parent / "node.key"
    key_file.write_text(KEY_HEX)
    key_file.chmod(0o600)
    code, _, err = run("nodes", "add", "6", "--format", "lpp", "--key-file", str(key_file))
    assert code == 2 and "only format 'frame'" in err and err.count("\n") == 1
    with pytest.raises(SystemExit):
        run("nodes", "add", "6", "--key", "abcd")


def test_reset_counter(run) -> None:
    run("nodes", "add", "5")
    code, out, _ = run("nodes", "reset-counter", "5", "--next", "42")
    assert code == 0 and "→ 42" in out
    assert json.loads(run("nodes", "show", "5", "--json")[1])["next_fcnt"] == 42


def test_database_file_is_private(run) -> None:
    run("nodes", "add", "5")
    mode = (run.state / "gateway.db").stat().st_mode
    assert mode & 0o077 == 0


def test_decode_lpp(run) -> None:
    code, out, _ = run("decode", "03 67 01 10 05 67 00 FF", "--codec", "lpp", "--json")
    assert code == 0
    assert json.loads(out)["values"] == [
        {"channel": 3, "type": "temperature", "value": 27.2, "unit": "°C"},
        {"channel": 5, "type": "temperature", "value": 25.5, "unit": "°C"},
    ]
    code, out, _ = run("decode", "0167FFD7", "--codec", "lpp")
    assert code == 0 and "-4.1 °C" in out
    assert not run.state.exists()  # decoding alone creates no state


def test_decode_frames_with_and_without_registry(run) -> None:
    data = FrameEncoder(5).encode_lpp([(3, "temperature", 27.2)])
    code, out, _ = run(
        "decode", data.hex(), "--codec", "frame", "--json"
    )  # unregistered open frame: CRC only
    frame = json.loads(out)
    assert code == 0 and frame["node_id"] == 5 and frame["values"][0]["value"] == 27.2
    assert frame["fcnt"] == 0 and frame["frame_type"] == "telemetry" and frame["counter"] == "new"
    run("nodes", "add", "0x01020304", "--key", KEY_HEX)
    sealed = FrameEncoder(0x01020304, bytes.fromhex(KEY_HEX)).encode_lpp([(1, "humidity", 40)])
    code, out, _ = run("decode", sealed.hex(), "--json")
    frame = json.loads(out)
    assert frame["encrypted"] and frame["values"][0] == {
        "channel": 1,
        "type": "humidity",
        "value": 40.0,
        "unit": "%",
    }
    code, _, err = run("decode", (sealed[:-1] + bytes([sealed[-1] ^ 1])).hex())
    assert code == 2 and "MIC mismatch" in err


def test_decode_model_frame_without_its_model_is_refused(run) -> None:
    data = FrameEncoder(9).encode(
        b"\x12\x34", codec=PayloadCodec.MODEL, model_id=2, model_version=5, fingerprint=bytes(8)
    )
    code, _, err = run("decode", data.hex(), "--codec", "frame")
    assert code == 2 and "unknown_model" not in err and "lora-gw model install" in err
    assert len(err.strip().splitlines()) == 1


def test_decode_model_frame_with_the_installed_model(run, tmp_path) -> None:
    """Issue 12: samples with physical values per channel, units once; the same candidate logic as
    the service (the installed version whose fingerprint the CRC verifies under)."""
    from gateway.codec import demo_model, save_weights

    model = demo_model()
    path = tmp_path / "demo.npz"
    save_weights(model, path)
    assert run("model", "install", str(path))[0] == 0
    q = model.generate(model.samples_per_frame, np.random.default_rng(4))
    data = FrameEncoder(9).encode_model(model, q)
    out = json.loads(run("decode", data.hex(), "--json")[1])
    assert (out["model_id"], out["model_version"]) == (model.model_id, model.version)
    expect = model.values(q)
    names = [ch.name for ch in model.schema.channels]
    assert len(out["samples"]) == len(q)
    assert [[s[n] for n in names] for s in out["samples"]] == expect.tolist()
    assert out["units"] == {ch.name: ch.unit for ch in model.schema.channels}
    code, text, _ = run("decode", data.hex())
    assert code == 0 and f"{names[0]}={out['samples'][0][names[0]]}" in text
    # Another model with the same id and version mod 8 (different weights): refused, not garbage.
    other = FrameEncoder(9).encode(
        model.encode(q), codec=PayloadCodec.MODEL, model_id=model.model_id, model_version=model.version + 8,
        fingerprint=bytes(8),
    )  # fmt: skip
    code, _, err = run("decode", other.hex())
    assert code == 2 and "every installed version" in err and f"v{model.version}" in err


def test_decode_radiohead(run) -> None:
    code, out, _ = run("decode", "ff0307000167ffd7", "--codec", "radiohead", "--json")
    result = json.loads(out)
    assert code == 0 and result["radiohead"] == {"to": 255, "from": 3, "id": 7, "flags": 0}
    assert result["values"][0]["value"] == -4.1
    run("nodes", "add", "70", "--format", "radiohead", "--radiohead-address", "3", "--payload", "raw")
    result = json.loads(run("decode", "ff0307000167ffd7", "--codec", "radiohead", "--json")[1])
    assert result["node_id"] == 70 and result["values"][0]["value"] == "0167ffd7"


def test_decode_bad_input(run) -> None:
    code, _, err = run("decode", "xyz")
    assert code == 2 and "not a hex string" in err
    code, _, err = run("decode", "0367", "--codec", "lpp")
    assert code == 2 and "truncated" in err
    code, _, err = run("decode", "00", "--node", "nobody")
    assert code == 2 and "no node nobody" in err
