"""The node-info payload (codec byte 0x02): docs/frame-format.md vectors 16–18, and what is refused."""

from __future__ import annotations

import json

import pytest

from gateway.frames import FrameDecoder, FrameEncoder, FrameError, Node, PayloadCodec, nodeinfo
from gateway.frames.nodeinfo import HeldModel, NodeInfo
from gateway.frames.wire import crc16

KEY = bytes(range(16))
INFO = NodeInfo(
    (1, 2, 0),
    (3, 9),
    (HeldModel(3, 9, bytes.fromhex("a1b2c3d4")), HeldModel(3, 10, bytes.fromhex("01020304"))),
)
PAYLOAD = "00 010200 030900 02 030900a1b2c3d4 030a0001020304"
VECTOR_16 = "00 05 0300 02 " + PAYLOAD + " f52d"
VECTOR_17 = "08 2a 0400 02 54ff2da0443742999bb57ed095c4c40b9c4454f02f3e dbf136f7"
VECTOR_18 = "00 05 0000 02 00 000100 ff0000 00 c9ee"


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def test_vectors_match_the_encoder_and_decode_to_the_report() -> None:
    assert nodeinfo.encode(INFO) == _hex(PAYLOAD)
    assert FrameEncoder(5).encode_info(INFO, fcnt=3) == _hex(VECTOR_16)
    assert FrameEncoder(0x2A, KEY).encode_info(INFO, fcnt=4) == _hex(VECTOR_17)
    bare = NodeInfo((0, 1, 0), None, ())
    assert FrameEncoder(5).encode_info(bare, fcnt=0) == _hex(VECTOR_18)
    dec = FrameDecoder([Node(5, "open-5"), Node(0x2A, "sec-2a", key=KEY)])
    for vector, node_id, fcnt, info in (
        (VECTOR_16, 5, 3, INFO),
        (VECTOR_17, 0x2A, 4, INFO),
        (VECTOR_18, 5, 0, bare),
    ):
        frame = dec.decode(_hex(vector))
        assert (frame.node_id, frame.fcnt, frame.codec, frame.values) == (
            node_id,
            fcnt,
            PayloadCodec.INFO,
            None,
        )
        assert nodeinfo.parse(frame.payload) == info
    assert INFO.to_dict() == {
        "firmware": "1.2.0",
        "active_model": "3@9",
        "models": [
            {"model_id": 3, "version": 9, "fp_prefix": "a1b2c3d4"},
            {"model_id": 3, "version": 10, "fp_prefix": "01020304"},
        ],
    }


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ("00010200", "shorter than its 8-byte head"),
        ("00 010200 ff0000 01", "does not hold its 1 model entries"),
        ("00 010200 ff0000 00 00", "does not hold its 0 model entries"),  # layout 0: nothing appended
        ("00 010200 ff0000 11" + "00" * 7 * 17, "lists 17 models"),
        ("00 010200 100000 00", "active model id 16"),
        ("00 010200 ff0000 01 10010001020304", "lists model id 16"),
    ],
)
def test_malformed_reports_are_bad_payload_and_move_no_counter(payload: str, why: str) -> None:
    body = _hex("00 05 0000 02 " + payload)
    dec = FrameDecoder([Node(5, "open-5")])
    with pytest.raises(FrameError) as err:
        dec.decode(body + crc16(body).to_bytes(2, "little"))
    assert err.value.reason == "bad_payload" and why in err.value.message and "node 5" in err.value.message
    assert dec.next_fcnt(5) == 0


def test_a_later_layout_may_append_fields() -> None:
    """Layout 1 keeps layout 0's fields: this gateway reads them and ignores what follows."""
    payload = b"\x01" + _hex(PAYLOAD)[1:] + b"\xee\xee"
    assert nodeinfo.parse(payload).models == INFO.models


def test_encoder_refuses_what_the_format_cannot_carry() -> None:
    with pytest.raises(ValueError, match=r"0\.\.65535"):
        nodeinfo.encode(NodeInfo((1, 0, 0), None, (HeldModel(3, 70_000, bytes(4)),)))
    with pytest.raises(ValueError, match="at most 16"):
        nodeinfo.encode(NodeInfo((1, 0, 0), None, (HeldModel(1, 1, bytes(4)),) * 17))
    with pytest.raises(ValueError, match="prefix"):
        nodeinfo.encode(NodeInfo((1, 0, 0), None, (HeldModel(1, 1, bytes(8)),)))
    with pytest.raises(ValueError, match="firmware"):
        nodeinfo.encode(NodeInfo((1, 0, 256), None, ()))


def test_lora_gw_decode_shows_a_report(run) -> None:
    assert run("nodes", "add", "5")[0] == 0
    code, out, _ = run("decode", VECTOR_16.replace(" ", ""))
    assert code == 0 and "codec         info" in out
    assert "node info     firmware 1.2.0, sends with 3@9, holds 3@9 (a1b2c3d4), 3@10 (01020304)" in out
    code, out, _ = run("decode", VECTOR_16.replace(" ", ""), "--json")
    assert code == 0 and json.loads(out)["node_info"] == INFO.to_dict()
    bad = _hex("00 05 0400 02 00 010200 ff0000 01")
    code, _, err = run("decode", (bad + crc16(bad).to_bytes(2, "little")).hex())
    assert code == 2 and "does not hold its 1 model entries" in err
