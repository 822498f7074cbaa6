"""The C export is byte-identical to the Python encoders (tests/firmware/harness.c runs every vector)."""

from __future__ import annotations

import platform
import random
import re
import subprocess
from dataclasses import replace

import numpy as np
import pytest

from gateway.codec import Model, lattice
from gateway.codec.errors import CodecError
from gateway.frames import FrameDecoder, Node, lpp
from gateway.frames.crypto import derive_keys
from gateway.frames.encoder import FrameEncoder
from gateway.frames.types import FrameType, PayloadCodec

from . import cbuild
from .conftest import as_c_rows

KEY = bytes(range(16))
NODES = [(5, None), (0x01020304, KEY), (0x123456, None), (0xDEADBEEF, bytes(range(100, 116)))]
COUNTERS = [0xFFFF, 0x10000]  # across the 16-bit boundary, for every frame size
MORE_COUNTERS = [0, 1, 0x1FFFE, 0x2_0003, 0xFFFF_FFFF]
E_RANGE, E_SPACE = "E -2", "E -3"


def python_model_frame(model, node_id, key, fcnt, samples, epoch=0, ack=False) -> str:
    """What the gateway's own Python encoder sends for these samples (or the C error it maps to)."""
    try:
        payload = model.encode(samples)
    except CodecError:
        return E_RANGE
    enc = FrameEncoder(node_id, key, key_epoch=epoch)
    try:
        frame = enc.encode(
            payload,
            codec=PayloadCodec.MODEL,
            model_id=model.model_id,
            model_version=model.version,
            fingerprint=model.fingerprint,
            fcnt=fcnt,
            ack_requested=ack,
        )
    except ValueError:
        return E_SPACE
    return frame.hex()


def model_request(node_id, key, fcnt, samples, epoch=0, flags=0, cap=255) -> str:
    n = len(samples)
    return (
        f"M {node_id} {int(key is not None)} {key.hex() if key else '-'} {epoch} {fcnt} {flags} {cap} {n} "
        + as_c_rows(samples)
    )


def model_vectors(model, q) -> list[tuple[str, str, tuple]]:
    """(request, expected, (node id, key, fcnt, samples)) for every frame size, profile and counter."""
    rng = random.Random(12)
    out = []
    for n in range(1, 65):
        for node_id, key in NODES[:2]:
            for fcnt in COUNTERS:
                start = rng.randrange(0, len(q) - n)
                s = q[start : start + n]
                out.append(
                    (
                        model_request(node_id, key, fcnt, s),
                        python_model_frame(model, node_id, key, fcnt, s),
                        (node_id, key, fcnt, s),
                    )
                )
    for i, (node_id, key) in enumerate(NODES):
        for fcnt in MORE_COUNTERS:
            n = (7 * i + fcnt) % 64 + 1
            s = q[:n]
            out.append(
                (
                    model_request(node_id, key, fcnt, s),
                    python_model_frame(model, node_id, key, fcnt, s),
                    (node_id, key, fcnt, s),
                )
            )
    # Outliers and extremes: spikes, ±(2^30 − 1) (raw bits in several 16-bit chunks, 64-bit products).
    s = q[:16].copy()
    s[3, 0] += 40_000
    s[9, -1] = -(2**30) + 1
    s[10, -1] = 2**30 - 1
    s[11, 0] = -(2**30) + 1
    out.append((model_request(5, None, 9, s), python_model_frame(model, 5, None, 9, s), (5, None, 9, s)))
    first = q[:3].copy()  # first-sample escapes below and above the window, and a far outlier
    first[0, 0], first[0, -1] = -(2**30) + 1, 2**30 - 1
    first[0, 1] = first[0, 1] + 5000
    out.append(
        (model_request(7, None, 3, first), python_model_frame(model, 7, None, 3, first), (7, None, 3, first))
    )
    out.append(
        (model_request(0x2A, KEY, 9, s), python_model_frame(model, 0x2A, KEY, 9, s), (0x2A, KEY, 9, s))
    )
    return out


