"""Counter resets (issue 10, item 2): a reset must neither re-open old frames to replay, nor let a replayed
old counter lock the restarted node out, nor reuse an AES-CTR keystream; a removed key is not re-added at
counter 0 unnoticed. Each test reproduces one of the failures seen before key epochs existed."""

from __future__ import annotations

import json
import sqlite3

import pytest

from gateway.frames import FrameDecoder, FrameEncoder, FrameError, Node, NodeRegistry
from gateway.frames.crypto import derive_keys
from gateway.frames.registry import RegistryError, key_fingerprint

from .conftest import KEY

NODE = 0x01020304


def reason_of(decoder: FrameDecoder, data: bytes) -> str:
    with pytest.raises(FrameError) as err:
        decoder.decode(data)
    return err.value.reason


@pytest.fixture
def sealed(registry: NodeRegistry) -> FrameDecoder:
    registry.add(Node(NODE, "sealed", key=KEY))
    return FrameDecoder(registry)


def _run_until(decoder: FrameDecoder, enc: FrameEncoder, count: int) -> list[bytes]:
    """The node sends ``count`` frames, all accepted; returns them as an eavesdropper recorded them."""
    sent = []
    for _ in range(count):
        data = enc.encode(b"reading")
        decoder.accept(decoder.decode(data))
        sent.append(data)
    return sent


def test_frames_captured_before_a_new_epoch_are_rejected(sealed: FrameDecoder, registry) -> None:
    captured = _run_until(sealed, FrameEncoder(NODE, KEY), 5)
    registry.reset_counter(NODE, 0, new_epoch=True)
    sealed.reload()
    for data in captured:
        assert reason_of(sealed, data) == "bad_mic"
    assert sealed.next_fcnt(NODE) == 0  # the rejected frames moved nothing


def test_restarted_node_is_accepted_after_an_old_high_counter_is_replayed(sealed, registry) -> None:
    captured = _run_until(sealed, FrameEncoder(NODE, KEY), 3)
    registry.reset_counter(NODE, 0, new_epoch=True)  # the node lost its counter
    sealed.reload()
    assert reason_of(sealed, captured[-1]) == "bad_mic"  # the attacker's replay of counter 2
    rebooted = FrameEncoder(NODE, KEY, key_epoch=1)
    first = sealed.decode(rebooted.encode(b"after reboot"))
    assert (first.fcnt, first.payload) == (0, b"after reboot")


def test_same_counter_in_two_epochs_has_two_keystreams() -> None:
    a, b = b"temperature=21.5", b"temperature=99.9"
    old = FrameEncoder(NODE, KEY, key_epoch=0).encode(a, fcnt=7)
    new = FrameEncoder(NODE, KEY, key_epoch=1).encode(b, fcnt=7)
    start, end = 8, 8 + len(a)  # header, 4-byte id, counter, codec byte; then the payload
    xor_ct = bytes(x ^ y for x, y in zip(old[start:end], new[start:end], strict=True))
    assert xor_ct != bytes(x ^ y for x, y in zip(a, b, strict=True))
    assert derive_keys(KEY, 0) != derive_keys(KEY, 1)


def test_reset_without_new_epoch_keeps_the_keys(sealed: FrameDecoder, registry) -> None:
    """``--next N``: the documented trade-off; frames from N on verify again (same epoch)."""
    captured = _run_until(sealed, FrameEncoder(NODE, KEY), 2)
    registry.reset_counter(NODE, 0)
    sealed.reload()
    assert sealed.decode(captured[0]).fcnt == 0


def test_new_epoch_rebuilds_the_running_decoder_keys(registry) -> None:
    now = [0.0]
    registry.add(Node(NODE, "sealed", key=KEY))
    decoder = FrameDecoder(registry, clock=lambda: now[0])
    _run_until(decoder, FrameEncoder(NODE, KEY), 2)
    registry.reset_counter(NODE, 0, new_epoch=True)  # from another process: the decoder re-reads on its own
    now[0] = 2.0
    frame = decoder.decode(FrameEncoder(NODE, KEY, key_epoch=1, next_fcnt=5).encode(b"x"))
    assert frame.fcnt == 5  # verified under the next epoch's keys: that (authentic) frame prompts the re-read


