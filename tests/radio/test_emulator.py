"""The emulated SX1276 on its own, driven through raw spidev calls, against the datasheet."""

from __future__ import annotations

import pytest

from gateway.hw.clock import VirtualClock
from gateway.radio import regs
from gateway.radio.air import VirtualAir
from gateway.radio.emulator import EmulatedSX1276, FakeGPIO, FakeGpiod
from gateway.radio.regs import Irq, Mode, Reg


def rd(chip: EmulatedSX1276, reg: int) -> int:
    return chip.xfer2([reg, 0])[1]


def wr(chip: EmulatedSX1276, reg: int, value: int) -> int:
    return chip.xfer2([0x80 | reg, value])[1]


def lora_standby(chip: EmulatedSX1276) -> None:
    wr(chip, Reg.OP_MODE, 0x08)  # FSK sleep
    wr(chip, Reg.OP_MODE, 0x88)  # LoRa sleep
    wr(chip, Reg.OP_MODE, 0x89)  # LoRa standby


@pytest.fixture
def chip() -> EmulatedSX1276:
    c = EmulatedSX1276(clock=VirtualClock())
    c.open(0, 0)
    return c


def test_spidev_surface(chip: EmulatedSX1276) -> None:
    for attr in ("max_speed_hz", "mode", "bits_per_word", "lsbfirst", "cshigh"):
        assert hasattr(chip, attr)
    chip.max_speed_hz = 8_000_000
    chip.mode = 0
    assert chip.xfer([Reg.VERSION, 0])[1] == 0x12
    assert chip.xfer3([Reg.VERSION, 0])[1] == 0x12
    chip.writebytes([0x80 | Reg.SYNC_WORD, 0x34])
    assert chip.readbytes(1) == [0]  # address byte 0x00: MISO is not data
    chip.close()


def test_reset_values(chip: EmulatedSX1276) -> None:
    assert rd(chip, Reg.OP_MODE) == 0x09  # FSK, LowFrequencyModeOn, STDBY
    assert [rd(chip, r) for r in (Reg.FRF_MSB, Reg.FRF_MID, Reg.FRF_LSB)] == [0x6C, 0x80, 0x00]
    assert rd(chip, Reg.VERSION) == 0x12
    lora_standby(chip)
    expect = {
        Reg.MODEM_CONFIG1: 0x72,
        Reg.MODEM_CONFIG2: 0x70,
        Reg.SYMB_TIMEOUT_LSB: 0x64,
        Reg.PREAMBLE_LSB: 0x08,
        Reg.MAX_PAYLOAD_LENGTH: 0xFF,
        Reg.FIFO_TX_BASE_ADDR: 0x80,
        Reg.FIFO_RX_BASE_ADDR: 0x00,
        Reg.SYNC_WORD: 0x12,
        Reg.MODEM_CONFIG3: 0x04,
        Reg.DETECT_OPTIMIZE: 0xC3,
        Reg.DETECTION_THRESHOLD: 0x0A,
        Reg.PA_CONFIG: 0x4F,
        Reg.OCP: 0x2B,
        Reg.LNA: 0x20,
        Reg.PA_DAC: 0x84,
    }
    assert {r: rd(chip, r) for r in expect} == expect


def test_long_range_mode_changes_only_in_sleep(chip: EmulatedSX1276) -> None:
    wr(chip, Reg.OP_MODE, 0x81)  # from FSK standby: LongRangeMode ignored
    assert rd(chip, Reg.OP_MODE) == 0x01
    wr(chip, Reg.OP_MODE, 0x00)
    wr(chip, Reg.OP_MODE, 0x80)
    assert rd(chip, Reg.OP_MODE) == 0x80
    wr(chip, Reg.OP_MODE, 0x81)
    wr(chip, Reg.OP_MODE, 0x01)  # leaving LoRa outside SLEEP is ignored too
    assert rd(chip, Reg.OP_MODE) == 0x81
    wr(chip, Reg.OP_MODE, 0x00)  # SLEEP and FSK in one write (what RadioHead-style drivers do)
    assert rd(chip, Reg.OP_MODE) == 0x00