@pytest.mark.parametrize(
    "name",
    [
        "demo",
        "weather",
        "grid",
        "full",
        "pmode",
        "actw",
        "actw_modes",
        "vmap",
        "vmap_full",
        "vframe",
        "vframe_full",
    ],
)
def test_model_frames_are_byte_identical_to_python_and_decode_to_the_input(name, datasets, harnesses):
    model, q = datasets[name]
    if name == "grid":  # the export's jitter tables by lattice phase (bitstream revision 3) are in use
        assert np.any(model.params.jfreq != model.params.jfreq[:, :1])
    if name == "pmode":  # snapped predictions and the lattice-phase jitter (revision 4) are in use
        assert model.params.pmode.tolist() == [3, 1]
    if name == "actw":  # the trainer chose activity weights (revision 5) on the bursts
        assert np.tril(model.params.actw, -1).any()
    if name == "vmap":  # the trainer found both kinds of value lattice (revision 6), one channel plain
        assert sorted(model.params.vmap[:, 3].tolist()) == [lattice.NONE, lattice.FLOOR, lattice.TRUNC]
    if (
        name == "vframe"
    ):  # the trainer gave the current's stretches of even readings a frame flag (revision 7)
        assert model.params.vframe[0] != 0 and model.params.vmap[1, 3] == lattice.NONE
    vectors = model_vectors(model, q)
    got = harnesses[(name, False)].run([v[0] for v in vectors])
    expected = [v[1] for v in vectors]
    assert sum(e == E_SPACE for e in expected) < len(expected) // 2  # most vectors are real frames
    mismatches = [i for i, (g, e) in enumerate(zip(got, expected, strict=True)) if g != e]
    assert not mismatches, (
        f"{len(mismatches)} of {len(vectors)} differ, first: {vectors[mismatches[0]][0][:80]}"
    )

    # The gateway's decoder takes every C frame and gives back exactly the input samples.
    installed = _installed(model)
    decoded = 0
    for (_req, _exp, (node_id, key, fcnt, samples)), frame_hex in zip(vectors, got, strict=True):
        if frame_hex.startswith("E"):
            continue
        dec = FrameDecoder([Node(node_id, f"n{node_id}", key=key, next_fcnt=fcnt)], models=installed)
        frame = dec.decode(bytes.fromhex(frame_hex))
        assert (frame.fcnt, frame.codec, frame.model_id) == (fcnt, PayloadCodec.MODEL, model.model_id)
        assert frame.model_version == model.version  # the version whose fingerprint the check matched
        assert np.array_equal(model.decode(frame.payload), samples)
        decoded += 1
    assert decoded >= len(vectors) * 0.5


def _installed(model):
    def installed(model_id: int, mod8: int) -> list[tuple[int, bytes]]:
        return (
            [(model.version, model.fingerprint)]
            if (model_id, mod8) == (model.model_id, model.version % 8)
            else []
        )

    return installed


def lattice_frames(model, q) -> list[np.ndarray]:
    """Frames for a model with value lattices (revision 6): off-lattice readings (jitters 0 … G − 1
    by turns on each lattice channel, G − 1 on the first sample: G − 2 in all of its raw bits),
    readings at ±(2^30 − 1) on every channel at once, and readings around 0 (mode 2 truncates
    towards it)."""
    vm = model.params.vmap
    frames = []
    for c in np.flatnonzero(vm[:, 3] != lattice.NONE).tolist():
        s = q[:12].copy()
        row = vm[c : c + 1]
        k = lattice.index(s[:, c : c + 1], row)[0]
        gap = lattice.gap(k, row)[:, 0]
        jitter = np.arange(12) % gap
        jitter[0] = gap[0] - 1
        s[:, c] = lattice.value(k, row)[:, 0] + jitter
        frames.append(s)
    edge = q[:8].copy()
    edge[0], edge[1], edge[2], edge[3] = 2**30 - 1, -(2**30) + 1, -(2**30) + 1, 2**30 - 1
    edge[5] = np.where(np.arange(len(vm)) % 2, 2**30 - 1, -(2**30) + 1)
    frames.append(edge)
    frames.append(edge[::-1].copy())
    zero = np.tile(np.arange(-6, 6)[:, None], (1, len(vm)))  # -6 … 5 on every channel
    frames += [zero, zero[::-1].copy(), q[:1].copy(), edge[:1].copy()]
    return frames


