"""Where accepted messages go: the durable SQLite outbox and the MQTT publisher."""
