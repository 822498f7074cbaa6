"""The HTTP listener's cost to the pipeline: the same gateway core, in one run, three ways side by side.

- ``core``: the core as bench/pipeline.py runs it (no observer);
- ``observer``: with gateway.service.operations (availability, link figures, the snapshot the page reads),
  as ``lora-gw run`` always runs it, HTTP listener off;
- ``web``: the same plus the HTTP listener, scraped while frames flow: ``/api/status``, ``/api/nodes`` and
  ``/api/packets`` every ``--page-interval`` s (the status page's refresh) and ``/metrics`` every second.

Per variant: frames at ``--rate`` frames/s for ``--seconds`` (latency p50/p99 from the radio hand-off to
the PUBACK), then ``--frames`` offered at once (frames per CPU second of this process). ``web_rss_mb``: the
resident memory the listener adds (from /proc/self/statm before starting it and after a minute's worth of
scrapes, prometheus-client's import included). ``ratios``: web over observer, observer over core.
Targets (issue 16): ≤ 5 MB RSS, no measurable latency.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.pipeline import NODE_BASE, NODES, make_packets, percentile  # noqa: E402
from bench.pipeline import Gateway as PipelineGateway  # noqa: E402
from gateway.frames import FrameDecoder, Node, NodeRegistry  # noqa: E402
from gateway.pipeline.pipeline import Pipeline  # noqa: E402
from gateway.pipeline.render import NodeCache, Renderer  # noqa: E402
from gateway.service.core import Core, CoreSettings  # noqa: E402
from gateway.service.demo import PrivateMosquitto  # noqa: E402
from gateway.sinks.mqtt import MqttSettings, MqttSink  # noqa: E402
from gateway.sinks.outbox import Outbox, OutboxSettings  # noqa: E402
from gateway.sinks.url import BrokerUrl  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1048576


class Gateway(PipelineGateway):
    """bench/pipeline.py's core in its own thread, optionally with the Operations observer."""

    def __init__(self, state: Path, broker: BrokerUrl, observer: bool) -> None:
        self.with_observer = observer
        self.ops = None
        super().__init__(state, broker)

    def _build(self) -> None:
        from gateway.service.operations import Operations, OperationsSettings

        db = self.state / "gateway.db"
        self.outbox = Outbox(db, OutboxSettings())
        self.registry = NodeRegistry(db)
        for i in range(NODES):
            if self.registry.get(NODE_BASE + i) is None:
                self.registry.add(Node(node_id=NODE_BASE + i, name=f"bench-{i}", interval_s=60.0))
        self.sink = MqttSink(MqttSettings(self.broker, f"bench-web-{os.getpid()}", "lora/bench/status"))
        if self.with_observer:
            self.ops = Operations(
                "bench",
                "lora/bench",
                OperationsSettings(),
                NodeCache(self.registry.get),
                self.registry.nodes,
                db_file=db,
            )
        self.core = Core(
            Pipeline(FrameDecoder(self.registry)),
            self.outbox,
            self.sink,
            Renderer("bench", "lora", NodeCache(self.registry.get)),
            CoreSettings(stats_interval_s=3600),
            observer=self.ops,
        )
        if self.ops is not None:
            self.ops.attach(self.core)


SCRAPER = """
import os, signal, sys, time, urllib.request
os.sched_setaffinity(0, range(os.cpu_count() or 1))  # not on the gateway's pinned core
base, page_s, n, errors, stop = sys.argv[1], float(sys.argv[2]), 0, 0, []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
next_page = next_metrics = time.monotonic()
def get(path):
    global n, errors
    try:
        with urllib.request.urlopen(base + path, timeout=5) as r:
            r.read()
        n += 1
    except OSError:
        errors += 1
while not stop:
    now = time.monotonic()
    if now >= next_page:
        next_page = now + page_s
        for p in ("/api/status", "/api/nodes", "/api/packets"):
            get(p)
    if now >= next_metrics:
        next_metrics = now + 1.0
        get("/metrics")
    time.sleep(0.05)
print(n, errors, flush=True)
"""