@pytest.mark.parametrize("name", ["vmap", "vmap_full", "vframe", "vframe_full"])
def test_lattice_jitters_and_range_edges_are_byte_identical_and_decode(name, datasets, harnesses):
    """Bitstream revision 6: off-lattice readings (the jitter after the last sample), readings at
    ±(2^30 − 1) and around 0 code in C exactly as in Python and decode (both decoders) to the input."""
    model, q = datasets[name]
    frames = lattice_frames(model, q)
    jit = np.concatenate([lattice.index(f, model.params.vmap)[1] for f in frames])
    assert np.count_nonzero(jit) >= 20  # the frames carry jitters
    lines, expected = [], []
    for i, s in enumerate(frames):
        node_id, key = NODES[i % 2]
        lines.append(model_request(node_id, key, 40 + i, s))
        expected.append(python_model_frame(model, node_id, key, 40 + i, s))
    assert not [e for e in expected if e.startswith("E")]
    got = harnesses[(name, False)].run(lines)
    assert got == expected
    if (name, True) in harnesses:  # ASan/UBSan: no overflow or out-of-bounds index on these either
        assert harnesses[(name, True)].run(lines) == expected
    payloads = []
    for i, (s, frame_hex) in enumerate(zip(frames, got, strict=True)):
        node_id, key = NODES[i % 2]
        dec = FrameDecoder(
            [Node(node_id, f"n{node_id}", key=key, next_fcnt=40 + i)], models=_installed(model)
        )
        payload = dec.decode(bytes.fromhex(frame_hex)).payload
        assert np.array_equal(model.decode(payload), s), i
        payloads.append(payload)
    for s, out in zip(frames, model.decode_each(payloads), strict=True):
        assert np.array_equal(out, s)


def frame_flag_frames(model, q) -> list[np.ndarray]:
    """Frames for a model with frame flags (revision 7): readings snapped onto every lattice (all
    channels "all on", 16, 64 or where that does not fit a frame 32, and 1 samples), then per
    flagged channel one reading off at the first sample, one at the last (the largest jitter),
    every reading off, and one reading off on every lattice channel at once."""
    vm = model.params.vmap
    on = q[:64] - lattice.index(q[:64], vm)[1]
    gap = lattice.gap(lattice.index(on, vm)[0], vm)
    long = on if len(model.encode(on)) < 200 else on[:32]
    frames = [on[:16].copy(), long.copy(), on[:1].copy()]
    for c in np.flatnonzero(model.params.vframe).tolist():
        first, last, every = on[:16].copy(), on[:16].copy(), on[:16].copy()
        first[0, c] += 1
        last[-1, c] += gap[15, c] - 1
        every[:, c] += 1
        frames += [first, last, every]
    lat = vm[:, 3] != lattice.NONE
    all_off = on[:9].copy()
    all_off[4, lat] += 1
    frames += [all_off, all_off[4:5].copy()]
    return frames


@pytest.mark.parametrize("name", ["vframe", "vframe_full"])
def test_frame_flags_all_on_and_some_off_are_byte_identical_and_decode(name, datasets, harnesses):
    """Bitstream revision 7: each flagged channel's frame flag, "all on" (no per-reading flags
    follow) or "some off", codes in C exactly as in Python, and both Python decoders give back
    the input."""
    model, q = datasets[name]
    vm, g = model.params.vmap, model.params.vframe
    frames = frame_flag_frames(model, q)
    some = np.array([(lattice.index(f, vm)[1] != 0).any(axis=0) for f in frames])
    for c in np.flatnonzero(g).tolist():  # both kinds of frame flag on every flagged channel
        assert some[:, c].any() and not some[:, c].all(), c
    # The flags change the bytes: revision 6 would send most of these frames otherwise (a few can
    # coincide, when the range coder's last bytes absorb the difference).
    rev6 = Model(model.schema, replace(model.params, vframe=np.zeros_like(g)), model.samples_per_frame)
    differ = [model.encode(f) != rev6.encode(f) for f in frames]
    assert sum(differ) >= len(frames) * 2 // 3, differ
    lines, expected = [], []
    for i, s in enumerate(frames):
        node_id, key = NODES[i % 2]
        lines.append(model_request(node_id, key, 70 + i, s))
        expected.append(python_model_frame(model, node_id, key, 70 + i, s))
    assert not [e for e in expected if e.startswith("E")]
    assert harnesses[(name, False)].run(lines) == expected
    if (name, True) in harnesses:
        assert harnesses[(name, True)].run(lines) == expected
    payloads = []
    for i, (s, frame_hex) in enumerate(zip(frames, expected, strict=True)):
        node_id, key = NODES[i % 2]
        dec = FrameDecoder(
            [Node(node_id, f"n{node_id}", key=key, next_fcnt=70 + i)], models=_installed(model)
        )
        payload = dec.decode(bytes.fromhex(frame_hex)).payload
        assert np.array_equal(model.decode(payload), s), i
        payloads.append(payload)
    by_length: dict[int, list[int]] = {}  # decode_many takes frames of one length at a time
    for i, s in enumerate(frames):
        by_length.setdefault(len(s), []).append(i)
    for idx in by_length.values():
        for i, out in zip(idx, model.decode_many([payloads[i] for i in idx]), strict=True):
            assert np.array_equal(out, frames[i]), i