def test_lora_and_fsk_pages(chip: EmulatedSX1276) -> None:
    assert rd(chip, regs.IMAGE_CAL) == 0x82  # FSK page at reset
    lora_standby(chip)
    assert rd(chip, Reg.INVERT_IQ2) == regs.INVERT_IQ2_NORMAL  # same address, LoRa page
    wr(chip, Reg.OP_MODE, 0xC1)  # AccessSharedReg: FSK page from LoRa mode
    assert rd(chip, regs.IMAGE_CAL) == 0x82


def test_read_only_registers_ignore_writes(chip: EmulatedSX1276) -> None:
    lora_standby(chip)
    for reg in (Reg.VERSION, Reg.FIFO_RX_CURRENT_ADDR, Reg.RX_NB_BYTES, Reg.MODEM_STAT, Reg.PKT_SNR_VALUE):
        before = rd(chip, reg)
        wr(chip, reg, before ^ 0x5A)
        assert rd(chip, reg) == before


def test_burst_auto_increment_and_miso_on_write(chip: EmulatedSX1276) -> None:
    lora_standby(chip)
    # a burst write from 0x0D runs through the read-only 0x10 harmlessly
    miso = chip.xfer2([0x80 | Reg.FIFO_ADDR_PTR, 0x11, 0x22, 0x33, 0x99, 0x00])
    assert miso[2] == 0x80 and miso[3] == 0x00  # previous TxBase and RxBase
    assert chip.xfer2([Reg.FIFO_ADDR_PTR, 0, 0, 0, 0])[1:] == [0x11, 0x22, 0x33, 0x00]
    assert chip.xfer2([Reg.MODEM_CONFIG1, 0, 0])[1:] == [0x72, 0x70]


def test_fifo_burst_advances_the_pointer_not_the_address(chip: EmulatedSX1276) -> None:
    lora_standby(chip)
    wr(chip, Reg.FIFO_ADDR_PTR, 0xFE)
    chip.xfer2([0x80 | Reg.FIFO, 1, 2, 3, 4])  # wraps at 256
    assert rd(chip, Reg.FIFO_ADDR_PTR) == 0x02
    wr(chip, Reg.FIFO_ADDR_PTR, 0xFE)
    assert chip.xfer2([Reg.FIFO, 0, 0, 0, 0])[1:] == [1, 2, 3, 4]
    assert rd(chip, Reg.OP_MODE) == 0x89  # the burst never reached 0x01


def test_fifo_cleared_and_unreadable_in_sleep(chip: EmulatedSX1276) -> None:
    lora_standby(chip)
    wr(chip, Reg.FIFO_ADDR_PTR, 0)
    chip.xfer2([0x80 | Reg.FIFO, 7, 8, 9])
    wr(chip, Reg.OP_MODE, 0x88)
    wr(chip, Reg.FIFO_ADDR_PTR, 0)
    assert chip.xfer2([Reg.FIFO, 0, 0, 0])[1:] == [0, 0, 0]
    chip.xfer2([0x80 | Reg.FIFO, 5])  # ignored in SLEEP
    wr(chip, Reg.OP_MODE, 0x89)
    wr(chip, Reg.FIFO_ADDR_PTR, 0)
    assert chip.xfer2([Reg.FIFO, 0, 0, 0])[1:] == [0, 0, 0]


def test_image_calibration_runs_about_10ms(chip: EmulatedSX1276) -> None:
    wr(chip, regs.IMAGE_CAL, 0x82 | regs.IMAGE_CAL_START)
    assert rd(chip, regs.IMAGE_CAL) & regs.IMAGE_CAL_RUNNING
    chip.clock.advance(0.005)
    assert rd(chip, regs.IMAGE_CAL) & regs.IMAGE_CAL_RUNNING
    chip.clock.advance(0.006)
    assert rd(chip, regs.IMAGE_CAL) == 0x82


