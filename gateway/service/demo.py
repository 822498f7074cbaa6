"""The hardware-free demo: emulated SX1276 + N simulated nodes → the real pipeline → a real broker.

Everything below the radio is the production path (frame checks, codec, SQLite outbox, MQTT with
PUBACK checks); only the radio is emulated (at register level, through the real driver). State lives
in a temporary directory. With no broker URL, a broker answering on 127.0.0.1:1883 is used, or a
private Mosquitto is started on a free loopback port when the binary is installed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway import paths
from gateway.downlink.manager import DownlinkSettings
from gateway.errors import ConfigError
from gateway.frames import FrameDecoder, NodeRegistry
from gateway.pipeline.pipeline import Pipeline
from gateway.pipeline.render import NodeCache, Renderer
from gateway.service.app import codec_stats, model_resolver
from gateway.service.broker import BrokerUnavailable, PrivateMosquitto, _answers
from gateway.service.config import ENV_PASSWORD, ENV_USERNAME, RadioSection
from gateway.service.core import Core, CoreSettings
from gateway.service.downlink import DownlinkService
from gateway.service.operations import Operations, OperationsSettings, start_web
from gateway.service.radio import SimNetwork, install_demo_model
from gateway.sinks.mqtt import MqttSettings, MqttSink
from gateway.sinks.outbox import Outbox
from gateway.sinks.url import BrokerUrl, parse_broker_url

log = logging.getLogger(__name__)

DEMO_GATEWAY_ID = "demo"
DEMO_INTERVAL_S = 4.0  # each simulated node reports every ~4 simulated seconds (ALOHA: ~15 % collide)
DEMO_SPEED = 5.0  # simulated seconds per real second


def with_env_credentials(broker: BrokerUrl, env: Mapping[str, str]) -> BrokerUrl:
    """The broker with ``LORA_GW_MQTT_USERNAME``/``_PASSWORD`` from ``env`` taking precedence, as for
    ``lora-gw run``: credentials need not be typed on a command line, where ``ps`` shows them to others."""
    username = env.get(ENV_USERNAME) or broker.username
    password = env.get(ENV_PASSWORD) or broker.password
    if password and not username:
        raise ConfigError(f"--broker: a password needs a user name (in the URL or ${ENV_USERNAME})")
    return replace(broker, username=username, password=password)


def run_demo(
    nodes: int,
    seconds: float | None,
    broker_url: str | None,
    on_reading: Callable[[dict[str, Any]], None] | None,
    *,
    speed: float = DEMO_SPEED,
    interval_s: float = DEMO_INTERVAL_S,
    seed: int = 1,
    env: Mapping[str, str] | None = None,
    confirmed: bool = False,
    web: tuple[str, int] | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Run the demo for ``seconds`` simulated seconds; returns the summary (see module docstring).

    ``seconds`` None: run (nodes keep sending) until ``stop`` is set. ``web``: serve the status page,
    ``/api/*`` and ``/metrics`` there. Home Assistant discovery is published as by ``lora-gw run``.

    ``on_reading`` is called (in the core thread) with each telemetry message as it is published. With a
    ``broker_url``, credentials in ``env`` (default: the process environment) override the URL's.
    """
    private: PrivateMosquitto | None = None
    if broker_url:
        env = os.environ if env is None else env
        broker = with_env_credentials(parse_broker_url(broker_url, "--broker"), env)
    elif _answers("127.0.0.1", 1883):
        broker = BrokerUrl("127.0.0.1", 1883, False)
    else:
        private = PrivateMosquitto()
        broker = private.url
    state = Path(tempfile.mkdtemp(prefix="lora-gw-demo-"))
    try:
        return _run(
            nodes, seconds, broker, on_reading, state, speed, interval_s, seed, private is not None,
            confirmed, web, stop,
        )
    finally:
        shutil.rmtree(state, ignore_errors=True)
        if private is not None:
            private.stop()


