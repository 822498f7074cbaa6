"""The downlink direction: acknowledgements, MQTT commands to nodes, and the duty-cycle budget every
transmission goes through (docs/downlink.md)."""