def test_reset_pin_restores_reset_values(chip: EmulatedSX1276) -> None:
    lora_standby(chip)
    wr(chip, Reg.SYNC_WORD, 0x34)
    chip.set_reset_pin(False)
    assert rd(chip, Reg.VERSION) == 0  # held in reset: the chip does not answer
    chip.set_reset_pin(True)
    assert rd(chip, Reg.OP_MODE) == 0x09
    lora_standby(chip)
    assert rd(chip, Reg.SYNC_WORD) == 0x12


def _two_chips(**air_kwargs) -> tuple[VirtualAir, EmulatedSX1276, EmulatedSX1276]:
    air = VirtualAir(**air_kwargs)
    tx, rx = air.add_radio("tx"), air.add_radio("rx")
    for c in (tx, rx):
        lora_standby(c)
    return air, tx, rx


def _send(tx: EmulatedSX1276, payload: bytes) -> None:
    wr(tx, Reg.FIFO_ADDR_PTR, rd(tx, Reg.FIFO_TX_BASE_ADDR))
    tx.xfer2([0x80 | Reg.FIFO, *payload])
    wr(tx, Reg.PAYLOAD_LENGTH, len(payload))
    wr(tx, Reg.OP_MODE, 0x80 | Mode.TX)


def test_tx_takes_time_on_air_then_txdone_and_standby() -> None:
    air, tx, _ = _two_chips()
    _send(tx, bytes(10))  # reset config: SF7, 125 kHz, CR 4/5, explicit; CRC off → 36.1 ms
    air.clock.advance(0.036)
    assert rd(tx, Reg.OP_MODE) & 7 == Mode.TX and not rd(tx, Reg.IRQ_FLAGS)
    air.clock.advance(0.001)
    assert rd(tx, Reg.IRQ_FLAGS) == Irq.TX_DONE
    assert rd(tx, Reg.OP_MODE) & 7 == Mode.STDBY


def test_irq_write_one_to_clear_mask_and_dio0_level() -> None:
    air, tx, rx = _two_chips()
    gpio = FakeGPIO()
    gpio.setmode(gpio.BCM)
    gpio.setup(4, gpio.IN)
    gpio.add_event_detect(4, gpio.RISING)
    rx.wire(gpio, None, {0: 4})
    wr(rx, Reg.OP_MODE, 0x80 | Mode.RXCONTINUOUS)
    _send(tx, b"one")
    air.clock.advance(0.1)
    assert rd(rx, Reg.IRQ_FLAGS) == Irq.RX_DONE | Irq.VALID_HEADER
    assert gpio.input(4) == 1 and gpio.event_detected(4)
    _send(tx, b"two")  # DIO0 is still high: no second edge
    air.clock.advance(0.1)
    assert gpio.input(4) == 1 and not gpio.event_detected(4)
    wr(rx, Reg.IRQ_FLAGS, Irq.VALID_HEADER)  # clears only that bit
    assert rd(rx, Reg.IRQ_FLAGS) == Irq.RX_DONE and gpio.input(4) == 1
    wr(rx, Reg.IRQ_FLAGS, 0xFF)
    assert rd(rx, Reg.IRQ_FLAGS) == 0 and gpio.input(4) == 0
    wr(rx, Reg.IRQ_FLAGS_MASK, Irq.RX_DONE)  # masked: never shows, no DIO0
    _send(tx, b"three")
    air.clock.advance(0.1)
    assert rd(rx, Reg.IRQ_FLAGS) == Irq.VALID_HEADER and gpio.input(4) == 0
    # DIO0 mapping 01 = TxDone
    wr(tx, Reg.DIO_MAPPING1, 0x40)
    assert tx.dio_level(0)  # TxDone of the last send is still set


