"""GPIO backends over the emulator's fake libraries, and the automatic choice between them."""

from __future__ import annotations

import pytest

from gateway.errors import HardwareError
from gateway.hw.clock import VirtualClock
from gateway.hw.gpio import Gpio, GpiodGpio, RPiGpio, find_chip, open_gpio
from gateway.radio.emulator import FakeGPIO, FakeGpiod


class Pi5GPIO(FakeGPIO):
    """RPi.GPIO as it behaves on a Raspberry Pi 5."""

    def setmode(self, mode: int) -> None:
        raise RuntimeError("Cannot determine SOC peripheral base address")


def _exercise(gpio: Gpio, pins: FakeGPIO, clock: VirtualClock) -> None:
    resets: list[bool] = []
    pins.attach_output_listener(17, resets.append)
    gpio.setup_output(17, True)
    gpio.write(17, False)
    gpio.write(17, True)
    assert resets == [True, False, True]
    gpio.setup_rising(4)
    gpio.setup_rising(5)
    clock.call_later(0.25, lambda: pins.drive_input(4, True))
    clock.call_later(0.50, lambda: pins.drive_input(4, False))  # falling edges are not reported
    clock.call_later(0.75, lambda: pins.drive_input(5, True))
    assert gpio.wait_rising(0.1) == frozenset()
    assert gpio.last_edge_s(4) is None
    assert gpio.wait_rising(1.0) == {4}
    assert clock.monotonic() == pytest.approx(1000.25)
    assert gpio.last_edge_s(4) == pytest.approx(1000.25)
    assert gpio.read(4)
    assert gpio.wait_rising(1.0) == {5}
    assert clock.monotonic() == pytest.approx(1000.75)
    gpio.close()


def test_rpi_gpio_backend() -> None:
    clock = VirtualClock()
    pins = FakeGPIO(clock)  # callbacks on their own thread, at the virtual instant of the edge
    _exercise(RPiGpio(clock, module=pins), pins, clock)


def test_gpiod_backend() -> None:
    clock, pins = VirtualClock(), FakeGPIO()
    lib = FakeGpiod(pins, clock, {"/dev/gpiochip0": "pinctrl-rp1"})
    gpio = GpiodGpio(module=lib, candidates=["/dev/gpiochip0"])
    _exercise(gpio, pins, clock)
    assert all(r.released for r in lib.requests)


def test_chip_found_by_label_not_number() -> None:
    lib = FakeGpiod(
        FakeGPIO(), VirtualClock(), {"/dev/gpiochip0": "pinctrl-rp1", "/dev/gpiochip4": "rp1-extra"}
    )
    assert find_chip(lib, ("pinctrl-rp1",), ["/dev/gpiochip4", "/dev/gpiochip0"]) == "/dev/gpiochip0"
    old_kernel = FakeGpiod(
        FakeGPIO(), VirtualClock(), {"/dev/gpiochip0": "other", "/dev/gpiochip4": "pinctrl-rp1"}
    )
    assert find_chip(old_kernel, ("pinctrl-rp1",), ["/dev/gpiochip0", "/dev/gpiochip4"]) == "/dev/gpiochip4"
    with pytest.raises(HardwareError) as err:
        find_chip(lib, ("pinctrl-bcm2835",), ["/dev/gpiochip0", "/dev/gpiochip4"])
    assert "pinctrl-rp1" in err.value.message and err.value.reason == "gpiochip_missing"


def test_auto_prefers_rpi_gpio_and_falls_back_to_gpiod_on_a_pi5() -> None:
    clock = VirtualClock()
    lib = FakeGpiod(FakeGPIO(), clock, {"/dev/gpiochip0": "pinctrl-rp1"})
    chosen = open_gpio(clock, rpi_module=FakeGPIO(), gpiod_module=lib, chip_candidates=["/dev/gpiochip0"])
    assert isinstance(chosen, RPiGpio)
    chosen = open_gpio(clock, rpi_module=Pi5GPIO(), gpiod_module=lib, chip_candidates=["/dev/gpiochip0"])
    assert isinstance(chosen, GpiodGpio) and chosen.chip_path == "/dev/gpiochip0"


def test_no_backend_is_one_clear_error() -> None:
    clock = VirtualClock()
    lib = FakeGpiod(FakeGPIO(), clock, {"/dev/gpiochip0": "something-else"})
    with pytest.raises(HardwareError) as err:
        open_gpio(clock, rpi_module=Pi5GPIO(), gpiod_module=lib, chip_candidates=["/dev/gpiochip0"])
    assert err.value.reason == "gpio_missing"
    assert "SOC peripheral" in err.value.message and "pinctrl-rp1" in err.value.message
    with pytest.raises(HardwareError):
        open_gpio(clock, backend="wiringpi")
