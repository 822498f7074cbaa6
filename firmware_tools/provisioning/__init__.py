"""Provisioning a node over a serial line (docs/provisioning.md): framing, the host side, a simulated node."""

from firmware_tools.provisioning.host import Provisioner, ProvisionError, open_port
from firmware_tools.provisioning.protocol import PROTOCOL_VERSION, NodeSettings

__all__ = ["PROTOCOL_VERSION", "NodeSettings", "ProvisionError", "Provisioner", "open_port"]
