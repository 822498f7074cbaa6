"""The radio half of doctor (placeholder).

The radio engineer's branch replaces this module with the real checks (``chip_version``, ``spi_link``,
``chip_reset``, ``dio0_irq``) and may add ``register_dump(cfg)`` for the support bundle; doctor and the
bundle only rely on :func:`radio_checks` and look ``register_dump`` up with ``hasattr``.
"""

from __future__ import annotations

from gateway.diag.report import Check
from gateway.service.config import Config


def radio_checks(cfg: Config) -> list[Check]:
    """The chip checks for ``cfg.radio``; none in this placeholder (the radio half replaces it)."""
    return []
