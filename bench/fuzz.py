"""Coverage-guided fuzzing of every decoder that reads bytes from outside: the frame decoder, a trained
model's codec decoder, Cayenne LPP, RadioHead, the config loader and (once it exists) the MQTT command
parser.

    python bench/fuzz.py --target NAME --runs N [--seed S] [--engine atheris|random] [--json]
    python bench/fuzz.py --list

A crash is any exception other than the target's documented error type (its ``GatewayError`` subclass).
Engines: ``atheris`` (libFuzzer, coverage-guided; edges counted by libFuzzer's ``cov:``) runs the target
in a child process; ``random`` (when atheris cannot be installed) mutates the seed corpus in-process and
measures the lines reached with ``coverage`` when it is installed — not guided, honest about it.
JSON: ``target``, ``engine``, ``inputs``, ``crashes``, ``coverage`` (edges or lines), ``coverage_unit``,
``seconds``, ``examples`` (the first crashing inputs, hex).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Python's own arithmetic and parsing errors are never a documented error: only the project's.
COMMAND_MODULE = "gateway.downlink.commands"


@dataclass
class Target:
    """``build()`` returns (one-input function, the seed inputs). Imports happen inside ``build`` so that
    the atheris child can instrument them."""

    name: str
    what: str
    build: Callable[[], tuple[Callable[[bytes], object], list[bytes]]]
    modules: list[str] = field(default_factory=lambda: ["gateway"])
    max_len: int = 255  # a LoRa packet; the config loader reads files, longer


def _key(node_id: int) -> bytes:
    return node_id.to_bytes(4, "little") * 4


def _frame() -> tuple[Callable[[bytes], object], list[bytes]]:
    from gateway.frames import FrameDecoder, FrameEncoder, Node, NodeFormat, PayloadCodec, lpp, radiohead

    nodes = [
        Node(5, "open-5"),
        Node(0x1234, "open-1234"),
        Node(0x01020304, "sec-01020304", key=_key(0x01020304)),
        Node(0x2A, "sec-2a", key=_key(0x2A)),
        Node(70, "rh-lpp", format=NodeFormat.RADIOHEAD, radiohead_address=3),
        Node(71, "rh-raw", format=NodeFormat.RADIOHEAD, radiohead_address=4, payload=PayloadCodec.RAW),
        Node(80, "bare-lpp", format=NodeFormat.LPP),
    ]
    decoder = FrameDecoder(nodes)
    seeds = []
    weather = [(1, "temperature", 21.5), (2, "humidity", 60.5), (3, "barometer", 1013.2)]
    for node in nodes[:4]:
        enc = FrameEncoder(node.node_id, node.key)
        seeds += [enc.encode_lpp(weather), enc.encode(bytes(range(20))), enc.encode(b"", ack_requested=True)]
        seeds.append(
            enc.encode(
                bytes(9), codec=PayloadCodec.MODEL, model_id=3, model_version=1, fingerprint=bytes(range(8))
            )
        )
    seeds += [lpp.encode(weather), radiohead.build(0xFF, 3, lpp.encode(weather), ident=9)]

    from gateway.errors import GatewayError

    def one(data: bytes) -> None:
        with contextlib.suppress(GatewayError):  # the inspect path (lora-gw decode) on the same input
            decoder.inspect(data)
        frame = decoder.decode(data, node_hint=80 if data[:1] == b"\xfe" else None)
        if len(data) & 1:
            decoder.accept(frame)  # move counters so that duplicate, replay and gap paths are reached

    return one, seeds


def _lpp() -> tuple[Callable[[bytes], object], list[bytes]]:
    from gateway.frames import lpp

    seeds = [
        lpp.encode([(1, "temperature", -4.5), (2, "humidity", 60.5), (3, "barometer", 1013.2)]),
        lpp.encode([(0, "gps", {"latitude": 52.1, "longitude": 4.3, "altitude": 12.5})]),
        b"\x04\x65\x01\x40",
    ]
    return lpp.decode, seeds


def _radiohead() -> tuple[Callable[[bytes], object], list[bytes]]:
    from gateway.frames import radiohead

    return radiohead.parse, [radiohead.build(0xFF, 3, b"\x01\x67\x00\xe1", ident=9, flags=0x40)]


def _codec_models() -> list:
    """The shipped demo model, and five trained here so that every part of the bitstream is reached:
    one on tests/codec/data/weather-400.csv (windowed first-sample tables, tables.first_to_symbols),
    one on a synthetic lattice series with jitter (residual grid and jitter tables by phase), one on
    mostly even readings (revision 4's prediction modes: snapped changes, phase by the lattice) and
    one on exact value lattices with a few readings off them (revision 6: an ADC scale through zero
    and a rounded unit conversion, flags and jitters after the samples), and one on a reading whose
    resolution halves half-way (revision 7: a lattice for stretches, frame flags)."""
    import numpy as np

    from gateway.codec import Channel, Schema, demo_model, train
    from gateway.codec.csvio import read_csv

    data = ROOT / "tests" / "codec" / "data"
    schema = Schema.load(data / "weather.toml")
    windowed = train(read_csv(data / "weather-400.csv", schema)[0], schema, 16, buckets=3, model_id=3)
    rng = np.random.default_rng(7)  # scaled-ADC style: values on a ~10.1 lattice ± 1
    lattice = np.rint(
        np.cumsum(rng.integers(-6, 7, size=(400, 3)), axis=0) * 10.1 + rng.integers(-1, 2, (400, 3))
    )
    axes = Schema(tuple(Channel(f"axis{i}", "", 1.0) for i in range(3)))
    gridded = train(lattice.astype(np.int64), axes, 16, buckets=3, model_id=4)
    # bitstream revision 4's prediction modes: a drift whose changes persist, read mostly as even values
    d = np.zeros((1200, 2))
    for t in range(1, len(d)):
        d[t] = 0.7 * d[t - 1] + rng.normal(0, 30, 2)
    even = 2 * np.rint((5000 + np.cumsum(d, axis=0)) / 2)
    odd = (rng.random(even.shape) < 1 / 6) * rng.choice([-1, 1], size=even.shape)
    current = Schema(tuple(Channel(f"isig{i}", "nA", 1.0) for i in range(2)))
    modes = train((even + odd).astype(np.int64), current, 16, buckets=3, model_id=6)
    assert modes.params.pmode.any(), "the prediction-mode model was trained without a mode"
    counts = np.cumsum(rng.integers(-4, 5, size=1200))
    fahr = 50 + np.cumsum(rng.integers(-1, 2, size=1200))
    values = np.stack([np.trunc(1000 * counts / 99), np.floor((100 * fahr - 3191) / 18)], axis=1)
    values[rng.random(values.shape) < 0.01] += 3
    on_lattice = train(
        values.astype(np.int64),
        Schema((Channel("adc", "mg", 1.0), Channel("t", "", 1.0))),
        16,
        buckets=3,
        model_id=7,
    )
    assert (on_lattice.params.vmap[:, 3] != 0).all(), "the lattice model was trained without its lattices"
    walk = 500 + np.cumsum(rng.normal(0, 5, 1400))
    halved = np.rint(walk)
    halved[600:] = 2 * np.floor(walk[600:] / 2)
    flagged = train(
        halved[:, None].astype(np.int64), Schema((Channel("current", "nA", 0.01),)), 16, buckets=2, model_id=8
    )
    assert flagged.params.vframe.any(), "the frame-flag model was trained without frame flags"
    return [demo_model(), windowed, gridded, modes, on_lattice, flagged]


def _codec() -> tuple[Callable[[bytes], object], list[bytes]]:
    import numpy as np

    models = _codec_models()
    rng = np.random.default_rng(1)
    seeds = []
    for i, model in enumerate(models):
        walk = model.generate(64, rng)
        seeds += [bytes([i]) + model.encode(walk[:n]) for n in (1, 4, 16, 64)]

    def one(data: bytes) -> object:
        # The first byte picks the model; the rest is the payload, as the gateway hands it over.
        return models[data[0] % len(models)].decode(data[1:]) if data else models[0].decode(data)

    return one, seeds


def _config() -> tuple[Callable[[bytes], object], list[bytes]]:
    from gateway.service.config import load_config

    base = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else Path(tempfile.gettempdir())
    tmp = Path(tempfile.mkdtemp(prefix="lora-gw-fuzz-", dir=base))
    path = tmp / "gateway.toml"
    example = (ROOT / "config" / "gateway.toml").read_bytes()

    def one(data: bytes) -> None:
        path.write_bytes(data)
        load_config(path, env={})

    return one, [example, b'[gateway]\nid = "gw"\n[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n']


def _command() -> tuple[Callable[[bytes], object], list[bytes]]:
    mod = importlib.import_module(COMMAND_MODULE)
    seeds = [
        b'{"payload_hex": "0102a0", "confirm": true, "expires_s": 600, "id": "c-1"}',
        b'{"payload_b64": "AQID", "id": 7}',
        b'{"payload_hex": ""}',
    ]
    return mod.parse_command, seeds


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "frame", "FrameDecoder.decode/inspect/accept over open, secured, RadioHead and bare nodes", _frame
        ),
        Target(
            "codec",
            "a trained model's codec decoder (Model.decode): the demo model, a windowed and a gridded one",
            _codec,
        ),
        Target("lpp", "Cayenne LPP decoder", _lpp),
        Target("radiohead", "RadioHead header parser", _radiohead),
        Target("config", "the config loader (lora-gw run --config), file bytes", _config, max_len=8192),
        Target("command", "the MQTT downlink command parser", _command, max_len=4096),
    )
}


def available(name: str) -> str | None:
    """None when the target can run, else why not."""
    if name == "command":
        try:
            found = importlib.util.find_spec(COMMAND_MODULE) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return f"unavailable: {COMMAND_MODULE} does not exist yet"
    return None


def _allowed(target: Target) -> tuple[type[BaseException], ...]:
    """The project's error type, and the documented error of a parser that has its own."""
    from gateway.errors import GatewayError

    if target.name == "command":
        return (GatewayError, importlib.import_module(COMMAND_MODULE).CommandRejected)
    return (GatewayError,)


# -- the random engine --------------------------------------------------------------------------------


def mutate(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        if op == 0 and data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            data[rng.randrange(len(data))] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2:
            del data[rng.randrange(len(data) + 1) :]
        elif op == 3:
            data += rng.randbytes(rng.randint(1, 300 if rng.random() < 0.05 else 8))
        elif op == 4 and data:
            i = rng.randrange(len(data))
            del data[i : i + rng.randint(1, 4)]
        elif op == 5 and data:
            i = rng.randrange(len(data))
            data[i:i] = data[i : i + rng.randint(1, 8)]
        elif op == 6 and data:
            data[0] = rng.randrange(256)
    return bytes(data)


def run_random(
    target: Target, runs: int, seed: int, show: int = 3, measure: bool = True, seconds: float | None = None
) -> dict:
    cov = None
    if measure:
        try:
            import coverage

            cov = coverage.Coverage(data_file=None, include=[str(ROOT / "gateway" / "*")], branch=False)
            cov.start()
        except ImportError:
            cov = None
    t0 = time.perf_counter()
    try:
        one, seeds = target.build()
        allowed = _allowed(target)
        rng = random.Random(seed)
        crashes, examples = 0, []
        stop_at = None if seconds is None else time.perf_counter() + seconds
        done = 0
        for i in range(runs):
            if stop_at is not None and i % 256 == 0 and time.perf_counter() > stop_at:
                break
            done += 1
            if i < len(seeds):
                data = seeds[i]
            elif rng.random() < 0.2:
                data = rng.randbytes(rng.choice((0, 1, 2, 3, 4, 5, 8, 12, 20, 64, 255, 256)))
            else:
                data = mutate(rng, rng.choice(seeds))
            try:
                one(data)
            except allowed:
                pass
            except Exception:
                crashes += 1
                if len(examples) < show:
                    last = traceback.format_exc(limit=-1).strip().splitlines()[-1]
                    shown = data.hex() if len(data) <= 64 else f"{data[:64].hex()}… ({len(data)} bytes)"
                    examples.append(f"{shown}: {last}")
    finally:
        if cov is not None:
            cov.stop()
    lines = None
    if cov is not None:
        data = cov.get_data()
        lines = sum(len(data.lines(f) or ()) for f in data.measured_files())
    return {
        "target": target.name,
        "engine": "random",
        "inputs": done,
        "crashes": crashes,
        "coverage": lines,
        "coverage_unit": "lines" if lines is not None else None,
        "seconds": round(time.perf_counter() - t0, 2),
        "examples": examples,
    }


# -- the atheris engine -------------------------------------------------------------------------------


def _child(name: str, libfuzzer_args: list[str]) -> None:
    """Runs inside the child process: instrument the project, then hand the loop to libFuzzer."""
    import atheris

    target = TARGETS[name]
    with atheris.instrument_imports(include=target.modules):
        one, _ = target.build()
        allowed = _allowed(target)

    def test_one(data: bytes) -> None:
        with contextlib.suppress(allowed):
            one(data)

    atheris.Setup([sys.argv[0], *libfuzzer_args], test_one)
    atheris.Fuzz()


_DONE = re.compile(r"#(\d+)\s+DONE\s+cov: (\d+)")
_STAT = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+)")


def run_atheris(target: Target, runs: int, seed: int, seconds: float | None = None) -> dict:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lora-gw-fuzz-") as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        _, seeds = target.build()
        for i, s in enumerate(seeds):
            (corpus / f"seed-{i}").write_bytes(s)
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--_child",
            target.name,
            "--",
            f"-runs={runs}",
            f"-seed={seed}",
            f"-max_len={target.max_len}",
            f"-artifact_prefix={tmp}/",
            "-print_final_stats=1",
            str(corpus),
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if seconds is not None:
            cmd.insert(-1, f"-max_total_time={max(1, int(seconds))}")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp)
        err = proc.stderr
        examples = []
        for crash in sorted(Path(tmp).glob("crash-*")):
            examples.append(crash.read_bytes().hex())
    done = _DONE.findall(err)
    stats = _STAT.findall(err)
    inputs = int(done[-1][0]) if done else int(stats[-1][0]) if stats else 0
    cov = int(done[-1][1]) if done else int(stats[-1][1]) if stats else None
    crashed = proc.returncode != 0
    if crashed and not examples:
        tail = "\n".join(err.strip().splitlines()[-5:])
        examples = [f"(child exited {proc.returncode}) {tail}"]
    elif crashed:
        why = [ln for ln in err.splitlines() if "Error" in ln or "Exception" in ln][:3]
        examples = [f"{e}: {' | '.join(why)}" for e in examples]
    return {
        "target": target.name,
        "engine": "atheris",
        "inputs": inputs,
        "crashes": 1 if crashed else 0,  # libFuzzer stops at the first crash
        "coverage": cov,
        "coverage_unit": "edges",
        "seconds": round(time.perf_counter() - t0, 2),
        "examples": examples,
    }