def test_next_epoch_frame_is_refused_until_the_operator_starts_it(registry) -> None:
    now = [0.0]
    registry.add(Node(NODE, "sealed", key=KEY))
    decoder = FrameDecoder(registry, clock=lambda: now[0])
    _run_until(decoder, FrameEncoder(NODE, KEY), 2)
    now[0] = 2.0
    with pytest.raises(FrameError, match=r"key epoch 1, but the registry is at 0.*--new-epoch") as err:
        decoder.decode(FrameEncoder(NODE, KEY, key_epoch=1).encode(b"x"))
    assert err.value.reason == "bad_mic" and decoder.next_fcnt(NODE) == 2
    assert registry.get(NODE).key_epoch == 0  # never advanced by a frame alone
    assert reason_of(decoder, FrameEncoder(NODE, KEY, key_epoch=2).encode(b"x")) == "bad_mic"


def test_remove_and_add_the_same_key_is_refused(registry: NodeRegistry) -> None:
    registry.add(Node(NODE, "sealed", key=KEY))
    registry.set_next_fcnt(NODE, 1234)
    registry.remove(NODE)
    with pytest.raises(RegistryError, match="next counter 1234, key epoch 0") as err:
        registry.add(Node(NODE, "again", key=KEY))
    assert err.value.reason == "key_reused"
    with pytest.raises(RegistryError, match="used by node"):
        registry.add(Node(99, "elsewhere", key=KEY))  # under another id too
    forced = registry.add(Node(NODE, "again", key=KEY), force=True)
    assert (forced.next_fcnt, forced.key_epoch) == (0, 1)
    assert registry.retired(KEY) is None


def test_the_registry_keeps_no_key_of_removed_nodes(registry: NodeRegistry) -> None:
    registry.add(Node(NODE, "sealed", key=KEY))
    registry.remove(NODE)
    rows = registry._db.execute("SELECT * FROM retired_keys").fetchall()
    assert len(rows) == 1 and rows[0][0] == key_fingerprint(KEY)
    assert not any(KEY.hex() in str(v) for v in rows[0])
    registry.add(Node(7, "other"))
    registry.remove(7)  # an open node has no key to remember
    assert len(registry._db.execute("SELECT * FROM retired_keys").fetchall()) == 1


def test_v1_registry_is_migrated_in_place(tmp_path) -> None:
    db = tmp_path / "gateway.db"
    with NodeRegistry(db) as reg:
        reg.add(Node(NODE, "sealed", key=KEY, next_fcnt=10))
    con = sqlite3.connect(db)
    with con:  # back to the v1 schema, as a registry written by the previous release
        con.execute("DROP TABLE retired_keys")
        con.execute("ALTER TABLE nodes DROP COLUMN key_epoch")
        con.execute("UPDATE schema_versions SET version = 1 WHERE component = 'nodes'")
    con.close()
    with NodeRegistry(db) as reg:
        node = reg.get(NODE)
        assert (node.next_fcnt, node.key_epoch) == (10, 0)  # epoch 0: the keys of v1, nodes keep working
        reg.remove(NODE)
        assert reg.retired(KEY) is not None


def test_cli_reset_counter_needs_an_explicit_choice(run) -> None:
    run("nodes", "add", "5", "--key", KEY.hex())
    with pytest.raises(SystemExit):
        run("nodes", "reset-counter", "5")
    code, out, _ = run("nodes", "reset-counter", "5", "--new-epoch")
    assert code == 0 and "key epoch 0 → 1" in out and "must derive its session keys with key epoch 1" in out
    shown = json.loads(run("nodes", "show", "5", "--json")[1])
    assert (shown["key_epoch"], shown["next_fcnt"]) == (1, 0)
    code, out, _ = run("nodes", "reset-counter", "5", "--next", "9")
    assert code == 0 and "key epoch 1 unchanged" in out and "counters 9 or higher" in out


def test_cli_new_epoch_refused_for_open_nodes(run) -> None:
    run("nodes", "add", "6")
    code, _, err = run("nodes", "reset-counter", "6", "--new-epoch")
    assert code == 2 and "--next N" in err


def test_cli_add_of_a_removed_key_needs_force(run) -> None:
    run("nodes", "add", "5", "--key", KEY.hex())
    run("nodes", "remove", "5")
    code, _, err = run("nodes", "add", "5", "--key", KEY.hex())
    assert code != 0 and "--force" in err
    code, _, err = run("nodes", "add", "5", "--key", KEY.hex(), "--force")
    assert code == 0 and "key epoch 1" in err
