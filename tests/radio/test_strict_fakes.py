"""The fakes are as strict as RPi.GPIO, spidev and the SX1276 where a lenient fake would hide a bug.

Each test shows a driver that relied on the old, lenient behaviour failing now, and the real thing
(our driver, over the same fakes) still working.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from gateway.errors import HardwareError
from gateway.hw.clock import VirtualClock
from gateway.hw.spi import SpidevPort
from gateway.radio.airtime import time_on_air_s
from gateway.radio.emulator import EmulatedSX1276, FakeGPIO, SpiBoard, installed_as_modules
from gateway.radio.packet import RxPacket
from gateway.radio.regs import Irq, Mode, Reg
from gateway.radio.sim import RadioSim

WRITE = 0x80


def lora_standby(chip: EmulatedSX1276) -> None:
    chip.xfer2([WRITE | Reg.OP_MODE, 0x80])  # SLEEP + LongRangeMode
    chip.xfer2([WRITE | Reg.OP_MODE, 0x80 | Mode.STDBY])


# ------------------------------------------------------------------ RPi.GPIO: the callback thread
def test_edge_callbacks_run_on_their_own_thread_outside_the_simulation_lock() -> None:
    clock = VirtualClock()
    gpio = FakeGPIO(clock)
    gpio.setmode(gpio.BCM)
    gpio.setup(4, gpio.IN)
    seen: list[tuple[str, bool, float]] = []
    def on_edge(ch: int) -> None:
        seen.append((threading.current_thread().name, clock.lock._is_owned(), clock.monotonic()))

    gpio.add_event_detect(4, gpio.RISING, callback=on_edge)
    clock.call_later(0.5, lambda: gpio.drive_input(4, True))  # the chip raises DIO0 inside the clock
    clock.advance(1.0)
    assert len(seen) == 1
    name, owns_lock, when = seen[0]
    assert name != threading.current_thread().name and not owns_lock
    assert when == pytest.approx(1000.5)  # manual time waited for the callback: it ran at the edge


def test_a_driver_that_expects_its_callback_inside_the_pin_change_now_fails() -> None:
    """Holding its own lock while time runs, as if the edge callback ran synchronously in it."""
    clock = VirtualClock()
    gpio = FakeGPIO(clock)
    gpio.setmode(gpio.BCM)
    gpio.setup(4, gpio.IN)
    lock = threading.RLock()
    done: list[int] = []

    def on_edge(ch: int) -> None:
        with lock:  # fine on a Pi: the callback thread waits for the driver to let go
            done.append(ch)

    gpio.add_event_detect(4, gpio.RISING, callback=on_edge)
    clock.call_later(0.1, lambda: gpio.drive_input(4, True))
    with lock:
        clock.advance(0.2)  # the old fake ran on_edge right here, re-entering the lock
        assert done == []  # the lenient driver's "TxDone seen by now" is wrong
    clock.advance(0)
    assert done == [4]


def test_bouncetime_drops_edges_that_follow_too_closely() -> None:
    clock = VirtualClock()
    gpio = FakeGPIO(clock)
    gpio.setmode(gpio.BCM)
    gpio.setup(4, gpio.IN)
    hits: list[float] = []
    gpio.add_event_detect(4, gpio.RISING, callback=lambda c: hits.append(clock.monotonic()), bouncetime=200)
    for at in (0.0, 0.05, 0.3):  # three packets' RxDone edges, the second 50 ms after the first
        clock.call_at(1000.0 + at, lambda: gpio.drive_input(4, True))
        clock.call_at(1000.0 + at + 0.001, lambda: gpio.drive_input(4, False))
    clock.advance(1.0)
    assert hits == pytest.approx([1000.0, 1000.3])  # a driver copying a button's bouncetime loses one
    assert gpio.edges_debounced == 1
    gpio.setup(5, gpio.IN)
    with pytest.raises(ValueError):
        gpio.add_event_detect(5, gpio.RISING, bouncetime=0)


def test_conflicting_edge_detection_raises_and_cleanup_releases_it() -> None:
    clock = VirtualClock()
    gpio = FakeGPIO(clock)
    gpio.setmode(gpio.BCM)
    gpio.setup(4, gpio.IN)
    calls: list[int] = []
    gpio.add_event_detect(4, gpio.RISING, callback=calls.append)
    # a driver that re-arms detection when it reconfigures, without removing it first
    with pytest.raises(RuntimeError) as err:
        gpio.add_event_detect(4, gpio.RISING, callback=calls.append)
    assert str(err.value) == "Conflicting edge detection already enabled for this GPIO channel"
    with pytest.raises(RuntimeError, match="Conflicting edge detection"):
        gpio.wait_for_edge(4, gpio.RISING, timeout=10)
    gpio.cleanup()
    gpio.setmode(gpio.BCM)
    gpio.setup(4, gpio.IN)
    gpio.drive_input(4, True)
    clock.advance(0)
    assert calls == []  # detection released: no callback after cleanup
    gpio.drive_input(4, False)
    gpio.add_event_detect(4, gpio.RISING, callback=calls.append)  # and it can be enabled again
    gpio.drive_input(4, True)
    clock.advance(0)
    assert calls == [4]
    gpio.cleanup()


# ------------------------------------------------------------------ spidev
def test_spidev_handles_are_independent_and_select_the_chip_at_their_bus_and_cs() -> None:
    clock = VirtualClock()
    a, b = EmulatedSX1276(clock=clock, name="a"), EmulatedSX1276(clock=clock, name="b")
    with installed_as_modules({(0, 0): a, (0, 1): b}, FakeGPIO(clock)):
        import spidev  # type: ignore[import-not-found]

        first, second = spidev.SpiDev(), spidev.SpiDev()
        first.open(0, 0)
        second.open(0, 1)
        first.max_speed_hz = second.max_speed_hz = 8_000_000
        first.xfer2([WRITE | Reg.SYNC_WORD, 0x34])
        assert a.peek(Reg.SYNC_WORD) == 0x34 and b.peek(Reg.SYNC_WORD) != 0x34
        second.max_speed_hz = 1_000_000
        assert first.max_speed_hz == 8_000_000
        missing = spidev.SpiDev()
        with pytest.raises(FileNotFoundError) as err:
            missing.open(0, 2)  # nothing wired at CE2
        assert err.value.errno == 2 and str(err.value) == "[Errno 2] No such file or directory"
    port = SpidevPort(1, 0, device_factory=SpiBoard(a).SpiDev)
    with pytest.raises(HardwareError) as herr:
        port.open()
    assert herr.value.reason == "spi_open" and "/dev/spidev1.0" in herr.value.message
    assert "\n" not in herr.value.message


def test_the_chip_answers_in_spi_mode_0_only() -> None:
    chip = EmulatedSX1276(clock=VirtualClock())
    lora_standby(chip)
    dev = SpiBoard(chip).SpiDev()
    dev.open(0, 0)
    dev.max_speed_hz = 8_000_000
    dev.mode = 3  # a driver that copied another device's mode
    assert dev.xfer2([Reg.VERSION, 0])[1] != 0x12
    dev.xfer2([WRITE | Reg.SYNC_WORD, 0x34])
    assert chip.peek(Reg.SYNC_WORD) == 0x12  # nothing latched
    port = SpidevPort(device_factory=SpiBoard(chip).SpiDev)  # ours sets mode 0 itself
    port.open()
    assert port.transfer([Reg.VERSION, 0])[1] == 0x12


def test_reads_above_10_mhz_are_corrupted_so_a_link_test_catches_the_clock() -> None:
    chip = EmulatedSX1276(clock=VirtualClock())
    with installed_as_modules(chip, FakeGPIO()):
        import spidev  # type: ignore[import-not-found]

        spi = spidev.SpiDev()
        spi.open(0, 0)  # a driver that never sets max_speed_hz runs at the Pi's 125 MHz default
        assert spi.xfer2([Reg.VERSION, 0])[1] != 0x12
        assert spi.xfer2([Reg.VERSION, 0], 16_000_000)[1] != 0x12
        spi.max_speed_hz = 10_000_000
        assert spi.xfer2([Reg.VERSION, 0])[1] == 0x12


# ------------------------------------------------------------------ the FIFO
def test_fifo_writes_outside_standby_are_ignored() -> None:
    chip = EmulatedSX1276(clock=VirtualClock())
    lora_standby(chip)
    chip.xfer2([WRITE | Reg.OP_MODE, 0x80 | Mode.RXCONTINUOUS])
    chip.xfer2([WRITE | Reg.FIFO_ADDR_PTR, 0x00])
    chip.xfer2([WRITE | Reg.FIFO, 1, 2, 3])  # a driver filling the FIFO while still receiving
    chip.xfer2([WRITE | Reg.OP_MODE, 0x80 | Mode.STDBY])
    chip.xfer2([WRITE | Reg.FIFO_ADDR_PTR, 0x00])
    assert chip.xfer2([Reg.FIFO, 0, 0, 0])[1:] == [0, 0, 0] and chip.fifo_writes_ignored == 3
    chip.xfer2([WRITE | Reg.FIFO_ADDR_PTR, 0x00])
    chip.xfer2([WRITE | Reg.FIFO, 1, 2, 3])  # in standby, as the datasheet asks
    chip.xfer2([WRITE | Reg.FIFO_ADDR_PTR, 0x00])
    assert chip.xfer2([Reg.FIFO, 0, 0, 0])[1:] == [1, 2, 3]


def test_a_driver_that_fills_the_fifo_in_receive_sends_the_wrong_bytes() -> None:
    sim = RadioSim(nodes=1)
    node = sim.nodes[0].chip
    node.xfer2([WRITE | Reg.OP_MODE, 0x80 | Mode.RXCONTINUOUS])
    node.xfer2([WRITE | Reg.FIFO_ADDR_PTR, 0x00])
    node.xfer2([WRITE | Reg.FIFO, *b"hello"])
    node.xfer2([WRITE | Reg.PAYLOAD_LENGTH, 5])
    node.xfer2([WRITE | Reg.OP_MODE, 0x80 | Mode.TX])
    packet = sim.gateway.receive(0.5)
    assert packet is not None and packet.payload != b"hello"
    sim.nodes[0].send(b"hello")  # our driver stands by first
    packet = sim.gateway.receive(0.5)
    assert packet is not None and packet.payload == b"hello"
    sim.close()


# ------------------------------------------------------------------ timing under load
class LateTimerClock(VirtualClock):
    """A scaled clock whose timer thread is starved (a loaded host) for its first 0.3 s."""

    def _tick(self) -> None:
        time.sleep(0.3)
        super()._tick()


def test_virtual_time_never_passes_an_event_the_timer_thread_has_not_fired() -> None:
    clock = LateTimerClock(start_s=0.0, speed=1.0)
    fired: list[float] = []
    clock.call_at(0.05, lambda: fired.append(clock.monotonic()))
    time.sleep(0.15)  # real time: the event is 100 ms overdue and the timer thread still asleep
    assert not fired
    assert clock.monotonic() <= 0.05  # nobody sees a time at which the chip should have changed
    clock.sleep(0.001)  # any thread that sleeps or waits fires what is due
    assert fired == [0.05]
    assert clock.monotonic() >= 0.15
    clock.close()


def test_a_polling_driver_never_sees_the_chip_late_in_virtual_time() -> None:
    """Under load the old clock let virtual time run past TxDone before the chip raised it."""
    clock = LateTimerClock(start_s=0.0, speed=1.0)
    chip = EmulatedSX1276(clock=clock)
    lora_standby(chip)
    chip.xfer2([WRITE | Reg.FIFO_ADDR_PTR, 0x00])
    chip.xfer2([WRITE | Reg.FIFO, *b"10 bytes.."])
    chip.xfer2([WRITE | Reg.PAYLOAD_LENGTH, 10])
    p = chip.params()
    toa = time_on_air_s(10, p.sf, p.bw_hz, p.cr_code + 4, p.preamble, p.implicit, p.crc, p.ldro)
    started = clock.monotonic()
    chip.xfer2([WRITE | Reg.OP_MODE, 0x80 | Mode.TX])
    due = clock.next_event_s()
    assert due is not None and due == pytest.approx(started + toa, abs=0.005)
    time.sleep(0.15)  # the timer thread is still starved; TxDone is overdue in real time
    now = clock.monotonic()
    tx_done = chip.xfer2([Reg.IRQ_FLAGS, 0])[1] & Irq.TX_DONE
    assert tx_done or now <= due  # never "after TxDone" with TxDone not raised
    clock.sleep(0.001)
    assert chip.xfer2([Reg.IRQ_FLAGS, 0])[1] & Irq.TX_DONE
    clock.close()


# ------------------------------------------------------------------ the driver's SPI economy
def test_transmit_costs_seven_transactions_to_the_mode_write_and_eleven_back_to_receive() -> None:
    sim = RadioSim(nodes=1)
    gw = sim.gateway
    before = gw.spi.transactions
    gw.transmit(b"downlink")
    assert gw.spi.transactions - before == 11  # was 19: status, standby, FIFO set-up, payload,
    # length, DIO0, TX; then flags + FIFO pointer, DIO0, RX, header counter
    assert gw.last_tx_decision_to_mode_s is not None and gw.last_tx_decision_to_mode_s > 0
    assert sim.gateway_chip.op_mode == Mode.RXCONTINUOUS
    node = sim.nodes[0].radio
    before = node.spi.transactions
    node.transmit(b"uplink")  # from standby: no pending-packet check, back to standby
    assert node.spi.transactions - before == 9
    assert sim.nodes[0].chip.fifo_writes_ignored == 0
    packet = gw.receive(0.5)
    assert packet is not None and packet.payload == b"uplink"
    tx0 = gw.spi.transactions
    sim.nodes[0].send(b"and the next one")
    assert gw.receive(0.5) is not None and gw.spi.transactions - tx0 == 3  # still 3 per packet
    sim.close()


def test_rx_packet_stays_immutable() -> None:
    sim = RadioSim(nodes=1)
    sim.nodes[0].send(b"x")
    packet = sim.gateway.receive(0.5)
    assert isinstance(packet, RxPacket)
    with pytest.raises(dataclasses.FrozenInstanceError):
        packet.payload = b"y"  # type: ignore[misc]
    assert packet == dataclasses.replace(packet) and packet.utc.tzinfo is not None
    sim.close()


def test_a_scheduled_send_runs_inside_a_clock_callback_in_scaled_time() -> None:
    """transmit(wait=False) from a timer callback polls DIO0 without moving the clock."""
    sim = RadioSim(nodes=1, speed=5.0)
    sim.send_at(sim.clock.monotonic() + 0.02, 0, b"scheduled")
    packet = sim.gateway.receive(1.0)
    assert packet is not None and packet.payload == b"scheduled"
    sim.close()
