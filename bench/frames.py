"""Frame-layer benchmark: decode-and-verify rate, and a fuzzer for every decoder.

    python bench/frames.py --json            # open_frames_per_s, secured_frames_per_s (one core)
    python bench/frames.py --fuzz 1000000    # N random and mutated inputs per decoder: inputs, crashes

A crash is any exception other than the project's own error type leaving a decoder.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.errors import GatewayError
from gateway.frames import lpp, radiohead
from gateway.frames.decoder import FrameDecoder
from gateway.frames.encoder import FrameEncoder
from gateway.frames.registry import Node, NodeRegistry
from gateway.frames.types import NodeFormat, PayloadCodec

# A 5-channel weather reading in Cayenne LPP (19 bytes, as in the codec reference note).
WEATHER = [(1, "temperature", 21.5), (2, "humidity", 60.5), (3, "barometer", 1013.2), (4, "illuminance", 320),
           (5, "voltage", 3.31)]  # fmt: skip


def _key(node_id: int) -> bytes:
    return node_id.to_bytes(4, "little") * 4


# Model frames: a 19-byte payload bound to model 3 version 9; versions 17 and 1 installed beside it,
# so the decoder tries three candidates (newest first) and the right one last-but-one.
MODEL_PAYLOAD = bytes(range(19))
MODEL_CANDIDATES = [(17, b"\x17" * 8), (9, b"\x09" * 8), (1, b"\x01" * 8)]


def _rate(
    nodes: list[Node], secured: bool, frames_per_node: int, repeats: int, model: bool = False
) -> tuple[float, int]:
    """Best-of-``repeats`` frames/s for decode + accept of fresh frames (each one new)."""
    best = 0.0
    size = 0
    fp = MODEL_CANDIDATES[1][1]

    def make(e: FrameEncoder) -> bytes:
        if model:
            return e.encode(
                MODEL_PAYLOAD, codec=PayloadCodec.MODEL, model_id=3, model_version=9, fingerprint=fp
            )
        return e.encode_lpp(WEATHER)

    for _ in range(repeats):
        decoder = FrameDecoder(nodes, models=lambda mid, v8: MODEL_CANDIDATES)
        encoders = [FrameEncoder(n.node_id, _key(n.node_id) if secured else None) for n in nodes]
        stream = [make(e) for _ in range(frames_per_node) for e in encoders]
        size = len(stream[0])
        decode, accept = decoder.decode, decoder.accept
        start = time.perf_counter()
        for data in stream:
            accept(decode(data))
        best = max(best, len(stream) / (time.perf_counter() - start))
    return best, size


def throughput(frames_per_node: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, NodeRegistry(Path(tmp) / "gateway.db") as registry:
        for i in range(100):
            registry.add(Node(0x1000 + i, f"open-{i}"))
            registry.add(Node(0x20000 + i, f"sec-{i}", key=_key(0x20000 + i)))
        nodes = registry.nodes()
    open_nodes = [n for n in nodes if not n.secured]
    sec_nodes = [n for n in nodes if n.secured]
    open_rate, open_size = _rate(open_nodes, False, frames_per_node, repeats)
    sec_rate, sec_size = _rate(sec_nodes, True, frames_per_node, repeats)
    open_model, _ = _rate(open_nodes, False, frames_per_node, repeats, model=True)
    sec_model, _ = _rate(sec_nodes, True, frames_per_node, repeats, model=True)
    return {
        "open_frames_per_s": round(open_rate),
        "secured_frames_per_s": round(sec_rate),
        # learned-model frames, the check bound to the fingerprint, the second of three candidates
        "open_model_frames_per_s": round(open_model),
        "secured_model_frames_per_s": round(sec_model),
        "open_frame_bytes": open_size,
        "secured_frame_bytes": sec_size,
        "payload": "Cayenne LPP, 5 readings (19 bytes), decoded to values",
        "nodes": len(open_nodes),
        "frames_per_run": frames_per_node * len(open_nodes),
        "python": platform.python_version(),
    }


# -- fuzzing -------------------------------------------------------------------------------------------

FUZZ_NODES = [
    Node(5, "open-5"),
    Node(0x1234, "open-1234"),
    Node(0x01020304, "sec-01020304", key=_key(0x01020304)),
    Node(0x2A, "sec-2a", key=_key(0x2A)),
    Node(70, "rh-lpp", format=NodeFormat.RADIOHEAD, radiohead_address=3),
    Node(71, "rh-raw", format=NodeFormat.RADIOHEAD, radiohead_address=4, payload=PayloadCodec.RAW),
    Node(80, "bare-lpp", format=NodeFormat.LPP),
]


# Installed learned models as the decoder sees them: model 3 in versions 9 and 1 (both 1 mod 8).
FUZZ_FINGERPRINTS = {9: bytes.fromhex("0011223344556677"), 1: bytes.fromhex("8899aabbccddeeff")}


def _fuzz_models(model_id: int, version_mod8: int) -> list[tuple[int, bytes]]:
    if model_id != 3:
        return []
    return [(v, fp) for v, fp in sorted(FUZZ_FINGERPRINTS.items(), reverse=True) if v % 8 == version_mod8]


def _seeds(rng: random.Random) -> list[bytes]:
    seeds: list[bytes] = []
    for node in FUZZ_NODES[:4]:
        enc = FrameEncoder(node.node_id, node.key)
        seeds.append(enc.encode_lpp(WEATHER))
        seeds.append(enc.encode(rng.randbytes(12)))
        for version, fp in FUZZ_FINGERPRINTS.items():
            seeds.append(
                enc.encode(rng.randbytes(20), codec=PayloadCodec.MODEL, model_id=3, model_version=version,
                           fingerprint=fp)
            )  # fmt: skip
        seeds.append(enc.encode(b"", ack_requested=True))
    seeds.append(lpp.encode(WEATHER))
    seeds.append(lpp.encode([(0, "gps", {"latitude": 52.1, "longitude": 4.3, "altitude": 12.5})]))
    seeds.append(radiohead.build(0xFF, 3, lpp.encode(WEATHER), ident=9))
    seeds.append(radiohead.build(1, 4, rng.randbytes(8), ident=2, flags=0x40))
    seeds.append(radiohead.build(1, 3, b"!", flags=0x80))
    return seeds


def _mutate(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(7)
        if op == 0 and data:  # flip bits
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(len(data))
                data[i] ^= 1 << rng.randrange(8)
        elif op == 1 and data:  # replace a byte with an interesting value
            data[rng.randrange(len(data))] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2:  # truncate
            del data[rng.randrange(len(data) + 1) :]
        elif op == 3:  # extend
            data += rng.randbytes(rng.randint(1, 300 if rng.random() < 0.05 else 8))
        elif op == 4 and data:  # header byte
            data[0] = rng.randrange(256)
        elif op == 5 and len(data) > 3:  # counter bytes
            i = rng.randrange(1, len(data) - 1)
            data[i : i + 2] = rng.randbytes(2)
        elif op == 6 and data:  # delete a span
            i = rng.randrange(len(data))
            del data[i : i + rng.randint(1, 4)]
    return bytes(data)


def _inputs(rng: random.Random, seeds: list[bytes], n: int):
    for _ in range(n):
        if rng.random() < 0.3:
            yield rng.randbytes(rng.choice((0, 1, 2, 3, 4, 5, 8, 12, 20, 40, 64, 255, 256)))
        else:
            yield _mutate(rng, rng.choice(seeds))


def fuzz(n: int, seed: int = 1, show: int = 3) -> dict:
    rng = random.Random(seed)
    seeds = _seeds(rng)
    decoder = FrameDecoder(FUZZ_NODES, models=_fuzz_models)
    hinted = FrameDecoder(FUZZ_NODES, models=_fuzz_models)

    def classify(data: bytes) -> None:
        frame = decoder.decode(data)
        if rng.random() < 0.5:  # move counters so that duplicate/replay/gap paths are reached too
            decoder.accept(frame)

    def with_hint(data: bytes) -> None:
        hinted.decode(data, node_hint=FUZZ_NODES[rng.randrange(len(FUZZ_NODES))].node_id)

    def inspect(data: bytes) -> None:
        decoder.inspect(data, rng.choice((None, NodeFormat.FRAME, NodeFormat.RADIOHEAD)))

    targets: dict[str, Callable[[bytes], object]] = {
        "frame": classify,
        "frame_hinted": with_hint,
        "frame_inspect": inspect,
        "lpp": lpp.decode,
        "radiohead": radiohead.parse,
    }
    report: dict = {}
    for name, target in targets.items():
        crashes = accepted = 0
        examples: list[str] = []
        for data in _inputs(rng, seeds, n):
            try:
                target(data)
                accepted += 1
            except GatewayError:
                pass
            except Exception:
                crashes += 1
                if len(examples) < show:
                    examples.append(
                        f"{data.hex()}: {traceback.format_exc(limit=-1).strip().splitlines()[-1]}"
                    )
        report[name] = {"inputs": n, "crashes": crashes, "accepted": accepted, "examples": examples}
    return {
        "inputs": n,
        "crashes": sum(r["crashes"] for r in report.values()),
        "decoders": report,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--fuzz", type=int, metavar="N", help="fuzz every decoder with N inputs instead")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--frames", type=int, default=200, help="frames per node per run (100 nodes)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    result = fuzz(args.fuzz, args.seed) if args.fuzz is not None else throughput(args.frames, args.repeats)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 1 if result.get("crashes") else 0


if __name__ == "__main__":
    sys.exit(main())
