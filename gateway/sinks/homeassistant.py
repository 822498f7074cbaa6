"""Home Assistant MQTT discovery: one HA device per node (via the gateway's device), one sensor per reading.

Config topics are ``<prefix>/sensor/<object>/<key>/config``, retained. What a sensor says is built from the
telemetry itself (``values``: type, unit; ``readings``: the flat keys its ``value_template`` reads), so a
node announces exactly the channels it sends, and a model with new channels re-announces by itself.
``device_class`` is set only where HA documents the unit for that class (:data:`DEVICE_CLASS_UNITS`): a
unit HA does not pair with a class gets no class rather than a wrong one (HA would reject the entity).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from gateway import __version__
from gateway.frames import lpp
from gateway.pipeline.render import reading_keys
from gateway.sinks.monitor import expire_after_s  # HA's expire_after is the node's expiry

ORIGIN = {"name": "lora-gw", "sw_version": __version__}
MANUFACTURER = "lora-gw"

# HA's documented units per sensor device class (the subset a LoRa sensor node can report).
DEVICE_CLASS_UNITS: dict[str, frozenset[str]] = {
    "atmospheric_pressure": frozenset({"cbar", "bar", "hPa", "mmHg", "inHg", "kPa", "mbar", "Pa", "psi"}),
    "pressure": frozenset({"cbar", "bar", "hPa", "mmHg", "inHg", "kPa", "mbar", "Pa", "psi"}),
    "temperature": frozenset({"°C", "°F", "K"}),
    "humidity": frozenset({"%"}),
    "moisture": frozenset({"%"}),
    "battery": frozenset({"%"}),
    "illuminance": frozenset({"lx"}),
    "irradiance": frozenset({"W/m²", "BTU/(h⋅ft²)"}),
    "voltage": frozenset({"V", "mV", "µV", "kV", "MV"}),
    "current": frozenset({"A", "mA"}),
    "frequency": frozenset({"Hz", "kHz", "MHz", "GHz"}),
    "power": frozenset({"mW", "W", "kW", "MW", "GW", "TW"}),
    "energy": frozenset({"Wh", "kWh", "MWh", "GWh", "TWh", "MJ", "GJ"}),
    "distance": frozenset({"km", "m", "cm", "mm", "mi", "nmi", "yd", "in", "ft"}),
    "wind_speed": frozenset({"ft/s", "km/h", "kn", "m/s", "mph", "Beaufort"}),
    "speed": frozenset({"ft/s", "km/h", "kn", "m/s", "mph", "in/d", "in/h", "mm/d", "mm/h", "in/s", "mm/s"}),
    "precipitation": frozenset({"cm", "in", "mm"}),
    "signal_strength": frozenset({"dB", "dBm"}),
    "duration": frozenset({"d", "h", "min", "s", "ms"}),
    "carbon_dioxide": frozenset({"ppm"}),
    "pm25": frozenset({"µg/m³"}),
    "pm10": frozenset({"µg/m³"}),
    "weight": frozenset({"kg", "g", "mg", "µg", "oz", "lb", "st"}),
}
# Device classes whose state_class must be a total (HA refuses ``measurement`` for them).
TOTAL_CLASSES = frozenset({"energy", "precipitation"})
# Reading type (LPP type name or model channel name) → the HA device class it means.
TYPE_CLASSES: dict[str, str] = {
    "temperature": "temperature",
    "humidity": "humidity",
    "barometer": "atmospheric_pressure",
    "pressure": "atmospheric_pressure",
    "illuminance": "illuminance",
    "voltage": "voltage",
    "current": "current",
    "frequency": "frequency",
    "power": "power",
    "energy": "energy",
    "distance": "distance",
    "altitude": "distance",
    "gps_altitude": "distance",
    "irradiance": "irradiance",
    "wind_speed": "wind_speed",
    "battery": "battery",
}


def safe_id(text: str) -> str:
    """One MQTT topic level HA accepts as a node or object id: ``[a-zA-Z0-9_-]``."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", text) or "_"


def classify(kind: str, unit: str | None) -> tuple[str | None, str | None]:
    """``(device_class, state_class)`` for a numeric reading of ``kind`` in ``unit``."""
    dc = TYPE_CLASSES.get(kind, kind if kind in DEVICE_CLASS_UNITS else None)
    if dc is not None and (unit is None or unit not in DEVICE_CLASS_UNITS[dc]):
        dc = None
    return dc, ("total_increasing" if dc in TOTAL_CLASSES else "measurement")


@dataclass(frozen=True, slots=True)
class Sensor:
    """One announced reading: its flat key and what HA is told about it."""

    key: str
    unit: str | None
    device_class: str | None
    state_class: str | None


def sensors_of(values: list[dict[str, Any]]) -> tuple[Sensor, ...]:
    """The numeric readings of a telemetry message's ``values`` (hex strings and the like are skipped)."""
    out = []
    for key, entry, value in reading_keys(values):
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        kind = str(entry.get("type") or key)
        unit = entry.get("unit")
        if kind == "gps":
            field_name = key.rsplit("_", 1)[-1]
            unit, kind = lpp.GPS_UNITS.get(field_name), f"gps_{field_name}"
        dc, sc = classify(kind, unit)
        out.append(Sensor(key, unit or None, dc, sc))
    return tuple(out)


