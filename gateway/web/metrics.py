"""Prometheus exposition of the stats topic's figures (conventional ``lora_gw_`` names, units in names).

A custom collector turns the latest stats snapshot (taken by the core thread every few seconds) into metric
families at scrape time: nothing is updated per packet, so metrics cost the pipeline nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


class StatsCollector(Collector):
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot() or {}
        mqtt = s.get("mqtt") or {}
        radio = s.get("radio") or {}
        drops = s.get("drops") or {}

        def counter(name: str, doc: str, value: Any) -> Iterator[Metric]:
            v = _num(value)
            if v is not None:
                yield CounterMetricFamily(f"lora_gw_{name}", doc, value=v)

        def gauge(name: str, doc: str, value: Any) -> Iterator[Metric]:
            v = _num(value)
            if v is not None:
                yield GaugeMetricFamily(f"lora_gw_{name}", doc, value=v)

        yield from counter("packets_received", "Packets the radio delivered.", s.get("received"))
        yield from counter("frames_accepted", "Frames accepted and durably stored.", s.get("accepted"))
        dropped = CounterMetricFamily(
            "lora_gw_packets_dropped", "Packets dropped, by reason.", labels=["reason"]
        )
        for reason, n in sorted(drops.items()):
            dropped.add_metric([reason], float(n))
        yield dropped
        crc = radio.get("crc_failed", drops.get("radio_crc_failed", 0))
        yield from counter("radio_crc_failures", "Packets received with a failed radio CRC.", crc)
        pub = CounterMetricFamily(
            "lora_gw_messages_published", "Messages the broker acknowledged.", labels=["kind"]
        )
        pub.add_metric(["telemetry"], float(s.get("published", 0)))
        pub.add_metric(["raw"], float(s.get("raw_published", 0)))
        yield pub
        yield from counter("messages_refused", "Publishes the broker refused.", s.get("refused"))
        yield from counter("frames_passed", "Frames that passed every check.", s.get("passed"))
        yield from counter(
            "frames_dropped_disk_full", "Frames not stored: disk full.", s.get("dropped_disk_full")
        )
        yield from counter("frames_estimated", "Gap estimates published.", s.get("estimated"))
        yield from counter("model_failures", "Frames a model failed to decode.", s.get("model_failures"))
        yield from counter("frames_parked", "Messages parked as unpublishable by this run.", s.get("parked"))
        yield from gauge(
            "outbox_pending_commit_frames", "Frames waiting for the group commit.", s.get("pending_commit")
        )
        storage = s.get("storage") or {}
        free = _num(storage.get("free_mb"))
        yield from gauge(
            "storage_free_bytes",
            "Free space for the state directory.",
            None if free is None else free * 1048576,
        )
        yield from gauge(
            "storage_disk_full", "1 while new frames cannot be stored.", 1 if storage.get("disk_full") else 0
        )
        yield from gauge("outbox_depth_frames", "Stored frames not yet published.", s.get("backlog"))
        yield from gauge(
            "outbox_oldest_age_seconds", "Age of the oldest unpublished frame.", s.get("outbox_oldest_age_s")
        )
        yield from gauge(
            "outbox_size_bytes", "Size of the state database (with its WAL).", s.get("outbox_bytes")
        )
        outbox = s.get("outbox") or {}
        yield from gauge("outbox_parked_frames", "Frames parked as unpublishable.", outbox.get("parked"))
        yield from counter(
            "mqtt_reconnects",
            "Connections to the broker after the first.",
            max(0, int(mqtt.get("connects", 0)) - 1),
        )
        yield from counter(
            "mqtt_loop_restarts", "MQTT client rebuilds by the watchdog.", mqtt.get("loop_restarts")
        )
        yield from gauge(
            "mqtt_connected", "1 while connected to the broker.", 1 if mqtt.get("connected") else 0
        )
        yield from gauge("mqtt_inflight_messages", "Publishes awaiting PUBACK.", mqtt.get("inflight"))
        yield from counter(
            "radio_recoveries", "Radio recoveries (missed IRQ, stalled receiver).", radio.get("recoveries", 0)
        )
        yield from gauge("radio_noise_floor_dbm", "Measured noise floor.", radio.get("noise_floor_dbm"))
        yield from gauge(
            "receive_rate_per_minute", "Packets received in the last minute.", s.get("rx_per_min")
        )
        yield from gauge("uptime_seconds", "Seconds since the service started.", s.get("uptime_s"))
        lat = s.get("latency_ms") or {}
        lat_g = GaugeMetricFamily(
            "lora_gw_publish_latency_seconds", "Receive-to-PUBACK latency quantiles.", labels=["quantile"]
        )
        for q, key in (("0.5", "p50"), ("0.99", "p99")):
            if _num(lat.get(key)) is not None:
                lat_g.add_metric([q], lat[key] / 1000.0)
        yield lat_g
        nodes = s.get("nodes") or {}
        families = {
            "rssi": GaugeMetricFamily("lora_gw_node_rssi_dbm", "Last RSSI per node.", labels=["node"]),
            "snr": GaugeMetricFamily("lora_gw_node_snr_db", "Last SNR per node.", labels=["node"]),
            "lost": CounterMetricFamily(
                "lora_gw_node_counter_gaps", "Frames missing from the counter.", labels=["node"]
            ),
            "frames": CounterMetricFamily(
                "lora_gw_node_frames", "Telemetry frames published.", labels=["node"]
            ),
            "online": GaugeMetricFamily("lora_gw_node_online", "1 while the node reports.", labels=["node"]),
        }
        for name, n in sorted(nodes.items()):
            for key, fam in families.items():
                v = _num(n.get(key)) if key != "online" else (1.0 if n.get("online") else 0.0)
                if v is not None:
                    fam.add_metric([name], v)
        yield from families.values()
        bps = GaugeMetricFamily(
            "lora_gw_model_bytes_per_sample", "Live payload bytes per sample, per model.", labels=["model"]
        )
        for model, m in sorted((s.get("models") or {}).items()):
            if _num(m.get("bytes_per_sample")) is not None:
                bps.add_metric([model], m["bytes_per_sample"])
        yield bps
        # issue 18: drift (gateway.codec.drift), 1 while a model's live bytes/sample stay degraded
        drift = GaugeMetricFamily(
            "lora_gw_model_drift", "1 while the model drifts (see lora-gw model retrain).", labels=["model"]
        )
        degradation = GaugeMetricFamily(
            "lora_gw_model_drift_degradation_pct",
            "Live bytes/sample over the drift window, percent above the model's evaluation figure.",
            labels=["model"],
        )
        for model, m in sorted((s.get("models") or {}).items()):
            d = m.get("drift") if isinstance(m.get("drift"), dict) else None
            if d is not None:
                drift.add_metric([model], 1.0 if d.get("drift") else 0.0)
                if _num(d.get("degradation_pct")) is not None:
                    degradation.add_metric([model], d["degradation_pct"])
        yield drift
        yield degradation


def render(snapshot: Callable[[], dict[str, Any]]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(snapshot))
    return generate_latest(registry)
