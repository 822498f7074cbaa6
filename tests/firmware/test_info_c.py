"""The exported C node-info builder (lgw_build_info) is byte-identical to FrameEncoder.encode_info, in every
export, plain and sanitized; what the format cannot carry is refused as the Python encoder refuses it."""

from __future__ import annotations

import random

import pytest

from gateway.frames import FrameDecoder, FrameEncoder, Node, PayloadCodec, nodeinfo
from gateway.frames.nodeinfo import NO_MODEL, HeldModel, NodeInfo, held_model

from .test_export_c import E_SPACE, KEY, NODES

E_ARG = "E -1"


def request(node_id, key, fcnt, info: NodeInfo, fps: list[bytes], epoch=0, flags=0, cap=255) -> str:
    aid, aver = (NO_MODEL, 0) if info.active is None else info.active
    held = " ".join(f"{m.model_id} {m.version} {fp.hex()}" for m, fp in zip(info.models, fps, strict=True))
    return (
        f"I {node_id} {int(key is not None)} {key.hex() if key else '-'} {epoch} {fcnt} {flags} {cap}"
        f" {bytes(info.firmware).hex()} {aid} {aver} {len(info.models)} {held}"
    )


def python_frame(node_id, key, fcnt, info: NodeInfo, epoch=0, flags=0, cap=255) -> str:
    enc = FrameEncoder(node_id, key, key_epoch=epoch)
    frame = enc.encode_info(info, fcnt=fcnt, ack_requested=bool(flags & 0x04))
    return frame.hex() if len(frame) <= cap else E_SPACE


def vectors() -> list[tuple[str, str, tuple]]:
    rng = random.Random(18)
    out = []
    for n in (0, 1, 2, 7, 16):
        for node_id, key in NODES:
            for epoch, flags in ((0, 0), (3, 0x04)):
                fps = [rng.randbytes(8) for _ in range(n)]
                models = tuple(held_model(rng.randrange(16), rng.randrange(0x10000), fp) for fp in fps)
                active = None if n == 0 else (models[0].model_id, models[0].version)
                info = NodeInfo((rng.randrange(256), rng.randrange(256), rng.randrange(256)), active, models)
                fcnt = rng.choice([0, 1, 0xFFFF, 0x10000, 0xFFFF_FFFF])
                out.append(
                    (
                        request(node_id, key, fcnt, info, fps, epoch, flags),
                        python_frame(node_id, key, fcnt, info, epoch, flags),
                        (node_id, key, info, epoch, fcnt),
                    )
                )
    # the docs' vectors 16 and 17 (docs/frame-format.md)
    fps = [bytes.fromhex("a1b2c3d4e5f60718"), bytes.fromhex("0102030405060708")]
    docs = NodeInfo((1, 2, 0), (3, 9), (held_model(3, 9, fps[0]), held_model(3, 10, fps[1])))
    out.append(
        (request(5, None, 3, docs, fps), "00050300020001020003090002030900a1b2c3d4030a0001020304f52d", ())
    )
    out.append((request(0x2A, KEY, 4, docs, fps), python_frame(0x2A, KEY, 4, docs), ()))
    # a frame one byte larger than the buffer
    size = len(FrameEncoder(5).encode_info(docs, fcnt=1))
    out.append((request(5, None, 1, docs, fps, cap=size - 1), E_SPACE, ()))
    out.append((request(5, None, 1, docs, fps, cap=size), python_frame(5, None, 1, docs), ()))
    return out


REFUSED = [
    NodeInfo((1, 0, 0), None, (HeldModel(16, 1, bytes(4)),)),  # model id above 15
    NodeInfo((1, 0, 0), None, (HeldModel(1, 0x10000, bytes(4)),)),  # version above 65535
    NodeInfo((1, 0, 0), (16, 1), ()),  # active id neither 0..15 nor 0xff
    NodeInfo((1, 0, 0), (1, 0x10000), ()),
    NodeInfo((1, 0, 0), None, tuple(HeldModel(1, v, bytes(4)) for v in range(17))),  # 17 models
]


@pytest.mark.parametrize("export", ["lpp", "demo", "full"])
@pytest.mark.parametrize("sanitized", [False, True])
def test_c_info_frames_match_python_and_decode(export, sanitized, harnesses) -> None:
    vs = vectors()
    refused = [request(5, None, 0, info, [bytes(8)] * len(info.models)) for info in REFUSED]
    null_fp = request(5, None, 0, NodeInfo((1, 0, 0), None, (HeldModel(1, 1, bytes(4)),)), [bytes(8)])
    lines = [v[0] for v in vs] + refused + [null_fp.replace(" 0000000000000000", " -")]
    # lgw_build_frame_payload frames a node-info payload made elsewhere (codec 0x02), nothing above it
    body = nodeinfo.encode(NodeInfo((1, 2, 0), None, ()))
    lines += [f"P 5 0 - 0 9 0 2 255 {body.hex()}", f"P 5 0 - 0 9 0 3 255 {body.hex()}"]
    got = harnesses[(export, sanitized)].run(lines)
    assert got[: len(vs)] == [v[1] for v in vs]
    assert got[len(vs) : -2] == [E_ARG] * (len(REFUSED) + 1)
    assert got[-2:] == [FrameEncoder(5).encode(body, codec=PayloadCodec.INFO, fcnt=9).hex(), E_ARG]
    for info in REFUSED:  # the Python encoder refuses the same
        with pytest.raises(ValueError):
            nodeinfo.encode(info)
    for (_, _, meta), frame in zip(vs, got, strict=False):
        if not meta:
            continue
        node_id, key, info, epoch, fcnt = meta
        dec = FrameDecoder([Node(node_id, "n", key=key, key_epoch=epoch, next_fcnt=fcnt)])
        decoded = dec.decode(bytes.fromhex(frame))
        assert nodeinfo.parse(decoded.payload) == info


@pytest.mark.parametrize("export", ["demo", "grid", "full"])
def test_c_info_of_the_exported_model_names_its_fingerprint(export, datasets, harnesses) -> None:
    """{LGW_MODEL_ID, LGW_MODEL_VERSION, LGW_MODEL_FP}: what the gateway checks a set-model against."""
    model, _ = datasets[export]
    (got,) = harnesses[(export, False)].run([f"J 0x1234 1 {KEY.hex()} 7"])
    if model.version > 0xFFFF:  # "full" is version 2^32 - 1: not switchable by the 16-bit command
        assert got == E_ARG
        return
    held = held_model(model.model_id, model.version, model.fingerprint)
    info = NodeInfo((1, 0, 0), (model.model_id, model.version), (held,))
    assert got == FrameEncoder(0x1234, KEY).encode_info(info, fcnt=7).hex()
