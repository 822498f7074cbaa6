"""End-to-end gateway benchmark: emulated RxDone → frame checks → durable outbox → MQTT PUBACK.

Packets are produced by the real SX1276 driver reading the register-level emulator (nodes transmit
Cayenne LPP frames through their own drivers on the virtual air). Their hand-off by the radio thread
starts the clock; a frame counts when the broker's PUBACK for it was handled. The outbox is on, at
its default group commit, in a state directory on the real file system; the broker is a private
Mosquitto on 127.0.0.1 (another process). The gateway process is pinned to one CPU core, and the
broker, started after the pinning, inherits it: both share that core (``--no-pin``: neither is pinned).
The gateway's own threads are the core thread (which also drives the MQTT client) and this main
thread, which only submits packets and checks progress every 20 ms (at most 20 ms, about 1 %, of the
throughput run's wall time).

JSON keys:
- ``frames_per_s``: all packets offered at once, frames per wall-clock second;
- ``frames_per_cpu_s``: the same per CPU second of the process (not distorted by other load);
- ``latency_ms_p50`` / ``latency_ms_p99``: at ``--rate`` frames/s offered (default 200);
- ``rss_mb``: peak resident memory of this process, which is the gateway's (the core and everything it
  imports) plus the packets it is offered: those are made by the emulated chip and driver in a forked
  child (so neither is loaded here) and held here in a list, ``rss_mb_packets`` of it (the growth when
  they arrive); the baselines' code is imported after ``rss_mb`` is read;
- ``disk_bytes_per_frame``: bytes SQLite handed to the kernel (/proc/self/io wchar) per frame in the
  throughput run; ``disk_bytes_per_frame_at_rate`` the same in the latency run.
Targets (issue 4): ≥ 5000 frames/s, p99 ≤ 50 ms at 200 frames/s, RSS ≤ 60 MB, ≤ 200 bytes per frame.
``--history`` (issue 18) runs only the throughput run, with learned-model frames (the demo model), with
``[history]`` off and on in the same run: ``history_off``, ``history_on`` and ``ratios_on_over_off``
(target ≤ 1.10×: with history on a delivered model row is kept in the outbox as the history, at no write,
so on writes fewer bytes than off, which deletes it; gateway.sinks.history explains why a copy could not
meet the target).

Baselines, in the same run against the same broker, after our runs (``rss_mb`` is read before them):
the messages of the throughput run (rendered again afterwards by the same pipeline, outbox and
renderer in a fresh database: ``baseline_messages``) are published at QoS 1 straight from RAM with
paho-mqtt, with no frame checks and no outbox (what a hand-rolled bridge does), timed from the first
publish to the last PUBACK; ``_per_cpu_s`` counts this process's CPU (paho's thread included):
- ``baseline_bare_paho_frames_per_s`` (and ``_per_cpu_s``): paho driven from one thread as our sink
  drives it (no loop_start, queued writes, the same 200-message window);
- ``baseline_paho_loop_start_frames_per_s`` (and ``_per_cpu_s``): paho's own network thread and
  default limits, the usual hand-rolled bridge.
``ratios`` divides ours by each: what durability and the checks cost (1.0 = nothing).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.frames import FrameDecoder, FrameEncoder, Node, NodeRegistry  # noqa: E402
from gateway.pipeline.models import InstalledModels  # noqa: E402
from gateway.pipeline.pipeline import Pipeline  # noqa: E402
from gateway.pipeline.render import NodeCache, Renderer  # noqa: E402
from gateway.radio.packet import RxPacket  # noqa: E402
from gateway.service.broker import PrivateMosquitto  # noqa: E402
from gateway.service.core import Core, CoreSettings  # noqa: E402
from gateway.sinks.history import HistorySettings  # noqa: E402
from gateway.sinks.mqtt import MqttSettings, MqttSink  # noqa: E402
from gateway.sinks.outbox import Outbox, OutboxSettings  # noqa: E402
from gateway.sinks.url import BrokerUrl  # noqa: E402

NODES = 8
NODE_BASE = 0x0B00_0000


def wchar() -> int:
    with open("/proc/self/io") as fh:
        for line in fh:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


def vm_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


_CHILD: dict[str, object] = {}  # the packet maker's own state (in the forked child only)


def _child_make(n: int) -> float:
    t = time.perf_counter()
    _CHILD["packets"] = make_packets(n)
    return time.perf_counter() - t


def _child_slice(start: int, stop: int) -> list[RxPacket]:
    return _CHILD["packets"][start:stop]  # type: ignore[index]


def _child_render(stop: int, state: str) -> list[tuple[str, bytes]]:
    return render_again(_CHILD["packets"][:stop], Path(state))  # type: ignore[index]


class PacketMaker:
    """A forked child that makes the packets (emulated chip and driver) and, after our runs, the baselines'
    messages from them: the emulator, the driver and those lists never weigh on this process's memory,
    which holds only the packets of the run under way (offered to the core, freed once ingested)."""

    def __init__(self, n: int) -> None:
        import multiprocessing

        self._pool = multiprocessing.get_context("fork").Pool(1)
        self.radio_s = self._pool.apply(_child_make, (n,))

    def packets(self, start: int, stop: int) -> deque[RxPacket]:
        return deque(self._pool.apply(_child_slice, (start, stop)))

    def messages(self, stop: int, state: Path) -> list[tuple[str, bytes]]:
        return self._pool.apply(_child_render, (stop, str(state)))

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()


def make_packets(n: int, first_fcnt: int = 0) -> list[RxPacket]:
    """``n`` distinct frames from NODES nodes, received through the emulated chip and the driver."""
    from gateway.radio.sim import RadioSim

    sim = RadioSim(nodes=NODES)
    encs = [FrameEncoder(NODE_BASE + i, next_fcnt=first_fcnt) for i in range(NODES)]
    out: list[RxPacket] = []
    for i in range(n):
        k = i % NODES
        temp = round(15 + (i % 200) / 10, 1)
        sim.nodes[k].send(encs[k].encode_lpp([(1, "temperature", temp), (2, "humidity", 50.0)]))
        p = sim.gateway.receive(1.0)
        if p is None:
            raise RuntimeError("the emulated gateway missed a packet")
        out.append(p)
    sim.close()
    return out


class Gateway:
    """The production core, built and run in its own thread (it owns the SQLite connections)."""

    def __init__(
        self, state: Path, broker: BrokerUrl, history: HistorySettings | None = None, models: bool = False
    ) -> None:
        self.state, self.broker = state, broker
        self.history, self.models = history, models
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, name="core")
        self.thread.start()
        if not self.ready.wait(20):
            raise RuntimeError("gateway did not start")

    def _main(self) -> None:
        self._build()
        self.sink.start()
        while not self.sink.connected:
            self.core.step(0.01)
        self.ready.set()
        try:
            self.core.run(self.stop)
        finally:
            self.registry.close()

    def _build(self) -> None:
        """Outbox, registry, sink and core (bench/web.py builds its own, with the observer)."""
        db = self.state / "gateway.db"
        self.outbox = Outbox(db, OutboxSettings(), history=self.history)  # first, as the service does
        self.registry = NodeRegistry(db)
        for i in range(NODES):
            if self.registry.get(NODE_BASE + i) is None:
                self.registry.add(Node(node_id=NODE_BASE + i, name=f"bench-{i}"))
        installed = InstalledModels(self.state) if self.models else None
        self.pipeline = Pipeline(FrameDecoder(self.registry, models=installed and installed.candidates))
        self.sink = MqttSink(
            MqttSettings(
                broker=self.broker, client_id=f"bench-{os.getpid()}", status_topic="lora/bench/status"
            )
        )
        self.core = Core(
            self.pipeline,
            self.outbox,
            self.sink,
            Renderer("bench", "lora", NodeCache(self.registry.get), installed and installed.model),
            CoreSettings(stats_interval_s=3600),
        )

    def wait_published(self, n: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.core.published < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self) -> None:
        self.stop.set()
        self.core.wake()
        self.thread.join(30)


def render_again(packets: list[RxPacket], state: Path) -> list[tuple[str, bytes]]:
    """The messages our core publishes for ``packets``, rendered again by the same pipeline, outbox and
    renderer in a fresh database, after our runs (so they add nothing to our memory or disk figures)."""
    db = state / "rendered.db"
    outbox = Outbox(db, OutboxSettings())
    registry = NodeRegistry(db)
    try:
        for i in range(NODES):
            registry.add(Node(node_id=NODE_BASE + i, name=f"bench-{i}"))
        pipeline = Pipeline(FrameDecoder(registry))
        renderer = Renderer("bench", "lora", NodeCache(registry.get))
        for packet in packets:
            result = pipeline.process(packet)
            if result is not None:
                outbox.add(result[0])
                pipeline.accept(result[1])
        outbox.commit()
        messages = []
        for stored in outbox.load(0, len(packets)):
            msg = renderer.render(stored)
            if msg is not None:
                messages.append((msg.topic, msg.payload))
            renderer.take_extras()
        return messages
    finally:
        registry.close()
        outbox.close()


def make_model_packets(n: int, model) -> list[RxPacket]:
    """``n`` learned-model frames (the demo model's own synthetic weather) from NODES nodes."""
    import numpy as np

    from gateway.radio.sim import RadioSim

    sim = RadioSim(nodes=NODES)
    encs = [FrameEncoder(NODE_BASE + i) for i in range(NODES)]
    samples = model.generate(64 * model.samples_per_frame, np.random.default_rng(1))
    n_s = model.samples_per_frame
    frames = [samples[i : i + n_s] for i in range(0, len(samples), n_s)]
    out: list[RxPacket] = []
    for i in range(n):
        sim.nodes[i % NODES].send(encs[i % NODES].encode_model(model, frames[i % len(frames)]))
        p = sim.gateway.receive(1.0)
        if p is None:
            raise RuntimeError("the emulated gateway missed a packet")
        out.append(p)
    sim.close()
    return out


def history_comparison(frames: int, say) -> dict[str, object]:
    """Issue 18: the throughput run with learned-model frames, [history] off then on, twice each
    (interleaved, each in a fresh state directory; the better of each pair is kept)."""
    from importlib import resources

    from gateway.codec import DEMO_MODEL, ModelStore, demo_model

    model = demo_model()
    say(f"generating {frames} learned-model packets ...")
    packets = make_model_packets(frames, model)
    broker = PrivateMosquitto()
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    try:
        for label in ("off", "on", "off", "on"):
            state = Path(tempfile.mkdtemp(prefix="lora-gw-bench-", dir=os.environ.get("BENCH_DIR", "/var/tmp")))  # noqa: E501
            try:
                src = state / DEMO_MODEL
                src.write_bytes(resources.files("gateway.codec").joinpath("data", DEMO_MODEL).read_bytes())
                ModelStore(state).install(src)
                gw = Gateway(state, broker.url, HistorySettings(enabled=label == "on"), models=True)
                try:
                    say(f"history {label}: {len(packets)} frames offered at once ...")
                    w0, c0, t0 = wchar(), time.process_time(), time.perf_counter()
                    for p in packets:
                        gw.core.submit(p)
                    if not gw.wait_published(len(packets), 120):
                        raise RuntimeError(f"only {gw.core.published} of {len(packets)} frames published")
                    elapsed, cpu, w1 = time.perf_counter() - t0, time.process_time() - c0, wchar()
                    stored = gw.outbox.history.stats.stored if gw.outbox.history else 0
                finally:
                    gw.close()
                runs[label].append(
                    {
                        "frames_per_s": round(len(packets) / elapsed, 1),
                        "frames_per_cpu_s": round(len(packets) / cpu, 1),
                        "disk_bytes_per_frame": round((w1 - w0) / len(packets), 1),
                        "history_rows": stored,
                    }
                )
            finally:
                shutil.rmtree(state, ignore_errors=True)
    finally:
        broker.stop()
    best = {k: max(v, key=lambda r: r["frames_per_cpu_s"]) for k, v in runs.items()}
    off, on = best["off"], best["on"]
    return {
        "frames": frames,
        "history_off": off,
        "history_on": on,
        "runs": runs,
        "ratios_on_over_off": {
            k: round(on[k] / off[k], 3) for k in ("frames_per_s", "frames_per_cpu_s", "disk_bytes_per_frame")
        },
    }


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print only the JSON result")
    ap.add_argument("--frames", type=int, default=10000, help="frames for the throughput run (default 10000)")
    ap.add_argument("--rate", type=float, default=200.0, help="offered frames/s for the latency run")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the latency run (default 10)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU core")
    ap.add_argument(
        "--history",
        action="store_true",
        help="only compare the throughput run with [history] off and on (learned-model frames)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    say = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))

    if args.history:
        print(json.dumps(history_comparison(args.frames, say), indent=None if args.json else 2))
        return 0
    n_lat = int(args.rate * args.seconds)
    say(f"generating {args.frames + n_lat} packets through the emulated SX1276 and driver ...")
    maker = PacketMaker(args.frames + n_lat)
    rss0 = vm_rss_mb()
    bulk = maker.packets(0, args.frames)
    rss_packets = vm_rss_mb() - rss0

    broker = PrivateMosquitto()
    state = Path(tempfile.mkdtemp(prefix="lora-gw-bench-", dir=os.environ.get("BENCH_DIR", "/var/tmp")))
    result: dict[str, object] = {}
    try:
        gw = Gateway(state, broker.url)
        try:
            n_bulk = len(bulk)
            say(f"throughput: {n_bulk} frames offered at once ...")
            w0 = wchar()
            c0 = time.process_time()
            t0 = time.perf_counter()
            while bulk:  # handed over, not kept: the core frees each packet once ingested
                gw.core.submit(bulk.popleft())
            if not gw.wait_published(n_bulk, 120):
                raise RuntimeError(f"only {gw.core.published} of {n_bulk} frames were published")
            elapsed = time.perf_counter() - t0
            cpu = time.process_time() - c0
            w1 = wchar()
            result["frames_per_s"] = round(n_bulk / elapsed, 1)
            # CPU seconds of all gateway threads: the figure that does not depend on other load on the host
            result["frames_per_cpu_s"] = round(n_bulk / cpu, 1)
            result["disk_bytes_per_frame"] = round((w1 - w0) / n_bulk, 1)

            paced = maker.packets(args.frames, args.frames + n_lat)
            n_paced = len(paced)

            say(f"latency: {n_paced} frames at {args.rate:g} frames/s ...")
            gw.core.latencies_ms.clear()
            before = gw.core.published
            w0 = wchar()
            interval = 1.0 / args.rate
            start = time.perf_counter()
            for i in range(n_paced):
                delay = start + i * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                gw.core.submit(paced.popleft())
            if not gw.wait_published(before + n_paced, 60):
                raise RuntimeError("latency run: frames missing")
            time.sleep(1.2)  # let the PUBACK deletes commit, so their bytes are counted too
            w1 = wchar()
            lat = list(gw.core.latencies_ms)[-n_paced:]
            result["latency_ms_p50"] = round(percentile(lat, 0.50), 2)
            result["latency_ms_p99"] = round(percentile(lat, 0.99), 2)
            result["disk_bytes_per_frame_at_rate"] = round((w1 - w0) / n_paced, 1)
            drops = dict(gw.pipeline.drops)
        finally:
            gw.close()
        result["rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        result["rss_mb_packets"] = round(rss_packets, 1)
        result["frames_accepted"] = gw.outbox.stats.stored
        result["frames_dropped"] = drops
        result["radio_packets_per_s"] = round((args.frames + n_lat) / maker.radio_s, 1)
        defaults = OutboxSettings()
        result["outbox"] = {
            "synchronous": defaults.synchronous,
            "commit_frames": defaults.commit_frames,
            "commit_interval_ms": defaults.commit_interval_ms,
        }

        from bench.baselines import paho_loop_start, paho_one_thread

        messages = maker.messages(args.frames, state)
        say(f"baselines: the same {len(messages)} messages with bare paho ...")
        host, port = broker.url.host, broker.url.port
        window = gw.sink.settings.max_inflight
        bare = paho_one_thread(host, port, messages, window=window)
        threaded = paho_loop_start(host, port, messages)
        result["baseline_messages"] = len(messages)
        result["baseline_bare_paho_frames_per_s"] = round(bare.frames_per_s, 1)
        result["baseline_bare_paho_frames_per_cpu_s"] = round(bare.frames_per_cpu_s, 1)
        result["baseline_paho_loop_start_frames_per_s"] = round(threaded.frames_per_s, 1)
        result["baseline_paho_loop_start_frames_per_cpu_s"] = round(threaded.frames_per_cpu_s, 1)
        ours_fps, ours_cpu = float(result["frames_per_s"]), float(result["frames_per_cpu_s"])  # type: ignore[arg-type]
        result["ratios"] = {
            "ours_over_bare_paho_frames_per_s": round(ours_fps / bare.frames_per_s, 3),
            "ours_over_bare_paho_frames_per_cpu_s": round(ours_cpu / bare.frames_per_cpu_s, 3),
            "ours_over_paho_loop_start_frames_per_s": round(ours_fps / threaded.frames_per_s, 3),
            "ours_over_paho_loop_start_frames_per_cpu_s": round(ours_cpu / threaded.frames_per_cpu_s, 3),
        }
    finally:
        maker.close()
        broker.stop()
        shutil.rmtree(state, ignore_errors=True)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