def _run(
    nodes: int,
    seconds: float | None,
    broker: BrokerUrl,
    on_reading: Callable[[dict[str, Any]], None] | None,
    state: Path,
    speed: float,
    interval_s: float,
    seed: int,
    private_broker: bool,
    confirmed: bool = False,
    web: tuple[str, int] | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    db = paths.db_path(state)
    outbox = Outbox(db)
    registry = NodeRegistry(db)
    model = install_demo_model(state)
    net = SimNetwork(nodes, interval_s=interval_s, seed=seed, speed=speed, model=model, confirmed=confirmed)
    net.register(registry)
    models = model_resolver(state)
    decoder = FrameDecoder(registry, models=models.candidates)
    pipeline = Pipeline(decoder)
    sink = MqttSink(
        MqttSettings(
            broker=broker,
            client_id=f"lora-gw-demo-{os.getpid()}",
            status_topic=f"lora/{DEMO_GATEWAY_ID}/status",
            reconnect_min_s=1,
            reconnect_max_s=2,
        )
    )
    renderer = Renderer(
        DEMO_GATEWAY_ID, "lora", NodeCache(registry.get), models.model, codec_stats()
    )

    vclock, wall0 = net.sim.clock, time.time()
    v0 = vclock.monotonic()
    downlink = DownlinkService(
        RadioSection(),
        DownlinkSettings(),
        f"lora/{DEMO_GATEWAY_ID}/nodes",
        db,
        registry,
        sink,
        net,
        wall=lambda: wall0 + vclock.monotonic() - v0,  # the budget's hour in simulated time
    )

    def published(topic: str, payload: bytes) -> None:
        if on_reading is not None and topic.endswith("/telemetry"):
            on_reading(json.loads(payload))

    ops = demo_operations(registry, net, db, interval_s / max(speed, 0.01))
    core = Core(
        pipeline,
        outbox,
        sink,
        renderer,
        CoreSettings(stats_interval_s=3600 if seconds is not None else 30, health_interval_s=0.5),
        on_published=published,
        radio_heartbeat=net.heartbeat,
        downlink=downlink.manager,
        observer=ops,
    )
    ops.attach(core)
    stop = stop or threading.Event()
    server = start_web(ops, web, None) if web is not None else None
    sink.start()
    deadline = time.monotonic() + 10
    while not sink.connected:
        core.step(0.05)
        if time.monotonic() > deadline:
            sink.stop()
            registry.close()
            outbox.close()
            if server is not None:
                server.stop()
            raise BrokerUnavailable(f"cannot connect to the broker at {broker.redacted()}")
    started = time.monotonic()
    net.start(core.submit, seconds=seconds)

    def watch() -> None:
        if seconds is None:
            return  # until ``stop`` is set (SIGINT/SIGTERM from the CLI)
        net.wait_transmissions(seconds / max(speed, 0.01) + 30)
        time.sleep(0.3)  # the last frames' time on air, then let the core publish the rest
        end = time.monotonic() + 10
        while time.monotonic() < end and (
            core.outbox.backlog or core.outbox.pending or len(core.packets) or len(downlink.queue)
        ):
            time.sleep(0.02)
        stop.set()
        core.wake()

    watcher = threading.Thread(target=watch, name="demo-watch", daemon=True)
    watcher.start()
    try:
        core.run(stop, before_shutdown=net.stop)
    finally:
        registry.close()
        if server is not None:
            server.stop()
    dstats = downlink.stats()
    downlink.close()
    fates = net.air_fates()
    heard = pipeline.received
    damaged = pipeline.drops.get("radio_crc_failed", 0)  # heard, but hit by a collision or noise
    return {
        "nodes": nodes,
        "seconds": seconds,
        "codec": "model" if model is not None else "lpp",
        "broker": broker.redacted() + (" (private mosquitto)" if private_broker else ""),
        "frames_sent": net.frames_sent,
        "frames_heard": heard,
        "frames_published": core.published + core.raw_published,
        "frames_lost_air": max(0, net.frames_sent - heard + damaged),
        "frames_dropped": dict(pipeline.drops),
        "frames_control": dict(pipeline.control),  # verified, not telemetry: node-info reports
        "bytes_on_air": net.bytes_on_air,
        "airtime_s": round(net.airtime_s, 3),
        "air": fates,
        "wall_s": round(time.monotonic() - started, 2),
        "confirmed": confirmed,
        "node_info_reports": dstats["node_info_reports"],
        "ack_requests_accepted": dstats["ack_requests"],
        "acks_sent": dstats["acks_sent"],
        "acks_received_by_nodes": net.acks_received_by_nodes,
        "ack_windows_missed": dstats["missed_windows"],
        "tx_dropped_duty_cycle": dstats["tx_dropped_duty_cycle"],
        "duty_cycle_used_percent": dstats["duty_cycle_used_percent"],
        "tx_max_start_error_ms": dstats["max_start_error_ms"],
    }


def demo_operations(registry: NodeRegistry, net: SimNetwork, db: Path, interval_s: float) -> Operations:
    """Availability and Home Assistant discovery for the demo's nodes (their real-time reporting interval)."""
    return Operations(
        DEMO_GATEWAY_ID,
        f"lora/{DEMO_GATEWAY_ID}",
        OperationsSettings(
            default_interval_s=interval_s, homeassistant=True, stats_interval_s=30, snapshot_interval_s=1.0
        ),
        lambda node_id: None,  # the demo's nodes report every interval_s of simulated time
        registry.nodes,
        net.stats,
        db,
    )