def test_counters_fifo_addresses_and_packet_registers() -> None:
    air, tx, rx = _two_chips()
    wr(tx, Reg.MODEM_CONFIG2, 0x74)  # CRC on at the transmitter
    wr(rx, Reg.FIFO_RX_BASE_ADDR, 0x10)
    wr(rx, Reg.OP_MODE, 0x80 | Mode.RXCONTINUOUS)
    _send(tx, b"abcde")
    air.clock.advance(0.1)
    _send(tx, b"fgh")
    air.clock.advance(0.1)
    status = rx.xfer2([Reg.FIFO_RX_CURRENT_ADDR] + [0] * 13)[1:]
    cur, _mask, _flags, nb, hmsb, hlsb, pmsb, plsb, stat, _snr, _rssi, _r, hop = status
    assert (cur, nb) == (0x15, 3)  # second packet right after the first, from the RX base
    assert (hmsb << 8 | hlsb, pmsb << 8 | plsb) == (2, 2)
    assert stat >> 5 == 1  # coding rate 4/5 from the header
    assert hop & 0x40  # CrcOnPayload: the header said CRC on
    assert rd(rx, Reg.FIFO_RX_BYTE_ADDR) == 0x17
    wr(rx, Reg.FIFO_ADDR_PTR, 0x10)
    assert bytes(rx.xfer2([Reg.FIFO] + [0] * 8)[1:]) == b"abcdefgh"
    wr(rx, Reg.OP_MODE, 0x80 | Mode.SLEEP)  # counters reset in SLEEP
    assert rx.xfer2([Reg.RX_HEADER_CNT_MSB, 0, 0, 0, 0])[1:] == [0, 0, 0, 0]


def test_crc_on_payload_clear_when_node_sends_without_crc() -> None:
    air, tx, rx = _two_chips()
    wr(rx, Reg.MODEM_CONFIG2, 0x74)  # the receiver's own CRC setting does not matter in explicit mode
    wr(rx, Reg.OP_MODE, 0x80 | Mode.RXCONTINUOUS)
    _send(tx, b"no crc")
    air.clock.advance(0.1)
    assert rd(rx, Reg.IRQ_FLAGS) & Irq.RX_DONE
    assert not rd(rx, Reg.HOP_CHANNEL) & 0x40


def test_snr_rssi_fei_registers_follow_the_link() -> None:
    from gateway.radio.air import Link

    air, tx, rx = _two_chips()
    air.set_link(tx, rx, Link(path_loss_db=140, snr_db=-6.25))
    wr(rx, Reg.OP_MODE, 0x80 | Mode.RXCONTINUOUS)
    wr(tx, Reg.OP_MODE, 0x80 | Mode.SLEEP)
    wr(tx, Reg.FRF_LSB, 0x00 + 100)  # ~6.1 kHz above the receiver
    wr(tx, Reg.OP_MODE, 0x80 | Mode.STDBY)
    _send(tx, b"weak")
    air.clock.advance(0.1)
    assert rd(rx, Reg.PKT_SNR_VALUE) == (-25) & 0xFF  # two's complement, dB × 4
    # TX power at reset: PA_BOOST off, RFO Pmax 13.2 dBm, OutputPower 15 → 13.2 dBm; −140 → −126.8 dBm
    raw = rd(rx, Reg.PKT_RSSI_VALUE)
    assert -164 + raw - 6.25 == pytest.approx(-126.8, abs=0.6)  # LF port (reset Frf 434 MHz)
    fei = (rd(rx, Reg.FEI_MSB) & 0x0F) << 16 | rd(rx, Reg.FEI_MID) << 8 | rd(rx, Reg.FEI_LSB)
    assert regs.fei_to_hz(fei, 125e3) == pytest.approx(100 * regs.FSTEP_HZ, abs=10)


def test_rssi_value_reads_noise_floor_in_rx() -> None:
    air, tx, rx = _two_chips()
    wr(rx, Reg.OP_MODE, 0x80 | Mode.RXCONTINUOUS)
    noise = -164 + rd(rx, Reg.RSSI_VALUE)
    assert noise == pytest.approx(-174 + 51 + 6, abs=1)
    _send(tx, bytes(20))
    air.clock.advance(0.01)
    assert -164 + rd(rx, Reg.RSSI_VALUE) > noise + 20


