from tests.service.conftest import broker, broker_factory  # noqa: F401  (a private Mosquitto per test)