@pytest.mark.parametrize("name", ["demo", "grid"])
def test_model_frames_with_key_epoch_ack_flag_and_small_buffers(name, datasets, harnesses):
    model, q = datasets[name]
    s = q[20:36]
    lines, expected = [], []
    for epoch, ack in ((1, False), (7, True), (0, True)):
        lines.append(model_request(0x01020304, KEY, 300, s, epoch=epoch, flags=4 if ack else 0))
        expected.append(python_model_frame(model, 0x01020304, KEY, 300, s, epoch=epoch, ack=ack))
    full = python_model_frame(model, 5, None, 1, s)
    size = len(full) // 2
    lines += [model_request(5, None, 1, s, cap=size), model_request(5, None, 1, s, cap=size - 1)]
    expected += [full, E_SPACE]
    bad = s.copy()
    bad[2, 1] = 2**30  # outside ±2^30 steps: refused, as the Python encoder refuses it
    lines.append(model_request(5, None, 1, bad))
    expected.append(python_model_frame(model, 5, None, 1, bad))
    lines += [model_request(5, None, 1, q[:0]).replace(" 0 ", " 0 ", 1)]  # zero samples
    expected.append("E -1")
    assert harnesses[(name, False)].run(lines) == expected
    assert expected[-2] == E_RANGE


def frame_vectors() -> list[tuple[str, str]]:
    """Raw and LPP frames: the documented vectors, then random ids, lengths, counters and flags."""
    rng = random.Random(7)
    out = []
    for node_id, key, epoch, fcnt, codec, ftype, ack, payload in [
        (5, None, 0, 0, 1, 0, False, "03670110056700ff"),  # docs vector 1
        (0x1234, None, 0, 0x10203, 0, 0, True, "deadbeef"),  # 2
        (0x01020304, KEY, 0, 1, 1, 0, False, "0167ffd7"),  # 3
        (0x2A, KEY, 0, 70000, 0x99, 0, False, "0123456789abcdef0011223344556677889900"),  # 4: refused
        (0x2A, KEY, 0, 2, 0, 1, False, ""),  # 5: secured acknowledgement
        (0x01020304, KEY, 1, 1, 1, 0, False, "0167ffd7"),  # 10: key epoch 1
    ]:
        out.append(_frame_case(node_id, key, epoch, fcnt, codec, ftype, ack, bytes.fromhex(payload)))
    for i in range(400):
        node_id = rng.choice(
            [
                rng.randrange(0, 0x100),
                rng.randrange(0x100, 0x10000),
                rng.randrange(0x10000, 0x1000000),
                rng.randrange(0x1000000, 0x1_0000_0000),
            ]
        )
        key = None if i % 2 else rng.randbytes(16)
        fcnt = rng.choice(COUNTERS + MORE_COUNTERS + [rng.randrange(0, 1 << 32)])
        payload = rng.randbytes(rng.choice([0, 1, 15, 16, 17, 33, rng.randrange(0, 250)]))
        out.append(
            _frame_case(
                node_id,
                key,
                rng.choice([0, 0, 1, 0xFFFFFFFF]),
                fcnt,
                rng.choice([0, 1, 0, 1, 0x80]),
                rng.choice([0, 1, 2]),
                rng.random() < 0.3,
                payload,
            )
        )
    return out


