"""The project's one root error type.

Every layer raises a subclass of :class:`GatewayError` carrying a machine-readable
``reason`` (counted in stats, logged) and a one-line human message. Callers catch
``GatewayError`` and nothing broader.
"""

from __future__ import annotations

from enum import Enum


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""

    reason: str = "error"

    def __init__(self, message: str, reason: str | Enum | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason.value if isinstance(reason, Enum) else str(reason)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.reason


class ConfigError(GatewayError):
    """A configuration value is missing or invalid; the message names the key."""

    reason = "config"


class HardwareError(GatewayError):
    """The radio or a GPIO line does not answer as expected; the message says what to check."""

    reason = "hardware"