class Discovery:
    """Builds discovery config messages for one gateway (topics as rendered by gateway.pipeline.render)."""

    def __init__(self, gateway_id: str, base_topic: str, prefix: str = "homeassistant") -> None:
        self.gateway_id = gateway_id
        self.base = base_topic  # "<topic_prefix>/<gateway id>"
        self.prefix = prefix
        self.gateway_ident = f"lora_gw_{safe_id(gateway_id)}"

    @property
    def birth_topic(self) -> str:
        return f"{self.prefix}/status"

    def _availability(self, node_topic: str | None) -> dict[str, Any]:
        topics = [f"{self.base}/status"] + ([f"{node_topic}/status"] if node_topic else [])
        return {
            "availability": [
                {"topic": t, "payload_available": "online", "payload_not_available": "offline"}
                for t in topics
            ],
            "availability_mode": "all",
        }

    def gateway_device(self) -> dict[str, Any]:
        return {
            "identifiers": [self.gateway_ident],
            "name": f"LoRa gateway {self.gateway_id}",
            "manufacturer": MANUFACTURER,
            "model": "LoRa telemetry gateway",
            "sw_version": __version__,
        }

    def _config(self, obj: str, key: str, body: dict[str, Any]) -> tuple[str, bytes]:
        topic = f"{self.prefix}/sensor/{obj}/{safe_id(key)}/config"
        body = {**body, "unique_id": f"{obj}_{safe_id(key)}", "origin": ORIGIN}
        return topic, json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()

    def gateway_configs(self, stats_interval_s: float) -> list[tuple[str, bytes]]:
        """Diagnostic sensors of the gateway itself, read from its stats topic."""
        dev = self.gateway_device()
        common = {
            "state_topic": f"{self.base}/stats",
            "device": dev,
            "entity_category": "diagnostic",
            "expire_after": expire_after_s(stats_interval_s),
            **self._availability(None),
        }
        rows = [
            (
                "receive_rate",
                "Receive rate",
                "{{ value_json.rx_per_min }}",
                "packets/min",
                None,
                "measurement",
            ),
            (
                "crc_failures",
                "CRC failures",
                "{{ value_json.drops.get('radio_crc_failed', 0) }}",
                None,
                None,
                "total_increasing",
            ),
            ("outbox_depth", "Outbox depth", "{{ value_json.backlog }}", "frames", None, "measurement"),
            (
                "outbox_oldest_age",
                "Outbox oldest age",
                "{{ value_json.outbox_oldest_age_s }}",
                "s",
                "duration",
                "measurement",
            ),
            (
                "radio_recoveries",
                "Radio recoveries",
                "{{ value_json.radio.get('recoveries', 0) }}",
                None,
                None,
                "total_increasing",
            ),
            (  # issue 18: models whose live bytes/sample drift (the stats' models.<key>.drift.drift)
                "models_drifting",
                "Models drifting",
                "{{ value_json.models.values() | selectattr('drift', 'defined') | map(attribute='drift')"
                " | selectattr('drift') | list | count }}",
                "models",
                None,
                "measurement",
            ),
        ]
        out = []
        for key, name, template, unit, dc, sc in rows:
            body: dict[str, Any] = {"name": name, **common, "value_template": template, "state_class": sc}
            if unit:
                body["unit_of_measurement"] = unit
            if dc:
                body["device_class"] = dc
            out.append(self._config(self.gateway_ident, key, body))
        return out

    def node_object(self, node_id: int) -> str:
        return f"{self.gateway_ident}_{node_id:08x}"

    def node_configs(
        self, node_id: int, name: str, sensors: tuple[Sensor, ...], interval_s: float, kind: str
    ) -> list[tuple[str, bytes]]:
        """Config messages for one node: a sensor per reading plus its diagnostics (RSSI, SNR, last seen,
        frame loss). ``name`` is the node's topic name (telemetry at ``<base>/nodes/<name>/telemetry``)."""
        obj = self.node_object(node_id)
        node_topic = f"{self.base}/nodes/{name}"
        device = {
            "identifiers": [obj],
            "name": name,
            "manufacturer": MANUFACTURER,
            "model": f"LoRa node ({kind})",
            "serial_number": f"{node_id:08x}",
            "via_device": self.gateway_ident,
        }
        expire = expire_after_s(interval_s)
        telemetry = {"state_topic": f"{node_topic}/telemetry", "device": device}
        out = []
        for s in sensors:
            body: dict[str, Any] = {
                "name": s.key.replace("_", " ").capitalize(),
                **telemetry,
                "value_template": f"{{{{ value_json.readings[{json.dumps(s.key)}] }}}}",
                "expire_after": expire,
                **self._availability(node_topic),
            }
            if s.device_class:
                body["device_class"] = s.device_class
            if s.unit:
                body["unit_of_measurement"] = s.unit
            if s.state_class:
                body["state_class"] = s.state_class
            out.append(self._config(obj, s.key, body))
        diag = {"entity_category": "diagnostic", **self._availability(None)}
        for key, name, template, unit, dc in (
            ("rssi", "RSSI", "{{ value_json.radio.rssi }}", "dBm", "signal_strength"),
            ("snr", "SNR", "{{ value_json.radio.snr }}", "dB", "signal_strength"),
        ):
            body = {"name": name, **telemetry, **diag, "value_template": template, "expire_after": expire}
            body.update(unit_of_measurement=unit, device_class=dc, state_class="measurement")
            out.append(self._config(obj, key, body))
        out.append(
            self._config(
                obj,
                "last_seen",
                {
                    "name": "Last seen",
                    **telemetry,
                    **diag,
                    "value_template": "{{ value_json.received }}",
                    "device_class": "timestamp",
                },
            )
        )
        out.append(
            self._config(
                obj,
                "frame_loss",
                {
                    "name": "Frame loss",
                    "state_topic": f"{node_topic}/link",
                    "device": device,
                    **diag,
                    "value_template": "{{ value_json.loss_pct }}",
                    "unit_of_measurement": "%",
                    "state_class": "measurement",
                },
            )
        )
        return out