def _frame_case(node_id, key, epoch, fcnt, codec, ftype, ack, payload, cap=255) -> tuple[str, str]:
    flags = (ftype << 4) | (4 if ack else 0)
    key_hex = key.hex() if key else "-"
    body = payload.hex() or "-"
    req = f"P {node_id} {int(key is not None)} {key_hex} {epoch} {fcnt} {flags} {codec} {cap} {body}"
    if codec >= 0x80:  # learned-model frames are bound to a fingerprint: only lgw_build_frame makes them
        return req, "E -1"
    kind = PayloadCodec.RAW if codec == 0 else PayloadCodec.LPP
    try:
        frame = FrameEncoder(node_id, key, key_epoch=epoch).encode(
            payload,
            codec=kind,
            frame_type=FrameType(ftype),
            ack_requested=ack,
            fcnt=fcnt,
        )
    except ValueError:
        return req, E_SPACE
    return req, (frame.hex() if len(frame) <= cap else E_SPACE)


@pytest.mark.parametrize("export", ["lpp", "demo"])
@pytest.mark.parametrize("sanitized", [False, True])
def test_raw_and_lpp_frames_are_byte_identical(export, sanitized, harnesses):
    vectors = frame_vectors()
    got = harnesses[(export, sanitized)].run([v[0] for v in vectors])
    assert got[:6] == [v[1] for v in vectors[:6]] and got[3] == "E -1"
    assert got[0] == "000500000103670110056700ff1152"  # docs/frame-format.md vector 1, literally
    assert got[5] == "0b04030201010001f3bba990b6ccd1cf"  # vector 10 (key epoch 1), literally
    mismatches = [v[0][:60] for v, g in zip(vectors, got, strict=True) if g != v[1]]
    assert not mismatches, f"{len(mismatches)} of {len(vectors)} differ: {mismatches[:3]}"
    assert sum(g.startswith("E") for g in got) < 150


@pytest.mark.parametrize("name", ["demo", "grid", "full", "pmode", "actw_modes", "vmap_full", "vframe_full"])
def test_sanitized_build_passes_the_same_model_vectors(name, datasets, harnesses):
    model, q = datasets[name]
    vectors = model_vectors(model, q)
    lines = [v[0] for v in vectors]
    assert harnesses[(name, True)].run(lines) == [v[1] for v in vectors]


def test_aes_reference_matches_fips197_and_the_derived_keys(harnesses):
    h = harnesses[("lpp", False)]
    got = h.run(
        [
            "A 000102030405060708090a0b0c0d0e0f 00112233445566778899aabbccddeeff",  # FIPS-197 C.1
            "A 2b7e151628aed2a6abf7158809cf4f3c 6bc1bee22e409f96e93d7e117393172a",  # SP 800-38A F.1.1
            "A 000102030405060708090a0b0c0d0e0f 01000000000000000000000000000000",
        ]
    )
    assert got[:2] == ["69c4e0d86a7b0430d8cdb78070b4c55a", "3ad77bb40d7a3660a89ecaf32466ef97"]
    assert got[2] == derive_keys(KEY)[0].hex()