def test_rx_single_times_out_and_cad() -> None:
    air, tx, rx = _two_chips()
    wr(rx, Reg.OP_MODE, 0x80 | Mode.RXSINGLE)
    air.clock.advance(0.1 * 1.024 + 0.01)  # SymbTimeout 0x64 symbols of 1.024 ms
    assert rd(rx, Reg.IRQ_FLAGS) & Irq.RX_TIMEOUT and rd(rx, Reg.OP_MODE) & 7 == Mode.STDBY
    wr(rx, Reg.IRQ_FLAGS, 0xFF)
    wr(rx, Reg.OP_MODE, 0x80 | Mode.CAD)
    air.clock.advance(0.01)
    assert rd(rx, Reg.IRQ_FLAGS) == Irq.CAD_DONE
    wr(rx, Reg.IRQ_FLAGS, 0xFF)
    _send(tx, bytes(30))
    wr(rx, Reg.OP_MODE, 0x80 | Mode.CAD)
    air.clock.advance(0.01)
    assert rd(rx, Reg.IRQ_FLAGS) == Irq.CAD_DONE | Irq.CAD_DETECTED


def test_fake_rpi_gpio_surface() -> None:
    clock = VirtualClock()
    gpio = FakeGPIO(clock)
    with pytest.raises(RuntimeError):
        gpio.setup(17, gpio.OUT)  # no numbering mode yet
    gpio.setwarnings(False)
    gpio.setmode(gpio.BCM)
    seen: list[int] = []
    gpio.setup(17, gpio.OUT, initial=gpio.HIGH)
    gpio.setup(4, gpio.IN, pull_up_down=gpio.PUD_DOWN)
    gpio.add_event_detect(4, gpio.RISING, callback=seen.append)
    with pytest.raises(RuntimeError):
        gpio.add_event_detect(4, gpio.RISING)
    gpio.drive_input(4, True)
    gpio.drive_input(4, False)
    clock.advance(0)  # the callback runs on the callback thread; time waits for it
    assert seen == [4] and gpio.event_detected(4) and not gpio.event_detected(4)
    gpio.output(17, gpio.LOW)
    assert gpio.input(17) == 0
    gpio.remove_event_detect(4)
    gpio.drive_input(4, True)
    assert seen == [4]
    gpio.cleanup()
    with pytest.raises(RuntimeError):
        gpio.input(4)
    for name in ("BOARD", "IN", "OUT", "RISING", "FALLING", "BOTH", "HIGH", "LOW", "PUD_UP", "PUD_OFF"):
        assert isinstance(getattr(gpio, name), int)


def test_fake_gpiod_edges_in_virtual_time() -> None:
    clock = VirtualClock()
    pins = FakeGPIO()
    lib = FakeGpiod(pins, clock, {"/dev/gpiochip0": "pinctrl-rp1"})
    assert lib.is_gpiochip_device("/dev/gpiochip0") and not lib.is_gpiochip_device("/dev/null")
    with lib.Chip("/dev/gpiochip0") as chip:
        assert chip.get_info().label == "pinctrl-rp1"
    req = lib.request_lines(
        "/dev/gpiochip0",
        consumer="t",
        config={4: lib.LineSettings(direction=lib.line.Direction.INPUT, edge_detection=lib.line.Edge.RISING)},
    )
    with pytest.raises(OSError):
        lib.request_lines("/dev/gpiochip0", config={4: lib.LineSettings(direction=lib.line.Direction.INPUT)})
    clock.call_at(clock.monotonic() + 0.5, lambda: pins.drive_input(4, True))
    assert not req.wait_edge_events(0.1)
    assert req.wait_edge_events(1.0)
    assert clock.monotonic() == pytest.approx(1000.5)
    events = req.read_edge_events()
    assert [(e.line_offset, e.event_type) for e in events] == [(4, lib.EdgeEvent.Type.RISING_EDGE)]
    assert req.get_value(4) is lib.line.Value.ACTIVE
    req.release()
