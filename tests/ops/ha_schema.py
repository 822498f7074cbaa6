"""A validator for Home Assistant MQTT sensor discovery configs, written from HA's documentation (MQTT
sensor and MQTT discovery pages; sensor device classes and their units; state classes), independent of
gateway.sinks.homeassistant so that the gateway is checked against HA's rules, not against itself.

Every ``value_template`` is rendered with Jinja2's immutable sandbox (what HA renders templates with)
against a payload, as HA would for a message on the sensor's ``state_topic``.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

SENSOR_KEYS = {
    "name",
    "unique_id",
    "object_id",
    "default_entity_id",
    "state_topic",
    "value_template",
    "device_class",
    "unit_of_measurement",
    "state_class",
    "availability",
    "availability_mode",
    "availability_topic",
    "availability_template",
    "payload_available",
    "payload_not_available",
    "expire_after",
    "device",
    "origin",
    "entity_category",
    "force_update",
    "icon",
    "json_attributes_topic",
    "json_attributes_template",
    "qos",
    "enabled_by_default",
    "suggested_display_precision",
    "last_reset_value_template",
    "encoding",
    "platform",
    "entity_picture",
    "options",
}
DEVICE_KEYS = {
    "identifiers",
    "connections",
    "name",
    "model",
    "model_id",
    "manufacturer",
    "sw_version",
    "hw_version",
    "serial_number",
    "via_device",
    "suggested_area",
    "configuration_url",
}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
AVAILABILITY_KEYS = {"topic", "payload_available", "payload_not_available", "value_template"}
STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
# HA's sensor device classes (2025) with the units HA accepts for each; None: no unit allowed.
UNITS: dict[str, set[str] | None] = {
    "apparent_power": {"VA", "kVA", "mVA"},
    "aqi": set(),
    "area": {"m²", "cm²", "km²", "mm²", "in²", "ft²", "yd²", "mi²", "ac", "ha"},
    "atmospheric_pressure": {"cbar", "bar", "hPa", "mmHg", "inHg", "kPa", "mbar", "Pa", "psi"},
    "battery": {"%"},
    "blood_glucose_concentration": {"mg/dL", "mmol/L"},
    "carbon_dioxide": {"ppm"},
    "carbon_monoxide": {"ppm"},
    "current": {"A", "mA"},
    "data_rate": {"bit/s", "kbit/s", "Mbit/s", "Gbit/s", "B/s", "kB/s", "MB/s", "GB/s", "MiB/s", "GiB/s"},
    "data_size": {"bit", "kbit", "Mbit", "Gbit", "B", "kB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"},
    "date": None,
    "distance": {"km", "m", "cm", "mm", "mi", "nmi", "yd", "in", "ft"},
    "duration": {"d", "h", "min", "s", "ms", "µs"},
    "energy": {"J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh", "cal", "kcal", "Mcal", "Gcal"},
    "energy_storage": {"J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh"},
    "enum": None,
    "frequency": {"Hz", "kHz", "MHz", "GHz"},
    "gas": {"m³", "ft³", "CCF", "L"},
    "humidity": {"%"},
    "illuminance": {"lx"},
    "irradiance": {"W/m²", "BTU/(h⋅ft²)"},
    "moisture": {"%"},
    "monetary": set(),
    "nitrogen_dioxide": {"µg/m³"},
    "ozone": {"µg/m³"},
    "ph": set(),
    "pm1": {"µg/m³"},
    "pm10": {"µg/m³"},
    "pm25": {"µg/m³"},
    "power_factor": {"%"},
    "power": {"mW", "W", "kW", "MW", "GW", "TW"},
    "precipitation": {"cm", "in", "mm"},
    "precipitation_intensity": {"in/d", "in/h", "mm/d", "mm/h"},
    "pressure": {"cbar", "bar", "hPa", "mmHg", "inHg", "kPa", "mbar", "Pa", "psi"},
    "reactive_power": {"var", "kvar"},
    "signal_strength": {"dB", "dBm"},
    "sound_pressure": {"dB", "dBA"},
    "speed": {"ft/s", "in/d", "in/h", "in/s", "km/h", "kn", "m/s", "mph", "mm/d", "mm/s"},
    "sulphur_dioxide": {"µg/m³"},
    "temperature": {"°C", "°F", "K"},
    "timestamp": None,
    "volatile_organic_compounds": {"µg/m³", "mg/m³"},
    "voltage": {"V", "mV", "µV", "kV", "MV"},
    "volume": {"L", "mL", "gal", "fl. oz.", "m³", "ft³", "CCF"},
    "volume_flow_rate": {"m³/h", "ft³/min", "L/min", "gal/min", "mL/s"},
    "water": {"L", "gal", "m³", "ft³", "CCF"},
    "weight": {"kg", "g", "mg", "µg", "oz", "lb", "st"},
    "wind_direction": {"°"},
    "wind_speed": {"Beaufort", "ft/s", "km/h", "kn", "m/s", "mph"},
}
TOTAL_ONLY = {"energy", "gas", "water", "precipitation", "monetary"}  # measurement is refused for these
NO_STATE_CLASS = {"date", "enum", "timestamp"}
TOPIC = re.compile(r"^[^/#+]+/sensor/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+/config$")
_env = ImmutableSandboxedEnvironment()


def validate(topic: str, cfg: dict[str, Any]) -> list[str]:
    """Problems HA would report for this sensor config (empty: accepted)."""
    bad: list[str] = []
    if not TOPIC.match(topic):
        bad.append(f"topic {topic!r} is not <prefix>/sensor/<node_id>/<object_id>/config")
    extra = set(cfg) - SENSOR_KEYS
    if extra:
        bad.append(f"unknown keys {sorted(extra)}")
    if not isinstance(cfg.get("state_topic"), str) or not cfg["state_topic"]:
        bad.append("state_topic is required")
    if not cfg.get("unique_id"):
        bad.append("unique_id missing (no entity registry entry, no device)")
    dc, unit, sc = cfg.get("device_class"), cfg.get("unit_of_measurement"), cfg.get("state_class")
    if dc is not None:
        if dc not in UNITS:
            bad.append(f"device_class {dc!r} is not a sensor device class")
        else:
            allowed = UNITS[dc]
            if allowed is None and unit is not None:
                bad.append(f"device_class {dc} takes no unit, got {unit!r}")
            elif allowed and unit not in allowed:
                bad.append(f"unit {unit!r} is not valid for device_class {dc} ({sorted(allowed)})")
            if dc in NO_STATE_CLASS and sc is not None:
                bad.append(f"device_class {dc} takes no state_class")
            if dc in TOTAL_ONLY and sc == "measurement":
                bad.append(f"device_class {dc} cannot have state_class measurement")
    if sc is not None and sc not in STATE_CLASSES:
        bad.append(f"state_class {sc!r} is invalid")
    if "expire_after" in cfg and (not isinstance(cfg["expire_after"], int) or cfg["expire_after"] <= 0):
        bad.append("expire_after must be a positive integer")
    if cfg.get("entity_category") not in (None, "diagnostic"):
        bad.append(f"entity_category {cfg.get('entity_category')!r} is invalid for a sensor")
    if cfg.get("availability_mode") not in (None, "all", "any", "latest"):
        bad.append("availability_mode must be all, any or latest")
    for a in cfg.get("availability", []):
        if set(a) - AVAILABILITY_KEYS or "topic" not in a:
            bad.append(f"availability entry {a} is invalid")
    dev = cfg.get("device")
    if dev is not None:
        if set(dev) - DEVICE_KEYS:
            bad.append(f"unknown device keys {sorted(set(dev) - DEVICE_KEYS)}")
        if not dev.get("identifiers") and not dev.get("connections"):
            bad.append("device needs identifiers or connections")
        name = cfg.get("name")
        if isinstance(name, str) and dev.get("name") and name.lower().startswith(str(dev["name"]).lower()):
            bad.append(f"entity name {name!r} repeats the device name")
    origin = cfg.get("origin")
    if origin is not None and (set(origin) - ORIGIN_KEYS or "name" not in origin):
        bad.append(f"origin {origin} is invalid")
    return bad


def render(cfg: dict[str, Any], payload: bytes) -> str:
    """The sensor's state for ``payload`` as HA computes it (value_template over value_json)."""
    text = payload.decode()
    template = cfg.get("value_template")
    if template is None:
        return text
    return _env.from_string(template).render(value_json=json.loads(text), value=text).strip()


def check_state(cfg: dict[str, Any], state: str) -> str | None:
    """Why HA would refuse this state for the sensor (None: fine)."""
    if cfg.get("device_class") == "timestamp":
        try:
            return None if datetime.fromisoformat(state).tzinfo is not None else "timestamp without timezone"
        except ValueError:
            return f"{state!r} is not an ISO 8601 timestamp"
    if cfg.get("unit_of_measurement") is not None or cfg.get("state_class") is not None:
        try:
            return None if math.isfinite(float(state)) else f"{state!r} is not finite"
        except ValueError:
            return f"{state!r} is not a number"
    return None
