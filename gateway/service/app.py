"""Wiring: Config → registry, decoder, outbox, MQTT sink, radio source → the core loop.

The calling thread becomes the core thread (it owns every SQLite connection and drives the MQTT
client: paho has no thread of its own); the radio has one thread. SIGTERM/SIGINT set the stop event
and wake the core: the radio stops, everything heard is committed, in-flight publishes get a moment,
"offline" is published, the outbox closes.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from gateway import paths
from gateway.backup import ServiceLock, Snapshotter
from gateway.codec import CodecStats
from gateway.codec.drift import DriftingStats, DriftMonitor, DriftSettings
from gateway.errors import ConfigError
from gateway.frames import DecoderSettings, FrameDecoder, Node, NodeRegistry
from gateway.frames.registry import warn_unusable_names
from gateway.pipeline.models import InstalledModels
from gateway.pipeline.pipeline import Pipeline, PipelineSettings
from gateway.pipeline.render import NodeCache, Renderer
from gateway.service.config import Config, config_files, dir_problem, log_file_error
from gateway.service.core import Core, CoreSettings
from gateway.service.journal import use_journal_format
from gateway.service.notify import Notifier
from gateway.service.operations import Operations, OperationsSettings, start_web
from gateway.sinks.history import HistorySettings
from gateway.sinks.mqtt import MqttSettings, MqttSink, shown_url
from gateway.sinks.outbox import Outbox, OutboxSettings

log = logging.getLogger(__name__)


class KeyedRegistry(NodeRegistry):
    """The registry with node keys from the secrets file taking precedence over stored ones."""

    def __init__(self, db_file: Path, keys: dict[int, bytes]) -> None:
        super().__init__(db_file)
        self._keys = dict(keys)

    def _keyed(self, node: Node | None) -> Node | None:
        if node is None or node.node_id not in self._keys:
            return node
        return dataclasses.replace(node, key=self._keys[node.node_id])

    def get(self, node_id: int) -> Node | None:
        return self._keyed(super().get(node_id))

    def nodes(self) -> list[Node]:
        return [self._keyed(n) for n in super().nodes()]  # type: ignore[misc]


def mqtt_settings(cfg: Config) -> MqttSettings:
    """The sink's settings from the ``[mqtt]`` section: same-named fields carry over as they are."""
    m = cfg.mqtt
    derived = {
        "client_id": m.client_id or f"lora-gw-{cfg.gateway.id}",
        "status_topic": f"{m.topic_prefix}/{cfg.gateway.id}/status",
    }
    shared = {f.name: getattr(m, f.name) for f in dataclasses.fields(MqttSettings) if f.name not in derived}
    return MqttSettings(**shared, **derived)


def outbox_settings(cfg: Config) -> OutboxSettings:
    o = cfg.outbox
    return OutboxSettings(
        synchronous=o.synchronous,
        commit_frames=o.commit_frames,
        commit_interval_ms=o.commit_interval_ms,
        max_rows=o.max_rows,
        max_age_s=o.max_age_days * 86400.0,
        min_free_mb=o.min_free_mb,
        max_db_mb=o.max_db_mb,
    )


def history_settings(cfg: Config) -> HistorySettings:
    """[history]: the model frames kept for retraining (also tracks which version each node uses)."""
    h = cfg.history
    return HistorySettings(enabled=h.enabled, retention_days=h.retention_days, max_mb=h.max_mb)


def model_resolver(state_dir: Path, ttl_s: float = 10.0) -> InstalledModels:
    """The installed models behind a short-lived cache (a weight file is read and verified once per
    ``ttl_s``, a newly installed one noticed within ``ttl_s``): ``.candidates`` for the frame decoder,
    ``.model`` for the renderer."""
    return InstalledModels(state_dir, ttl_s)


