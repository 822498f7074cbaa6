"""Wiring of the downlink: state database, duty-cycle ledger, command store, the radio thread's runner,
the MQTT command subscription. The decisions are gateway.downlink.manager's."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from gateway import statedb
from gateway.downlink.commands import DownlinkStore
from gateway.downlink.dutycycle import ledger_for
from gateway.downlink.manager import Downlinker, DownlinkSettings
from gateway.downlink.nodeinfo import NodeInfoStore
from gateway.downlink.scheduler import TxQueue, TxRunner
from gateway.frames import NodeRegistry, RegistryError
from gateway.pipeline.models import InstalledModels
from gateway.service.config import Config, RadioSection
from gateway.service.radio import lora_config
from gateway.sinks.mqtt import MqttSink

log = logging.getLogger(__name__)


def settings(cfg: Config) -> DownlinkSettings:
    d = cfg.downlink
    return DownlinkSettings(
        enabled=d.enabled,
        rx_delay_s=d.rx_delay_ms / 1000.0,
        frequency_hz=d.frequency_hz or None,
        max_late_s=d.max_late_ms / 1000.0,
        max_queue=d.max_queue,
    )


def for_config(cfg: Config, db_file: Path, registry: NodeRegistry, sink: MqttSink, source) -> DownlinkService:
    """``lora-gw run``'s downlink, from the ``[downlink]`` section."""
    base = f"{cfg.mqtt.topic_prefix}/{cfg.gateway.id}/nodes"
    return DownlinkService(cfg.radio, settings(cfg), base, db_file, registry, sink, source)


class DownlinkService:
    """Everything the downlink needs, built in the core thread (it owns the SQLite connection)."""

    def __init__(
        self,
        radio: RadioSection,
        s: DownlinkSettings,
        topic_base: str,
        db_file: Path,
        registry: NodeRegistry,
        sink: MqttSink,
        source,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.db = statedb.connect(db_file)
        self.ledger = ledger_for(radio, self.db, wall)
        self.store = DownlinkStore(self.db, wall, s.max_queue)
        self.info = NodeInfoStore(self.db)
        self._models = InstalledModels(db_file.parent)
        self.queue = TxQueue()
        self.runner: TxRunner = source.attach_downlink(self.queue, s.max_late_s)
        self._registry = registry
        base = topic_base
        self.manager = Downlinker(
            registry.get,
            self.store,
            self.ledger,
            self.queue,
            lora_config(radio).time_on_air_s,
            s,
            node_by_topic=self._node,
            topic_base=base,
            info=self.info,
            installed=self._installed,
        )
        self._base = base
        self.manager.tx_stats = self.runner.stats.as_dict
        self.manager.home_freq_hz = radio.frequency_hz
        sink.subscribe(f"{base}/+/command", self._on_command)

    def _node(self, ref: str):
        try:
            node = self._registry.find(ref)
        except (RegistryError, ValueError):
            return None
        return self._registry.get(node.node_id)  # with a key from the secrets file, if any

    def _installed(self, model_id: int, version: int) -> bytes | None:
        model = self._models.model(model_id, version)
        return None if model is None or model.version != version else model.fingerprint

    def _on_command(self, topic: str, payload: bytes) -> None:
        node_ref = topic[len(self._base) + 1 :].split("/", 1)[0]
        self.manager.command(node_ref, payload)

    def stats(self) -> dict:
        """The stats topic's ``downlink`` object (and the demo's figures)."""
        return self.manager.stats()

    def close(self) -> None:
        self.db.close()