def have_atheris() -> bool:
    return importlib.util.find_spec("atheris") is not None


def run(name: str, runs: int, seed: int = 1, engine: str | None = None, seconds: float | None = None) -> dict:
    if name not in TARGETS:
        raise SystemExit(f"error: no fuzz target {name!r} (one of {', '.join(TARGETS)})")
    why = available(name)
    if why is not None:
        return {"target": name, "engine": None, "inputs": 0, "crashes": 0, "coverage": None, "status": why}
    engine = engine or ("atheris" if have_atheris() else "random")
    target = TARGETS[name]
    if engine == "atheris":
        result = run_atheris(target, runs, seed, seconds)
    else:
        result = run_random(target, runs, seed, seconds=seconds)
    result["status"] = "ok" if result["crashes"] == 0 else "crashed"
    result["machine"] = f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}"
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_child"]:
        _child(argv[1], argv[3:] if argv[2:3] == ["--"] else argv[2:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", help=f"one of {', '.join(TARGETS)}, or all")
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--engine", choices=("atheris", "random"))
    ap.add_argument("--seconds", type=float, help="stop a target after this long even before --runs inputs")
    ap.add_argument("--list", action="store_true", help="the targets and whether each can run")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.list or not args.target:
        for t in TARGETS.values():
            print(f"{t.name:10} {available(t.name) or 'ok'}: {t.what}")
        return 0 if args.list else 2
    names = list(TARGETS) if args.target == "all" else [args.target]
    results = [run(n, args.runs, args.seed, args.engine, args.seconds) for n in names]
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results))
    else:
        for r in results:
            print(
                f"{r['target']}: {r.get('status')} engine={r['engine']} inputs={r['inputs']} "
                f"crashes={r['crashes']} coverage={r['coverage']} {r.get('coverage_unit') or ''}"
            )
            for e in r.get("examples", []):
                print(f"    {e}")
    return 1 if any(r["crashes"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
