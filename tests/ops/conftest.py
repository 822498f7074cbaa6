"""Fixtures for the operations tests: the private Mosquitto of the service tests."""

from tests.service.conftest import broker, broker_factory  # noqa: F401 - fixtures, used by name
