"""The emulator is a drop-in for spidev + RPi.GPIO: a driver that imports them itself runs unchanged."""

from __future__ import annotations

from bench.baselines import NaiveDriver
from gateway.radio.emulator import FakeGPIO, installed_as_modules
from gateway.radio.sim import RadioSim


def test_a_foreign_driver_runs_against_the_emulated_chip() -> None:
    sim = RadioSim(nodes=1)  # our node transmits; a naive gateway driver listens on a second chip
    chip = sim.air.add_radio("naive-gateway")
    board = FakeGPIO(sim.clock)
    chip.wire(board, None, {0: 22})
    with installed_as_modules(chip, board):
        naive = NaiveDriver(dio0=22)
    naive.start()
    sim.nodes[0].send(b"32 bytes of telemetry payload...")
    sim.clock.advance(0.01)
    assert naive.received == [b"32 bytes of telemetry payload..."]
    assert naive.transactions == 7 + 32  # byte-per-transaction FIFO reads; ours: 3
    assert (naive.rx_done, naive.crc_errors) == (1, 0)
    assert -30 < naive.last_snr_db <= 12 and -160 < naive.last_rssi_dbm < 0
    assert sim.gateway.receive(0.1) is not None


def test_wait_for_edge_in_virtual_time() -> None:
    sim = RadioSim(nodes=1)
    chip = sim.air.add_radio("listener")
    board = FakeGPIO(sim.clock)
    chip.wire(board, None, {0: 22})
    board.setmode(board.BCM)
    board.setup(22, board.IN)
    chip.xfer2([0x81, 0x00])
    chip.xfer2([0x81, 0x80])
    chip.xfer2([0x81, 0x85])
    chip.xfer2([0x86, 0xD9, 0x06, 0x66])
    sim.send_at(sim.clock.monotonic() + 1.0, 0, b"x")
    assert board.wait_for_edge(22, board.RISING, timeout=500) is None
    assert board.wait_for_edge(22, board.RISING, timeout=2000) == 22


def test_the_hardware_path_with_the_fakes_installed_as_the_real_libraries() -> None:
    """open_radio() as on a Pi: spidev and RPi.GPIO imported by name, the system clock, real waits."""
    from gateway.hw.clock import VirtualClock
    from gateway.radio.air import VirtualAir
    from gateway.radio.sim import make_radio
    from gateway.radio.sx1276 import LoRaConfig, Pins, open_radio

    air = VirtualAir(VirtualClock(speed=1.0))  # the chips live in real time
    chip = air.add_radio("gateway")
    board = FakeGPIO()
    chip.wire(board, 17, {0: 4})
    with installed_as_modules({(0, 1): chip}, board):  # wired at CE1
        radio = open_radio(LoRaConfig(), Pins(reset=17, dio0=4), bus=0, cs=1)
        radio.begin()
    _, _, node = make_radio(air, "node", LoRaConfig())
    node.begin(receive=False)
    node.transmit(b"on the real code path")
    packet = radio.receive(1.0)
    assert packet is not None and packet.payload == b"on the real code path"
    assert chip.resets >= 2 and (chip.bus, chip.device) == (0, 1)  # RESET pulsed; opened as spidev0.1
    radio.close()
    air.clock.close()


def test_lorarf_unmodified_from_pypi_over_the_strict_fakes() -> None:
    """LoRaRF 1.4.0 imports spidev and RPi.GPIO itself, opens /dev/spidev0.0, uses DIO0 callbacks
    with bouncetime and busy-waits in real time: the chips run in real time (speed 1)."""
    import sys

    from gateway.hw.clock import VirtualClock
    from gateway.radio.air import VirtualAir
    from gateway.radio.packet import CrcState
    from gateway.radio.sim import make_radio
    from gateway.radio.sx1276 import LoRaConfig

    air = VirtualAir(VirtualClock(speed=1.0))
    chip = air.add_radio("lorarf")
    board = FakeGPIO()
    chip.wire(board, 22, {0: 23})
    for name in [m for m in sys.modules if m == "LoRaRF" or m.startswith("LoRaRF.")]:
        del sys.modules[name]  # its module-level SpiDev() must be made on this board
    with installed_as_modules({(0, 0): chip}, board):
        from LoRaRF import SX127x  # type: ignore[import-untyped]

        lora = SX127x()
        assert lora.begin(0, 0, 22, 23, -1, -1)
        lora.setFrequency(868_100_000)
        lora.setLoRaModulation(7, 125_000, 5)
        lora.setLoRaPacket(lora.HEADER_EXPLICIT, 8, 15, True)
        lora.setSyncWord(0x12)
        _, _, ours = make_radio(air, "ours", LoRaConfig())
        ours.begin(receive=True)

        lora.request(lora.RX_CONTINUOUS)  # it receives from our driver
        _, _, node = make_radio(air, "node", LoRaConfig())
        node.begin(receive=False)
        tx0 = chip.spi_transactions
        node.transmit(b"from our driver")
        assert lora.wait(2)
        # LoRaRF's wait() returns as soon as its callback thread has stored the IRQ flags, before
        # that callback reads the packet length (RegRxNbBytes): on a loaded host (or a busy Pi) the
        # main thread could read its default length of 32 first. Its own race, not the chip's.
        assert board.callbacks_idle(2.0)
        assert lora.status() == lora.STATUS_RX_DONE
        payload = bytes(lora.read() for _ in range(lora.available()))
        assert payload == b"from our driver"
        assert chip.spi_transactions - tx0 == 5 + len(payload)  # a byte per transaction; ours: 3
        assert -160 < lora.packetRssi() < 0 and -30 < lora.snr() <= 32
        ours_packet = ours.receive(0.5)  # our gateway heard the node too
        assert ours_packet is not None and ours_packet.payload == b"from our driver"

        lora.standby()  # and transmits to ours, from standby as the datasheet asks
        lora.beginPacket()
        lora.write(list(b"from LoRaRF"))
        lora.endPacket()
        assert lora.wait(2) and lora.status() == lora.STATUS_TX_DONE
        packet = ours.receive(1.0)
        assert packet is not None and packet.payload == b"from LoRaRF" and packet.crc is CrcState.OK
        assert chip.fifo_writes_ignored == 0
        lora.end()
    ours.close()
    node.close()
    air.clock.close()


def test_lorarf_over_a_slow_gpio_callback_thread(monkeypatch) -> None:
    """The same exchange with LoRaRF's RX callback preempted right after it stored the IRQ flags
    (its register reads on the callback thread take 0.3 s, as on a loaded Pi): LoRaRF's wait()
    returns before its callback has read the packet length, so the check above must wait for the
    callback thread (FakeGPIO.callbacks_idle) or it reads LoRaRF's default length of 32 (a CI
    failure on a loaded host, 2026-12-02)."""
    import threading
    import time

    from gateway.radio import emulator

    frame = emulator.EmulatedSX1276.spi_frame

    def slow_on_callback_thread(self, data, *args, **kwargs):  # type: ignore[no-untyped-def]
        if threading.current_thread().name == "gpio-callbacks" and data and (data[0] & 0x7F) == 0x10:
            time.sleep(0.3)  # RegFifoRxCurrentAddr, read after the flags and before RegRxNbBytes
        return frame(self, data, *args, **kwargs)

    monkeypatch.setattr(emulator.EmulatedSX1276, "spi_frame", slow_on_callback_thread)
    test_lorarf_unmodified_from_pypi_over_the_strict_fakes()