class Scraper:
    """What a status page and a Prometheus server do to the listener while frames flow: another process,
    so that its CPU is not counted as the gateway's."""

    def __init__(self, port: int, page_interval_s: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SCRAPER, f"http://127.0.0.1:{port}", str(page_interval_s)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.requests = self.errors = 0

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        self.requests, self.errors = (int(x) for x in out.split())


def run_variant(name, packets, broker, args, first_fcnt) -> dict:
    state = Path(
        tempfile.mkdtemp(prefix=f"lora-gw-bench-{name}-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    )
    out: dict[str, object] = {}
    gw = Gateway(state, broker, observer=name != "core")
    server = scraper = None
    try:
        if name == "web":
            from gateway.service.operations import start_web

            before = rss_mb()
            server = start_web(gw.ops, ("127.0.0.1", 0), None)
            scraper = Scraper(server.port, args.page_interval)
        paced, bulk = packets
        interval = 1.0 / args.rate
        gw.core.latencies_ms.clear()
        start = time.perf_counter()
        for i, p in enumerate(paced):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            gw.core.submit(p)
        if not gw.wait_published(len(paced), 60):
            raise RuntimeError(f"{name}: latency run: frames missing")
        lat = list(gw.core.latencies_ms)
        out["latency_ms_p50"] = round(percentile(lat, 0.50), 2)
        out["latency_ms_p99"] = round(percentile(lat, 0.99), 2)
        c0, t0 = time.process_time(), time.perf_counter()
        for p in bulk:
            gw.core.submit(p)
        if not gw.wait_published(len(paced) + len(bulk), 120):
            raise RuntimeError(f"{name}: throughput run: frames missing")
        out["frames_per_s"] = round(len(bulk) / (time.perf_counter() - t0), 1)
        out["frames_per_cpu_s"] = round(len(bulk) / (time.process_time() - c0), 1)
        if scraper is not None:
            out["web_rss_mb"] = round(rss_mb() - before, 2)
            scraper.stop()
            out["scrapes"] = scraper.requests
            out["scrape_errors"] = scraper.errors
            scraper = None
    finally:
        if scraper is not None:
            scraper.stop()
        if server is not None:
            server.stop()
        gw.close()
        shutil.rmtree(state, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print only the JSON result")
    ap.add_argument("--rate", type=float, default=200.0, help="offered frames/s for the latency run")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each latency run (default 10)")
    ap.add_argument("--frames", type=int, default=5000, help="frames for each throughput run (default 5000)")
    ap.add_argument("--page-interval", type=float, default=3.0, help="status page refresh, s (default 3)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU core")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    say = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    n_lat = int(args.rate * args.seconds)
    say(f"generating {n_lat + args.frames} packets through the emulated SX1276 and driver ...")
    all_packets = make_packets(n_lat + args.frames)
    packets = (all_packets[:n_lat], all_packets[n_lat:])
    broker = PrivateMosquitto()
    result: dict[str, object] = {"rate": args.rate, "seconds": args.seconds, "frames": args.frames}
    try:
        for name in ("core", "observer", "web"):
            say(f"{name}: {n_lat} frames at {args.rate:g}/s, then {args.frames} at once ...")
            result[name] = run_variant(name, packets, broker.url, args, 0)
    finally:
        broker.stop()
    web, obs, core = result["web"], result["observer"], result["core"]  # type: ignore[assignment]
    result["ratios"] = {
        "web_over_observer_latency_p50": round(web["latency_ms_p50"] / obs["latency_ms_p50"], 3),
        "web_over_observer_latency_p99": round(web["latency_ms_p99"] / obs["latency_ms_p99"], 3),
        "web_over_observer_frames_per_cpu_s": round(web["frames_per_cpu_s"] / obs["frames_per_cpu_s"], 3),
        "observer_over_core_frames_per_cpu_s": round(obs["frames_per_cpu_s"] / core["frames_per_cpu_s"], 3),
        "observer_over_core_latency_p99": round(obs["latency_ms_p99"] / core["latency_ms_p99"], 3),
    }
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