def codec_stats(cfg: Config | None = None) -> CodecStats:
    """Live bytes per sample and prediction error per model, and drift ([models]), for the stats topic."""
    m = cfg.models if cfg is not None else None
    settings = DriftSettings() if m is None else DriftSettings(m.drift_threshold_pct, m.drift_window_h * 3600)
    return DriftingStats(DriftMonitor(settings))


def configure_logging(cfg: Config, verbose: int = 0) -> None:
    root = logging.getLogger()
    use_journal_format(root)  # under systemd: <N> priorities, no second timestamp
    if verbose == 0:
        root.setLevel(cfg.logging.level.upper())
    if cfg.logging.file:
        try:
            handler = logging.FileHandler(cfg.logging.file)
        except OSError as exc:  # checked at load already; the directory may have gone since
            raise log_file_error(cfg.logging.file, exc) from None
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)


class Gateway:
    """Everything ``lora-gw run`` runs; build it and call ``run`` in the thread that built it."""

    def __init__(self, cfg: Config, state_dir: str | None = None, notifier: Notifier | None = None) -> None:
        self.cfg = cfg
        chosen = state_dir or cfg.gateway.state_dir
        if chosen:
            problem = dir_problem(chosen, "--state-dir" if state_dir else "gateway.state_dir")
            if problem:
                raise ConfigError(problem)
        self.state_dir = paths.state_dir(chosen)
        paths.check_private(self.state_dir)  # before anything is opened: the keys must not be readable
        # Held while the service runs: `lora-gw state restore` refuses to replace the database under it.
        self.lock = ServiceLock(self.state_dir, "lora-gw run").acquire()
        try:
            self._build(notifier)
        except BaseException:
            self.lock.release()  # a service that did not start holds nothing
            raise

    def _build(self, notifier: Notifier | None) -> None:
        cfg = self.cfg
        s = cfg.state
        self.snapshotter = (
            Snapshotter(
                self.state_dir,
                s.backup_dir,
                cfg.gateway.id,
                s.backup_interval_h,
                s.backup_keep,
                config_files(cfg),
                s.backup_passphrase_file,
            )
            if s.backup_dir
            else None
        )
        db = self.state_dir / paths.DB_NAME
        # The outbox opens first: alone on the file it may switch it to small pages (fewer bytes per commit).
        self.outbox = Outbox(db, outbox_settings(cfg), history=history_settings(cfg))
        self.registry = KeyedRegistry(db, dict(cfg.node_keys)) if cfg.node_keys else NodeRegistry(db)
        self.source = self._radio()
        warn_unusable_names(self.registry.nodes())
        self.models = model_resolver(self.state_dir)
        self.decoder = FrameDecoder(self.registry, DecoderSettings(), models=self.models.candidates)
        self.pipeline = Pipeline(self.decoder, PipelineSettings(crc_policy=cfg.radio.crc_policy))
        self.sink = MqttSink(mqtt_settings(cfg))
        self.renderer = Renderer(
            cfg.gateway.id,
            cfg.mqtt.topic_prefix,
            NodeCache(self.registry.get),
            self.models.model,
            codec_stats(cfg),
            gap_filling=cfg.nodes.gap_filling_for,
        )
        self.notifier = notifier or Notifier()
        self.downlink = self._downlink(db)
        self.operations = operations(cfg, self.registry, self.source, db)
        self.core = Core(
            self.pipeline,
            self.outbox,
            self.sink,
            self.renderer,
            CoreSettings(
                stats_interval_s=cfg.gateway.stats_interval_s,
                redecode_interval_s=cfg.outbox.redecode_interval_s,
                retain_telemetry=cfg.mqtt.retain_telemetry,
                radio_stall_s=radio_stall_s(self.notifier),
            ),
            notifier=self.notifier,
            radio_heartbeat=self.source.heartbeat,
            downlink=self.downlink.manager if self.downlink is not None else None,
            observer=self.operations,
        )
        self.operations.attach(self.core)
        self.stop_event = threading.Event()
        self.upkeep = self._upkeep()

    def _upkeep(self) -> Any:
        """[models] auto_retrain: the retraining thread; its code (history export, training) only if on."""
        m = self.cfg.models
        if m.auto_retrain == "off":
            return None
        from gateway.service.upkeep import ModelUpkeep

        return ModelUpkeep(
            self.state_dir, m.auto_retrain, auto_activate=m.auto_activate, min_gain_pct=m.min_gain_pct
        )

    def _downlink(self, db: Path) -> Any:
        if not self.cfg.downlink.enabled:
            return None
        from gateway.service.downlink import for_config

        return for_config(self.cfg, db, self.registry, self.sink, self.source)

    def _radio(self) -> Any:
        from gateway.service.radio import (
            DriverSource,
            SimNetwork,
            firmware_models,
            install_demo_model,
            lora_config,
            open_sx1276,
        )

        r = self.cfg.radio
        if r.backend == "emulator":
            e = r.emulator
            model = install_demo_model(self.state_dir)
            net = SimNetwork(
                e.nodes,
                e.interval_s,
                e.seed,
                e.loss,
                e.speed,
                model=model,
                config=lora_config(r),
                path_loss_db=e.path_loss_db,
                fault=e.fault,
                interferers=e.interferers,
                firmware=firmware_models(self.state_dir, model),
            )
            net.register(self.registry)
            return net
        return DriverSource(open_sx1276(r))

    def request_stop(self, *_args: object) -> None:
        self.stop_event.set()
        self.core.wake()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> None:
        http = self.cfg.http
        web = start_web(self.operations, http.listen, http.token) if http.listen else None
        self.sink.start()
        self.source.start(self.core.submit)
        r = self.cfg.radio
        self.notifier.ready(
            f"receiving {r.frequency_hz / 1e6:.3f} MHz SF{r.sf} ({r.backend}); "
            f"broker {shown_url(self.sink.settings)}"
        )
        log.info(
            "gateway %s running: radio %s, broker %s, credentials: %s, state %s, backups %s",
            self.cfg.gateway.id,
            r.backend,
            shown_url(self.sink.settings),
            self.cfg.mqtt.credentials_source,
            self.state_dir,
            f"every {self.cfg.state.backup_interval_h:g} h to {self.cfg.state.backup_dir}"
            if self.snapshotter
            else "off",
        )
        if self.snapshotter is not None:
            self.snapshotter.start()
        if self.upkeep is not None:
            self.upkeep.start()
        try:
            self.core.run(self.stop_event, before_shutdown=self.source.stop)
        finally:
            if web is not None:
                web.stop()
            if self.snapshotter is not None:
                self.snapshotter.stop()
            if self.upkeep is not None:
                self.upkeep.stop()
            self.registry.close()
            if self.downlink is not None:
                self.downlink.close()
            self.notifier.close()
            self.lock.release()


def operations(cfg: Config, registry: NodeRegistry, source: Any, db: Path) -> Operations:
    """Availability, Home Assistant discovery and the status page's figures (gateway.service.operations)."""
    return Operations(
        cfg.gateway.id,
        f"{cfg.mqtt.topic_prefix}/{cfg.gateway.id}",
        OperationsSettings(
            default_interval_s=cfg.nodes.report_interval_s,
            homeassistant=cfg.homeassistant.enabled,
            discovery_prefix=cfg.homeassistant.discovery_prefix,
            stats_interval_s=cfg.gateway.stats_interval_s,
            retain_telemetry=cfg.mqtt.retain_telemetry,
        ),
        NodeCache(registry.get),
        registry.nodes,
        getattr(source, "stats", None),
        db,
    )


def radio_stall_s(notifier: Notifier) -> float:
    """How long the radio thread may go without a heartbeat (it beats every receive timeout, 0.25 s) before
    the watchdog is starved: two ping intervals, so a hung SPI read trips systemd's WatchdogSec= within about
    one WatchdogSec; never under 2 s, never over 30 s."""
    wd = notifier.watchdog_interval_s
    return 30.0 if wd is None else min(30.0, max(2.0, 2 * wd))
