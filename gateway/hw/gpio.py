"""GPIO access for the radio: RESET as an output, DIO0/DIO1 as rising-edge inputs.

Two backends behind one small interface: RPi.GPIO (Pi 1–4) and libgpiod v2 (everything with a GPIO
character device, and the only choice on the Pi 5, where RPi.GPIO cannot find the SoC). ``open_gpio``
picks one automatically. Pins are BCM numbers, which are the line offsets on the Pi's header chip.
Edge callbacks only record the pin and wake the waiter; the radio thread does the work.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import threading
from typing import Any, Protocol, runtime_checkable

from gateway.errors import HardwareError
from gateway.hw.clock import SYSTEM_CLOCK, Clock, wait_event

log = logging.getLogger(__name__)

# Labels of the gpiochip that carries the 40-pin header: Pi 5 (RP1), Pi 4, Pi 1-3.
HEADER_CHIP_LABELS = ("pinctrl-rp1", "pinctrl-bcm2711", "pinctrl-bcm2835")
CONSUMER = "lora-gw"


@runtime_checkable
class Gpio(Protocol):
    def setup_output(self, pin: int, value: bool) -> None: ...

    def write(self, pin: int, value: bool) -> None: ...

    def setup_rising(self, pin: int) -> None:
        """Make ``pin`` an input and report its rising edges through ``wait_rising``."""
        ...

    def read(self, pin: int) -> bool: ...

    def wait_rising(self, timeout_s: float | None) -> frozenset[int]:
        """Pins that rose since the last call; empty after ``timeout_s`` without an edge."""
        ...

    def last_edge_s(self, pin: int) -> float | None:
        """Clock time of the latest rising edge seen on ``pin`` (None if none yet)."""
        ...

    def close(self) -> None: ...


class RPiGpio:
    """RPi.GPIO backend (``module`` may be injected: the emulator's fake has the same surface)."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK, module: Any = None) -> None:
        if module is None:
            import RPi.GPIO as module  # type: ignore[import-not-found,no-redef]
        self._gpio = module
        self._clock = clock
        self._gpio.setwarnings(False)
        self._gpio.setmode(self._gpio.BCM)
        self._pins: set[int] = set()
        self._lock = threading.Lock()
        self._pending: set[int] = set()
        self._edge_times: dict[int, float] = {}
        self._event = threading.Event()

    def setup_output(self, pin: int, value: bool) -> None:
        self._gpio.setup(pin, self._gpio.OUT, initial=self._gpio.HIGH if value else self._gpio.LOW)
        self._pins.add(pin)

    def write(self, pin: int, value: bool) -> None:
        self._gpio.output(pin, self._gpio.HIGH if value else self._gpio.LOW)

    def setup_rising(self, pin: int) -> None:
        self._gpio.setup(pin, self._gpio.IN, pull_up_down=self._gpio.PUD_DOWN)
        self._gpio.add_event_detect(pin, self._gpio.RISING, callback=self._on_edge)
        self._pins.add(pin)

    def read(self, pin: int) -> bool:
        return bool(self._gpio.input(pin))

    def wait_rising(self, timeout_s: float | None) -> frozenset[int]:
        if not wait_event(self._clock, self._event, timeout_s):
            return frozenset()
        with self._lock:
            pins = frozenset(self._pending)
            self._pending.clear()
            self._event.clear()
        return pins

    def close(self) -> None:
        for pin in sorted(self._pins):
            with contextlib.suppress(RuntimeError, ValueError):
                self._gpio.remove_event_detect(pin)
        if self._pins:
            self._gpio.cleanup(sorted(self._pins))
        self._pins.clear()

    def last_edge_s(self, pin: int) -> float | None:
        return self._edge_times.get(pin)

    def _on_edge(self, channel: int) -> None:
        when = self._clock.monotonic()
        with self._lock:
            self._edge_times[channel] = when
            self._pending.add(channel)
            self._event.set()


class GpiodGpio:
    """libgpiod v2 backend; the chip is found by label (gpiochip numbers moved on the Pi 5)."""

    def __init__(
        self,
        module: Any = None,
        chip_path: str | None = None,
        labels: tuple[str, ...] = HEADER_CHIP_LABELS,
        candidates: list[str] | None = None,
    ) -> None:
        if module is None:
            import gpiod as module  # type: ignore[import-not-found,no-redef]
            import gpiod.line  # type: ignore[import-not-found]
        self._gpiod = module
        self.chip_path = chip_path or find_chip(module, labels, candidates)
        self._outputs: dict[int, Any] = {}
        self._inputs: list[int] = []
        self._in_request: Any = None
        self._edge_times: dict[int, float] = {}

    def setup_output(self, pin: int, value: bool) -> None:
        line = self._gpiod.line
        old = self._outputs.pop(pin, None)
        if old is not None:
            old.release()
        settings = self._gpiod.LineSettings(
            direction=line.Direction.OUTPUT, output_value=line.Value.ACTIVE if value else line.Value.INACTIVE
        )
        self._outputs[pin] = self._request({pin: settings})

    def write(self, pin: int, value: bool) -> None:
        line = self._gpiod.line
        self._outputs[pin].set_value(pin, line.Value.ACTIVE if value else line.Value.INACTIVE)

    def setup_rising(self, pin: int) -> None:
        if pin not in self._inputs:
            self._inputs.append(pin)
        if self._in_request is not None:
            self._in_request.release()
        line = self._gpiod.line
        settings = self._gpiod.LineSettings(direction=line.Direction.INPUT, edge_detection=line.Edge.RISING)
        self._in_request = self._request(dict.fromkeys(self._inputs, settings))

    def read(self, pin: int) -> bool:
        req = self._in_request if pin in self._inputs else self._outputs[pin]
        return req.get_value(pin) == self._gpiod.line.Value.ACTIVE

    def wait_rising(self, timeout_s: float | None) -> frozenset[int]:
        if self._in_request is None:
            raise HardwareError("no DIO line set up for edge events", "gpio_setup")
        if not self._in_request.wait_edge_events(timeout_s):
            return frozenset()
        rising = self._gpiod.EdgeEvent.Type.RISING_EDGE
        pins = set()
        for ev in self._in_request.read_edge_events():
            if ev.event_type == rising:
                pins.add(ev.line_offset)
                # the kernel's CLOCK_MONOTONIC timestamp: the same base as time.monotonic()
                self._edge_times[ev.line_offset] = ev.timestamp_ns / 1e9
        return frozenset(pins)

    def last_edge_s(self, pin: int) -> float | None:
        return self._edge_times.get(pin)

    def close(self) -> None:
        for req in self._outputs.values():
            req.release()
        self._outputs.clear()
        if self._in_request is not None:
            self._in_request.release()
            self._in_request = None
        self._inputs.clear()

    def _request(self, config: dict[int, Any]) -> Any:
        try:
            return self._gpiod.request_lines(self.chip_path, consumer=CONSUMER, config=config)
        except OSError as exc:
            raise HardwareError(
                f"cannot request GPIO lines {sorted(config)} on {self.chip_path}: {exc}; is another "
                "program using them, and is this user in the 'gpio' group?",
                "gpio_busy",
            ) from exc


def find_chip(module: Any, labels: tuple[str, ...], candidates: list[str] | None = None) -> str:
    """Path of the first gpiochip whose label is in ``labels`` (in the order of ``labels``)."""
    paths = sorted(glob.glob("/dev/gpiochip*")) if candidates is None else candidates
    found: dict[str, str] = {}
    for path in paths:
        try:
            if not module.is_gpiochip_device(path):
                continue
            with module.Chip(path) as chip:
                found[chip.get_info().label] = path
        except OSError:
            continue
    for label in labels:
        if label in found:
            return found[label]
    raise HardwareError(
        f"no gpiochip labelled {' or '.join(labels)} (found: {', '.join(sorted(found)) or 'none'})",
        "gpiochip_missing",
    )


def open_gpio(
    clock: Clock = SYSTEM_CLOCK,
    backend: str = "auto",
    labels: tuple[str, ...] = HEADER_CHIP_LABELS,
    rpi_module: Any = None,
    gpiod_module: Any = None,
    chip_candidates: list[str] | None = None,
) -> Gpio:
    """RPi.GPIO where it runs, else libgpiod v2 (the Pi 5 case); ``backend`` forces one.

    The ``*_module`` arguments inject the libraries (the emulator's fakes); default: import them.
    """
    if backend not in ("auto", "rpi", "gpiod"):
        raise HardwareError(f"unknown GPIO backend {backend!r} (auto, rpi, gpiod)", "gpio_backend")
    errors: list[str] = []
    if backend in ("auto", "rpi"):
        try:
            return RPiGpio(clock, module=rpi_module)
        except (ImportError, RuntimeError) as exc:
            errors.append(f"RPi.GPIO: {exc}")
            log.info("RPi.GPIO unavailable (%s); trying libgpiod", exc)
    if backend in ("auto", "gpiod"):
        try:
            return GpiodGpio(module=gpiod_module, labels=labels, candidates=chip_candidates)
        except (ImportError, HardwareError) as exc:
            errors.append(f"gpiod: {exc}")
    raise HardwareError(
        "no usable GPIO library (" + "; ".join(errors) + "): pip install 'lora-gw[pi]' or 'lora-gw[gpiod]'",
        "gpio_missing",
    )