def lpp_vectors() -> list[tuple[str, str]]:
    rng = random.Random(3)
    single = [t for t in lpp.TYPES if not t.fields]
    out = []
    for i in range(200):
        readings, raws = [], []
        for _ in range(rng.randrange(1, 8)):
            t = rng.choice(single)
            bits = 8 * t.size
            lo, hi = (
                (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
                if t.signed
                else (0, min((1 << bits) - 1, 2**31 - 1))
            )
            raw = rng.randrange(lo, hi + 1)
            ch = rng.randrange(0, 256)
            raws.append(f"{ch} {t.code} {raw}")
            readings.append((ch, t.name, raw if t.divisor == 1 else raw / t.divisor))
        payload = lpp.encode(readings)
        node_id, key = NODES[i % 4]
        frame = FrameEncoder(node_id, key).encode(payload, codec=PayloadCodec.LPP, fcnt=i * 997)
        req = f"L {node_id} {int(key is not None)} {key.hex() if key else '-'} {i * 997} " + " ".join(raws)
        out.append((req, frame.hex()))
    return out


def test_lpp_writer_matches_the_gateway_lpp_encoder(harnesses):
    vectors = lpp_vectors()
    vectors += [
        ("L 5 0 - 0 1 103 32768", E_RANGE),
        ("L 5 0 - 0 1 104 -1", E_RANGE),
        ("L 5 0 - 0 1 113 5", "E -1"),
    ]
    got = harnesses[("lpp", True)].run([v[0] for v in vectors])
    assert got == [v[1] for v in vectors]


def test_library_has_no_libc_heap_or_float_dependency(exports, harnesses):
    for name in ("demo", "grid", "vmap_full", "vframe_full", "lpp"):
        objs = harnesses[(name, False)].objects  # compiled with cbuild.STRICT
        undefined = subprocess.run(["nm", "-u", *map(str, objs)], capture_output=True, text=True, check=True)
        names = {
            line.split()[-1] for line in undefined.stdout.splitlines() if line.strip() and ":" not in line
        }
        assert names <= {"lgw_aes128_encrypt"}, names
        text = (exports[name] / "lgw_node.c").read_text() + (exports[name] / "lgw_aes_ref.c").read_text()
        code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)  # comments may say "no floating point"
        for word in ("float", "double", "malloc", "alloca"):
            assert not re.search(rf"\b{word}\b", code), (name, word)
        assert re.findall(r"#include <([^>]+)>", code) == ["stdint.h", "stdint.h"]


def _has_32_bit_libc(tmp_path) -> bool:
    probe = subprocess.run(
        ["gcc", "-m32", "-x", "c", "-", "-o", str(tmp_path / "m32")],
        input="int main(void){return 0;}",
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.returncode == 0


def test_compiles_warning_free_for_32_bit(exports, tmp_path):
    # Without a 32-bit libc (gcc-multilib), -ffreestanding uses gcc's own <stdint.h>: same types, same checks.
    freestanding = [] if _has_32_bit_libc(tmp_path) else ["-ffreestanding"]
    for name in ("demo", "grid", "vmap_full", "vframe_full", "lpp"):
        cbuild.compile_library(exports[name], [*cbuild.STRICT, "-m32", *freestanding], tmp_path / name)


def test_32_bit_build_passes_the_vectors(exports, datasets, tmp_path):
    if not _has_32_bit_libc(tmp_path):
        if platform.machine() == "x86_64":  # scripts/bootstrap installs gcc-multilib there
            pytest.fail("no 32-bit libc for -m32: install gcc-multilib (scripts/bootstrap does)")
        pytest.skip(f"-m32 vectors not run: no 32-bit libc on {platform.machine()}; compile checked above")
    for name in ("grid", "vmap_full", "vframe_full"):  # the lattices' 64-bit divisions are libgcc calls there
        model, q = datasets[name]
        vectors = model_vectors(model, q)
        extra = lattice_frames(model, q) if name != "grid" else []
        extra += frame_flag_frames(model, q) if name == "vframe_full" else []
        vectors += [
            (model_request(5, None, 1, f), python_model_frame(model, 5, None, 1, f), ()) for f in extra
        ]
        harness = cbuild.build(exports[name], tmp_path / f"{name}32", extra=["-m32"])
        assert harness.run([v[0] for v in vectors]) == [v[1] for v in vectors]


def test_call_graph_has_no_recursion_and_a_bounded_stack(exports, tmp_path):
    from bench.firmware import worst_stack

    for name, entry in (
        ("demo", "lgw_build_frame"),
        ("full", "lgw_build_frame"),
        ("vmap_full", "lgw_build_frame"),
        ("vframe_full", "lgw_build_frame"),
        ("lpp", "lgw_build_frame_payload"),
    ):
        work = tmp_path / name
        work.mkdir()
        for src in ("lgw_node.c", "lgw_aes_ref.c"):
            cmd = ["gcc", *cbuild.STRICT, "-fcallgraph-info=su", "-c", str(exports[name] / src)]
            subprocess.run([*cmd, "-o", str(work / (src[:-2] + ".o"))], check=True, cwd=work)
        stack, path, recursion = worst_stack(sorted(work.glob("*.ci")), entry)
        assert not recursion, path
        assert 0 < stack < 1024, (name, stack, path)  # x86-64 frames; bench/firmware.py measures the M0+
