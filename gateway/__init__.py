"""LoRa telemetry gateway: SX1276 on SPI → checked frames → durable outbox → MQTT."""

__version__ = "0.1.0"
