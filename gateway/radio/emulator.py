"""An SX1276 at the register level, plus fake GPIO libraries to wire it to.

``EmulatedSX1276`` has the ``spidev.SpiDev`` surface itself (open, close, xfer, xfer2, xfer3,
readbytes, writebytes and the usual attributes) for direct use; ``SpiBoard`` wires chips at
(bus, chip select) and its ``SpiDev`` gives independent handles as the real module does, so any
driver written for spidev runs against it, not only ours. ``FakeGPIO`` offers RPi.GPIO's module
surface and ``FakeGpiod`` the libgpiod v2 surface our backend uses; the chip drives its DIO lines
into them and watches its RESET pin. The fakes are as strict as the real libraries where a lenient
fake would hide a bug: SPI mode 0 only, reads corrupted above 10 MHz, a missing /dev/spidevB.D,
GPIO callbacks on their own thread, bouncetime, conflicting edge detection, the FIFO writable in
standby only.

What is modelled (datasheet section 4 and 6): reset values, read-only registers, burst access with
auto-increment except at the FIFO (where FifoAddrPtr advances), MISO returning the previous value
during writes, the mode rules (LongRangeMode only changes in SLEEP; the FIFO is cleared and
unreadable in SLEEP), FIFO base addresses and pointers, IRQ flags with write-1-to-clear and the mask,
the DIO mapping (DIO0 stays high until its flag is cleared), ImageCal, header and packet counters
(reset in SLEEP), RSSI/SNR/FEI from the link, CrcOnPayload, TX/RX/CAD timing. Radio traffic goes
through a ``VirtualAir`` (gateway.radio.air); without one the chip is alone and hears nothing.
``fault`` emulates the wiring faults installers meet (no chip answering, MISO floating, DIO0 or
RESET not connected, a marginal SPI link), so every field diagnostic can be made to fail.
This module never imports the driver.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.hw.clock import VirtualClock, wait_event
from gateway.radio import regs
from gateway.radio.airtime import symbol_time_s, time_on_air_s
from gateway.radio.faults import FAULTS
from gateway.radio.regs import Irq, Mode, Reg

log = logging.getLogger(__name__)

IMAGE_CAL_DURATION_S = 0.010  # datasheet 2.1.3.8: about 10 ms
CAD_SYMBOLS = 2  # a CAD lasts about two symbols (datasheet 4.1.6)
RX_LORA_MODES = (Mode.RXCONTINUOUS, Mode.RXSINGLE)

# Wiring faults (FAULTS): see gateway.radio.faults. spi-marginal: above this the chip latches bit 0 wrongly.
SPI_MARGINAL_HZ = 5_000_000
SPI_MAX_HZ = 10_000_000  # datasheet table 8 (SPI timing): fSCK max 10 MHz
# spidev reads the device's own maximum at open(): the device tree's spi-max-frequency, 125 MHz for
# the spidev nodes of the Raspberry Pi overlays (unconfirmed against every kernel); far above 10 MHz
SPIDEV_DEFAULT_HZ = 125_000_000


def iq_polarity(inverted: bool, invert_iq2: int) -> bool | None:
    """The IQ polarity one direction really uses: RegInvertIQ's bit for it (bit 6 RX, bit 0 TX with 0 =
    inverted) and RegInvertIQ2 (0x3B, LoRa page) together. The datasheet documents only RegInvertIQ;
    Semtech's reference driver (LoRaMac-node sx1276.c, SX1276SetRx and SX1276Send) always writes 0x3B
    with it: 0x19 (RFLR_INVERTIQ2_ON) for inverted IQ, 0x1D (RFLR_INVERTIQ2_OFF, the reset value) for
    normal. What the chip does when the two disagree is not documented; here it demodulates with
    neither polarity (None), so a driver that sets only one of them fails here too."""
    if invert_iq2 == (regs.INVERT_IQ2_INVERTED if inverted else regs.INVERT_IQ2_NORMAL):
        return inverted
    return None


@dataclass(frozen=True, slots=True)
class RadioParams:
    """A snapshot of the chip's LoRa settings, decoded from its registers (what the air needs)."""

    lora: bool
    mode: int
    frequency_hz: float
    rx_frequency_hz: float  # where the receiver actually listens (errata IF shift applied)
    sf: int
    bw_hz: float  # exact
    cr_code: int
    implicit: bool
    crc: bool
    ldro: bool
    sync_word: int
    iq_rx_inverted: bool | None  # None: RegInvertIQ and RegInvertIQ2 disagree (see iq_polarity)
    iq_tx_inverted: bool | None
    preamble: int
    payload_length: int
    max_payload_length: int
    power_dbm: float
    detect_optimize: int
    detection_threshold: int
    symb_timeout: int


class Air(Protocol):
    clock: VirtualClock

    def start_tx(self, chip: EmulatedSX1276, params: RadioParams, payload: bytes) -> None: ...

    def abort_tx(self, chip: EmulatedSX1276) -> None: ...

    def channel_active(self, chip: EmulatedSX1276) -> bool: ...

    def current_rssi_dbm(self, chip: EmulatedSX1276) -> float: ...


class EmulatedSX1276:
    """The chip. SPI via the SpiDev methods; radio via the air; GPIO via ``wire()``."""

    def __init__(
        self, air: Air | None = None, clock: VirtualClock | None = None, name: str = "sx1276"
    ) -> None:
        self.name = name
        self.air = air
        self.clock: VirtualClock = air.clock if air is not None else (clock or VirtualClock())
        self._lock = self.clock.lock  # the simulation's single lock (see VirtualClock)
        # spidev surface
        self.mode = 0
        self.bits_per_word = 8
        self.max_speed_hz = 500_000
        self.lsbfirst = False
        self.cshigh = False
        self.threewire = False
        self.loop = False
        self.no_cs = False
        self._open = False
        # statistics (for tests and the benchmark)
        self.spi_transactions = 0
        self.spi_bytes = 0
        self.emulation_s = 0.0
        self.resets = 0
        self.fifo_writes_ignored = 0
        # wiring
        self._dio_sinks: dict[int, Callable[[bool], None]] = {}
        self._dio_levels = [False] * 6
        self._held_in_reset = False
        # fault injection: the next valid header leaves the modem hung (no RxDone) until RX is re-entered
        self.stall_after_header = False
        self._fault = "none"
        self.power_on_reset()

    @property
    def fault(self) -> str:
        """The wiring fault being emulated (one of ``FAULTS``)."""
        return self._fault

    @fault.setter
    def fault(self, value: str) -> None:
        if value not in FAULTS:
            raise ValueError(f"unknown emulated fault {value!r} (one of {', '.join(FAULTS)})")
        with self._lock:
            self._fault = value
            self._update_dio()

    # ------------------------------------------------------------------ spidev.SpiDev surface
    def open(self, bus: int = 0, device: int = 0) -> None:
        self.bus, self.device = bus, device
        self._open = True

    def close(self) -> None:
        self._open = False

    def xfer(
        self, data: Sequence[int], speed_hz: int = 0, delay_usecs: int = 0, bits_per_word: int = 0
    ) -> list[int]:
        return self.spi_frame(data, self.mode, speed_hz or self.max_speed_hz)

    def xfer2(
        self, data: Sequence[int], speed_hz: int = 0, delay_usecs: int = 0, bits_per_word: int = 0
    ) -> list[int]:
        return self.spi_frame(data, self.mode, speed_hz or self.max_speed_hz)

    def xfer3(
        self, data: Sequence[int], speed_hz: int = 0, delay_usecs: int = 0, bits_per_word: int = 0
    ) -> list[int]:
        return self.spi_frame(data, self.mode, speed_hz or self.max_speed_hz)

    def readbytes(self, n: int) -> list[int]:
        return self.spi_frame([0] * n, self.mode, self.max_speed_hz)

    def writebytes(self, data: Sequence[int]) -> None:
        self.spi_frame(data, self.mode, self.max_speed_hz)

    def writebytes2(self, data: Sequence[int]) -> None:
        self.spi_frame(data, self.mode, self.max_speed_hz)

    def fileno(self) -> int:
        return -1

    def __enter__(self) -> EmulatedSX1276:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ wiring
    def connect_dio(self, index: int, sink: Callable[[bool], None]) -> None:
        """Route DIO``index`` to ``sink(level)`` (a GPIO input); called on every level change."""
        self._dio_sinks[index] = sink
        sink(self._dio_levels[index])

    def set_reset_pin(self, level: bool) -> None:
        """NRESET: low holds the chip in reset; the rising edge restarts it with reset values."""
        with self._lock:
            if self._fault == "reset-stuck":
                return  # the pulse never reaches the chip
            if not level:
                if not self._held_in_reset:
                    self._held_in_reset = True
                    self._abort_activity()
            elif self._held_in_reset:
                self._held_in_reset = False
                self.power_on_reset()

    def wire(self, gpio: FakeGPIO, reset_pin: int | None, dio_pins: dict[int, int]) -> None:
        """Connect to a fake GPIO bank: RESET to ``reset_pin``, DIO n to ``dio_pins[n]``."""
        if gpio.clock is None:
            gpio.clock = self.clock  # the board's callbacks and bouncetime follow the chip's time
        if reset_pin is not None:
            gpio.attach_output_listener(reset_pin, self.set_reset_pin)
        for index, pin in dio_pins.items():
            self.connect_dio(index, lambda level, p=pin: gpio.drive_input(p, level))

    # ------------------------------------------------------------------ chip state
    def power_on_reset(self) -> None:
        """Every register back to its reset value (POR or a RESET pulse), FSK mode, STDBY."""
        with self._lock:
            self._abort_activity()
            self._common = bytearray(128)
            self._lora = bytearray(128)
            self._fsk = bytearray(128)
            for addr, value in regs.RESET_COMMON.items():
                self._common[addr] = value
            for addr, value in regs.RESET_LORA.items():
                self._lora[addr] = value
            for addr, value in regs.RESET_FSK.items():
                self._fsk[addr] = value
            self.fifo = bytearray(regs.FIFO_SIZE)
            self._rx_wptr = 0
            self._header_cnt = 0
            self._packet_cnt = 0
            self._rx_epoch = getattr(self, "_rx_epoch", 0) + 1
            self._tx_handle: int | None = None
            self._timer_handle: int | None = None
            self._rx_busy = False
            self.resets += 1
            self._update_dio()

    @property
    def op_mode(self) -> int:
        return self._common[Reg.OP_MODE] & 0x07

    @property
    def lora_mode(self) -> bool:
        return bool(self._common[Reg.OP_MODE] & 0x80)

    @property
    def rx_epoch(self) -> int:
        """Changes whenever the chip enters or leaves receive, so the air can tell it stopped listening."""
        return self._rx_epoch

    def is_receiving(self) -> bool:
        return self.lora_mode and self.op_mode in RX_LORA_MODES and not self._held_in_reset

    def peek(self, addr: int) -> int:
        """A register's value without side effects (for tests)."""
        return self._page(addr)[addr]

    @property
    def irq_flags(self) -> int:
        return self._lora[Reg.IRQ_FLAGS]

    def dio_level(self, index: int) -> bool:
        return self._dio_levels[index]

    def params(self) -> RadioParams:
        c, lo = self._common, self._lora
        frf = (c[Reg.FRF_MSB] << 16) | (c[Reg.FRF_MID] << 8) | c[Reg.FRF_LSB]
        freq = regs.hz_from_frf(frf)
        bw_code = min(regs.BW.get(lo[Reg.MODEM_CONFIG1]), 9)
        bw = regs.EXACT_BANDWIDTHS_HZ[bw_code]
        rx_freq = freq
        # Errata 2.3: with the automatic IF off below 62.5 kHz the receiver listens one bandwidth low,
        # which is why drivers shift Frf up by the bandwidth.
        if bw_code <= 5 and not regs.AUTOMATIC_IF_ON.get(lo[Reg.DETECT_OPTIMIZE]) and lo[Reg.IF_FREQ1] == 0:
            rx_freq = freq - regs.BANDWIDTHS_HZ[bw_code]
        sf = regs.SPREADING_FACTOR.get(lo[Reg.MODEM_CONFIG2])
        return RadioParams(
            lora=self.lora_mode,
            mode=self.op_mode,
            frequency_hz=freq,
            rx_frequency_hz=rx_freq,
            sf=min(max(sf, 6), 12),
            bw_hz=bw,
            cr_code=max(1, min(4, regs.CODING_RATE.get(lo[Reg.MODEM_CONFIG1]))),
            implicit=bool(regs.IMPLICIT_HEADER_MODE_ON.get(lo[Reg.MODEM_CONFIG1])),
            crc=bool(regs.RX_PAYLOAD_CRC_ON.get(lo[Reg.MODEM_CONFIG2])),
            ldro=bool(regs.LOW_DATA_RATE_OPTIMIZE.get(lo[Reg.MODEM_CONFIG3])),
            sync_word=lo[Reg.SYNC_WORD],
            iq_rx_inverted=iq_polarity(bool(regs.INVERT_IQ_RX.get(lo[Reg.INVERT_IQ])), lo[Reg.INVERT_IQ2]),
            iq_tx_inverted=iq_polarity(not regs.INVERT_IQ_TX_OFF.get(lo[Reg.INVERT_IQ]), lo[Reg.INVERT_IQ2]),
            preamble=max(6, (lo[Reg.PREAMBLE_MSB] << 8) | lo[Reg.PREAMBLE_LSB]),
            payload_length=lo[Reg.PAYLOAD_LENGTH],
            max_payload_length=lo[Reg.MAX_PAYLOAD_LENGTH],
            power_dbm=self._tx_power_dbm(),
            detect_optimize=regs.DETECTION_OPTIMIZE.get(lo[Reg.DETECT_OPTIMIZE]),
            detection_threshold=lo[Reg.DETECTION_THRESHOLD],
            symb_timeout=(regs.SYMB_TIMEOUT_MSB.get(lo[Reg.MODEM_CONFIG2]) << 8) | lo[Reg.SYMB_TIMEOUT_LSB],
        )

    # ------------------------------------------------------------------ called by the air
    def rx_started(self) -> None:
        with self._lock:
            self._rx_busy = True
            self._lora[Reg.MODEM_STAT] = (
                (self._lora[Reg.MODEM_STAT] & 0xE0)
                | regs.SIGNAL_DETECTED
                | (regs.SIGNAL_SYNCHRONIZED | regs.RX_ONGOING)
            )
            if self._timer_handle is not None and self.op_mode == Mode.RXSINGLE:
                self.clock.cancel(self._timer_handle)  # preamble found: no RxTimeout
                self._timer_handle = None

    def rx_header(self, cr_code: int) -> bool:
        """A valid explicit header; False when the chip is stalled (fault injection)."""
        with self._lock:
            self._header_cnt = (self._header_cnt + 1) & 0xFFFF
            self._lora[Reg.MODEM_STAT] = (cr_code << 5) | regs.HEADER_INFO_VALID | regs.RX_ONGOING | 0x03
            self._raise(Irq.VALID_HEADER)
            if self.stall_after_header:
                self.stall_after_header = False
                self._stalled_epoch = self._rx_epoch
                self._rx_busy = False
                self._lora[Reg.MODEM_STAT] = (cr_code << 5) | regs.MODEM_CLEAR
                return False
            return True

    def is_stalled(self) -> bool:
        return getattr(self, "_stalled_epoch", None) == self._rx_epoch

    def rx_done(
        self,
        payload: bytes,
        crc_on: bool,
        crc_error: bool,
        cr_code: int,
        snr_db: float,
        rssi_dbm: float,
        freq_error_hz: float,
    ) -> None:
        """End of a received packet: FIFO, status registers, counters, RxDone (+ PayloadCrcError)."""
        with self._lock:
            lo = self._lora
            start = self._rx_wptr
            for i, byte in enumerate(payload):
                self.fifo[(start + i) % regs.FIFO_SIZE] = byte
            self._rx_wptr = (start + len(payload)) % regs.FIFO_SIZE
            lo[Reg.FIFO_RX_CURRENT_ADDR] = start
            lo[Reg.FIFO_RX_BYTE_ADDR] = (start + max(len(payload), 1) - 1) % regs.FIFO_SIZE
            lo[Reg.RX_NB_BYTES] = len(payload)
            if not crc_error:
                self._packet_cnt = (self._packet_cnt + 1) & 0xFFFF
            snr_raw = max(-128, min(127, round(snr_db * 4)))
            lo[Reg.PKT_SNR_VALUE] = snr_raw & 0xFF
            freq = self.params().frequency_hz
            rssi_raw = rssi_dbm - regs.rssi_offset_db(freq) - (snr_raw / 4 if snr_raw < 0 else 0)
            lo[Reg.PKT_RSSI_VALUE] = max(0, min(255, round(rssi_raw)))
            lo[Reg.HOP_CHANNEL] = regs.CRC_ON_PAYLOAD.put(lo[Reg.HOP_CHANNEL], int(crc_on))
            fei = regs.hz_to_fei(freq_error_hz, self.params().bw_hz)
            lo[Reg.FEI_MSB], lo[Reg.FEI_MID], lo[Reg.FEI_LSB] = (
                (fei >> 16) & 0x0F,
                (fei >> 8) & 0xFF,
                fei & 0xFF,
            )
            lo[Reg.MODEM_STAT] = (cr_code << 5) | regs.MODEM_CLEAR
            self._rx_busy = False
            self._raise(Irq.RX_DONE | (Irq.PAYLOAD_CRC_ERROR if crc_error else 0))
            if self.op_mode == Mode.RXSINGLE:
                self._set_mode_bits(Mode.STDBY)

    def rx_aborted(self) -> None:
        with self._lock:
            self._rx_busy = False
            self._lora[Reg.MODEM_STAT] = (self._lora[Reg.MODEM_STAT] & 0xE0) | regs.MODEM_CLEAR

    # ------------------------------------------------------------------ SPI protocol
    def spi_frame(self, data: Sequence[int], mode: int = 0, speed_hz: int = 0) -> list[int]:
        """One chip-select frame as the chip sees it, clocked in SPI ``mode`` at ``speed_hz``.

        The chip answers in mode 0 only (datasheet: CPOL = 0, CPHA = 0): in another mode it latches
        nothing and the master samples MISO on the wrong edge (every bit one place late). Above
        ``SPI_MAX_HZ`` the chip's MISO lags the clock: reads come back shifted by one bit, so a link
        test on the version register catches a wrong clock. ``emulation_s`` adds the wall time spent
        here (``perf_counter``: a per-frame CPU clock reading is a syscall that would slow the caller).
        """
        started = time.perf_counter()
        with self._lock:
            self.spi_transactions += 1
            self.spi_bytes += len(data)
            if mode != 0:
                out = _shift_late(self._decode(data, latch=False))
            elif speed_hz > SPI_MAX_HZ:
                out = _shift_lag(self._decode(data, latch=True, speed_hz=speed_hz))
            else:
                out = self._decode(data, latch=True, speed_hz=speed_hz)
        self.emulation_s += time.perf_counter() - started
        return out

    def _transaction(self, data: Sequence[int]) -> list[int]:
        return self.spi_frame(data, self.mode, self.max_speed_hz)

    def _decode(self, data: Sequence[int], latch: bool, speed_hz: int = 0) -> list[int]:
        out = [0] * len(data)
        if self._fault in ("chip-absent", "chip-unpowered"):
            # nothing answers: MISO held low, or floating high; the chip never sees the writes
            return [0xFF if self._fault == "chip-unpowered" else 0x00] * len(data)
        if not data or self._held_in_reset:
            return out
        first = data[0] & 0xFF
        write = bool(first & regs.WRITE)
        addr = first & regs.ADDRESS_MASK
        garble = 0x01 if self._fault == "spi-marginal" and speed_hz > SPI_MARGINAL_HZ else 0
        for i in range(1, len(data)):
            if write:
                out[i] = self._read_plain(addr)  # MISO shifts out the previous value
                if latch:
                    self._write(addr, (data[i] ^ garble) & 0xFF)
            else:
                out[i] = self._read(addr) if latch else self._read_plain(addr)
            if addr != Reg.FIFO:
                addr = (addr + 1) & regs.ADDRESS_MASK
        return out

    def _page(self, addr: int) -> bytearray:
        if 0x0D <= addr <= 0x3F:
            if self.lora_mode and not regs.ACCESS_SHARED_REG.get(self._common[Reg.OP_MODE]):
                return self._lora
            return self._fsk
        return self._common

    def _read_plain(self, addr: int) -> int:
        if addr == Reg.FIFO:
            return 0
        return self._page(addr)[addr]

    def _read(self, addr: int) -> int:
        if addr == Reg.FIFO:
            if self.op_mode == Mode.SLEEP:
                return 0  # FIFO not accessible in SLEEP
            ptr = self._lora[Reg.FIFO_ADDR_PTR]
            self._lora[Reg.FIFO_ADDR_PTR] = (ptr + 1) % regs.FIFO_SIZE
            return self.fifo[ptr]
        page = self._page(addr)
        if page is self._lora:
            if addr == Reg.RSSI_VALUE:
                return self._current_rssi_raw()
            if addr == Reg.RX_HEADER_CNT_MSB:
                return self._header_cnt >> 8
            if addr == Reg.RX_HEADER_CNT_LSB:
                return self._header_cnt & 0xFF
            if addr == Reg.RX_PACKET_CNT_MSB:
                return self._packet_cnt >> 8
            if addr == Reg.RX_PACKET_CNT_LSB:
                return self._packet_cnt & 0xFF
        return page[addr]

    def _write(self, addr: int, value: int) -> None:
        if addr == Reg.FIFO:
            if self.op_mode == Mode.SLEEP or (self.lora_mode and self.op_mode != Mode.STDBY):
                self.fifo_writes_ignored += 1  # "the LoRa FIFO can only be filled in Stand-by mode"
                return
            ptr = self._lora[Reg.FIFO_ADDR_PTR]
            self.fifo[ptr] = value
            self._lora[Reg.FIFO_ADDR_PTR] = (ptr + 1) % regs.FIFO_SIZE
            return
        if addr == Reg.OP_MODE:
            self._write_op_mode(value)
            return
        if addr == Reg.VERSION:
            return
        page = self._page(addr)
        if page is self._lora:
            if addr in regs.READ_ONLY_LORA:
                return
            if addr == Reg.IRQ_FLAGS:
                page[addr] &= ~value & 0xFF  # write 1 to clear
                self._update_dio()
                return
            page[addr] = value
            if addr == Reg.IRQ_FLAGS_MASK:
                self._update_dio()
            return
        if page is self._fsk and addr == regs.IMAGE_CAL:
            self._write_image_cal(value)
            return
        page[addr] = value
        if addr in (Reg.DIO_MAPPING1, Reg.DIO_MAPPING2):
            self._update_dio()

    def _write_image_cal(self, value: int) -> None:
        running = self._fsk[regs.IMAGE_CAL] & regs.IMAGE_CAL_RUNNING
        self._fsk[regs.IMAGE_CAL] = (value & ~(regs.IMAGE_CAL_START | regs.IMAGE_CAL_RUNNING)) | running
        if value & regs.IMAGE_CAL_START and not self.lora_mode and self.op_mode == Mode.STDBY and not running:
            self._fsk[regs.IMAGE_CAL] |= regs.IMAGE_CAL_RUNNING
            epoch = self.resets

            def done() -> None:
                with self._lock:
                    if self.resets == epoch:
                        self._fsk[regs.IMAGE_CAL] &= ~regs.IMAGE_CAL_RUNNING & 0xFF

            self.clock.call_later(IMAGE_CAL_DURATION_S, done)

    def _write_op_mode(self, value: int) -> None:
        old = self._common[Reg.OP_MODE]
        old_mode = old & 0x07
        if old_mode != Mode.SLEEP and value & 0x07 != Mode.SLEEP:
            # LongRangeMode changes only in SLEEP. A single write of SLEEP + LongRangeMode from another
            # mode works on real chips (RadioHead and arduino-LoRa rely on it), so it is accepted here.
            value = (value & 0x7F) | (old & 0x80)
        self._common[Reg.OP_MODE] = value
        new_mode = value & 0x07
        if (old ^ value) & 0x80:
            self._update_dio()
        if new_mode != old_mode or (old ^ value) & 0x80:
            self._enter_mode(new_mode, old_mode)

    def _set_mode_bits(self, mode: int) -> None:
        old_mode = self.op_mode
        self._common[Reg.OP_MODE] = (self._common[Reg.OP_MODE] & 0xF8) | mode
        self._enter_mode(mode, old_mode)

    def _enter_mode(self, mode: int, old_mode: int) -> None:
        was_rx = old_mode in RX_LORA_MODES
        if was_rx and mode not in RX_LORA_MODES:
            self._rx_epoch += 1
            self.rx_aborted()
        if old_mode == Mode.TX and mode != Mode.TX and self._tx_handle is not None:
            self.clock.cancel(self._tx_handle)
            self._tx_handle = None
            if self.air is not None:
                self.air.abort_tx(self)
        if self._timer_handle is not None:
            self.clock.cancel(self._timer_handle)
            self._timer_handle = None
        if mode == Mode.SLEEP:
            self.fifo = bytearray(regs.FIFO_SIZE)
            self._header_cnt = 0
            self._packet_cnt = 0
        if not self.lora_mode:
            return
        if mode == Mode.TX:
            self._start_tx()
        elif mode in RX_LORA_MODES and not was_rx:
            self._rx_epoch += 1
            self._rx_wptr = self._lora[Reg.FIFO_RX_BASE_ADDR]
            if mode == Mode.RXSINGLE:
                p = self.params()
                timeout = max(p.symb_timeout, 4) * symbol_time_s(p.sf, p.bw_hz)
                self._timer_handle = self.clock.call_later(timeout, self._rx_timeout)
        elif mode == Mode.CAD:
            p = self.params()
            self._timer_handle = self.clock.call_later(
                CAD_SYMBOLS * symbol_time_s(p.sf, p.bw_hz), self._cad_done
            )

    def _start_tx(self) -> None:
        p = self.params()
        length = p.payload_length
        base = self._lora[Reg.FIFO_TX_BASE_ADDR]
        payload = bytes(self.fifo[(base + i) % regs.FIFO_SIZE] for i in range(length))
        toa = time_on_air_s(length, p.sf, p.bw_hz, p.cr_code + 4, p.preamble, p.implicit, p.crc, p.ldro)
        if self.air is not None:
            self.air.start_tx(self, p, payload)
        self._tx_handle = self.clock.call_later(toa, self._tx_done)

    def _tx_done(self) -> None:
        with self._lock:
            self._tx_handle = None
            self._raise(Irq.TX_DONE)
            self._set_mode_bits(Mode.STDBY)

    def _rx_timeout(self) -> None:
        with self._lock:
            self._timer_handle = None
            if self.op_mode == Mode.RXSINGLE and not self._rx_busy:
                self._raise(Irq.RX_TIMEOUT)
                self._set_mode_bits(Mode.STDBY)

    def _cad_done(self) -> None:
        with self._lock:
            self._timer_handle = None
            detected = self.air is not None and self.air.channel_active(self)
            self._raise(Irq.CAD_DONE | (Irq.CAD_DETECTED if detected else 0))
            self._set_mode_bits(Mode.STDBY)

    def _abort_activity(self) -> None:
        if getattr(self, "_tx_handle", None) is not None:
            self.clock.cancel(self._tx_handle)  # type: ignore[arg-type]
            self._tx_handle = None
            if self.air is not None:
                self.air.abort_tx(self)
        if getattr(self, "_timer_handle", None) is not None:
            self.clock.cancel(self._timer_handle)  # type: ignore[arg-type]
            self._timer_handle = None
        if hasattr(self, "_rx_epoch"):
            self._rx_epoch += 1

    def _raise(self, bits: int) -> None:
        bits &= ~self._lora[Reg.IRQ_FLAGS_MASK] & 0xFF  # a masked IRQ never shows in RegIrqFlags
        self._lora[Reg.IRQ_FLAGS] |= bits
        self._update_dio()

    def _update_dio(self) -> None:
        if not hasattr(self, "_lora"):
            return
        flags = self._lora[Reg.IRQ_FLAGS]
        levels = [False] * 6
        if self.lora_mode:
            m1 = self._common[Reg.DIO_MAPPING1]
            dio0 = (Irq.RX_DONE, Irq.TX_DONE, Irq.CAD_DONE, 0)[regs.DIO0_MAPPING.get(m1)]
            dio1 = (Irq.RX_TIMEOUT, Irq.FHSS_CHANGE_CHANNEL, Irq.CAD_DETECTED, 0)[regs.DIO1_MAPPING.get(m1)]
            dio3 = (Irq.CAD_DONE, Irq.VALID_HEADER, Irq.PAYLOAD_CRC_ERROR, 0)[regs.DIO3_MAPPING.get(m1)]
            levels[0], levels[1], levels[3] = bool(flags & dio0), bool(flags & dio1), bool(flags & dio3)
            if getattr(self, "_fault", "none") == "no-dio0":
                levels[0] = False  # the line is not connected to the GPIO: it never rises there
        for index, level in enumerate(levels):
            if level != self._dio_levels[index]:
                self._dio_levels[index] = level
                sink = self._dio_sinks.get(index)
                if sink is not None:
                    sink(level)

    def _tx_power_dbm(self) -> float:
        pa = self._common[Reg.PA_CONFIG]
        out = regs.OUTPUT_POWER.get(pa)
        if regs.PA_SELECT.get(pa):
            power = 17 - (15 - out)
            if self._common[Reg.PA_DAC] & 0x07 == 0x07:
                power += 3
            return float(power)
        pmax = 10.8 + 0.6 * regs.MAX_POWER.get(pa)
        return pmax - (15 - out)

    def _current_rssi_raw(self) -> int:
        p = self.params()
        if self.air is not None and self.is_receiving():
            dbm = self.air.current_rssi_dbm(self)
        else:
            dbm = noise_floor_dbm(p.bw_hz)
        return max(0, min(255, round(dbm - regs.rssi_offset_db(p.frequency_hz))))


def noise_floor_dbm(bw_hz: float, noise_figure_db: float = 6.0) -> float:
    """Thermal noise in the channel: −174 dBm/Hz + 10·log10(BW) + NF."""
    return -174.0 + 10 * math.log10(bw_hz) + noise_figure_db


# ====================================================================== fake GPIO libraries
_Dispatch = tuple[int, list[Callable[[int], None]], VirtualClock | None]


class FakeGPIO:
    """RPi.GPIO's module surface on a bank of emulated pins (use the instance as the module).

    Inputs are driven by emulated chips (``drive_input``); outputs notify listeners (a chip's RESET).
    As in the real library, edge callbacks run on one callback thread of their own, never on the
    thread that changed the level (which holds the simulation lock); ``bouncetime`` drops edges
    that follow an accepted one too closely; a second ``add_event_detect`` on a channel raises
    RuntimeError; ``cleanup`` releases detection (callbacks still queued for it are dropped). On a
    manual virtual clock the callback runs at the edge's instant: time waits for it (``clock.hold``).
    """

    BCM = 11
    BOARD = 10
    OUT = 0
    IN = 1
    HIGH = 1
    LOW = 0
    RISING = 31
    FALLING = 32
    BOTH = 33
    PUD_OFF = 20
    PUD_DOWN = 21
    PUD_UP = 22
    VERSION = "0.7.1-emulated"
    RPI_INFO: dict[str, Any] = {"P1_REVISION": 3, "TYPE": "emulated"}  # noqa: RUF012

    def __init__(self, clock: VirtualClock | None = None) -> None:
        self.clock = clock  # virtual time for bouncetime, wait_for_edge and callback timing
        self._lock = threading.RLock()
        self._mode: int | None = None
        self._levels: dict[int, bool] = {}
        self._directions: dict[int, int] = {}
        self._detect: dict[int, int] = {}
        self._detected: dict[int, bool] = {}
        self._bounce_s: dict[int, float] = {}
        self._last_edge_s: dict[int, float] = {}
        self._callbacks: dict[int, list[Callable[[int], None]]] = {}
        self._listeners: dict[int, list[Callable[[bool], None]]] = {}
        self.warnings = True
        self._edge_watchers: list[Callable[[int, bool], None]] = []
        self.drop_edges: dict[int, int] = {}  # pin -> number of rising edges to lose (fault injection)
        self.edges_dropped = 0
        self.edges_debounced = 0
        self._queue: queue.SimpleQueue[_Dispatch | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.callback_errors = 0
        self._pending = 0  # dispatches queued or running (callbacks_idle)
        self._idle = threading.Condition()

    # RPi.GPIO functions
    def setwarnings(self, flag: bool) -> None:
        self.warnings = bool(flag)

    def setmode(self, mode: int) -> None:
        if mode not in (self.BCM, self.BOARD):
            raise ValueError("An invalid mode was passed to setmode()")
        if self._mode is not None and self._mode != mode:
            raise ValueError("A different mode has already been set!")
        self._mode = mode

    def getmode(self) -> int | None:
        return self._mode

    def setup(
        self, channel: int | Sequence[int], direction: int, pull_up_down: int = PUD_OFF, initial: int = -1
    ) -> None:
        self._need_mode()
        for ch in _channels(channel):
            with self._lock:
                self._directions[ch] = direction
                if direction == self.OUT:
                    level = bool(initial) if initial != -1 else self._levels.get(ch, False)
                    self._set_output(ch, level)
                else:
                    self._levels.setdefault(ch, pull_up_down == self.PUD_UP)

    def output(self, channel: int | Sequence[int], value: int | bool | Sequence[int]) -> None:
        chans = _channels(channel)
        values = list(value) if isinstance(value, list | tuple) else [value] * len(chans)
        for ch, val in zip(chans, values, strict=True):
            if self._directions.get(ch) != self.OUT:
                raise RuntimeError("The GPIO channel has not been set up as an OUTPUT")
            self._set_output(ch, bool(val))

    def input(self, channel: int) -> int:
        if channel not in self._directions:
            raise RuntimeError("You must setup() the GPIO channel first")
        return int(self._levels.get(channel, False))

    def add_event_detect(
        self,
        channel: int,
        edge: int,
        callback: Callable[[int], None] | None = None,
        bouncetime: int | None = None,
    ) -> None:
        if self._directions.get(channel) != self.IN:
            raise RuntimeError("You must setup() the GPIO channel as an input first")
        if edge not in (self.RISING, self.FALLING, self.BOTH):
            raise ValueError("The edge must be set to RISING, FALLING or BOTH")
        if bouncetime is not None and bouncetime <= 0:
            raise ValueError("Bouncetime must be greater than 0")
        with self._lock:
            if channel in self._detect:
                raise RuntimeError("Conflicting edge detection already enabled for this GPIO channel")
            self._detect[channel] = edge
            self._detected[channel] = False
            self._bounce_s[channel] = (bouncetime or 0) / 1000.0
            self._last_edge_s.pop(channel, None)
            self._callbacks[channel] = [callback] if callback is not None else []

    def add_event_callback(self, channel: int, callback: Callable[[int], None]) -> None:
        if channel not in self._detect:
            raise RuntimeError("Add event detection using add_event_detect first before adding a callback")
        self._callbacks[channel].append(callback)

    def remove_event_detect(self, channel: int) -> None:
        with self._lock:
            self._detect.pop(channel, None)
            self._callbacks.pop(channel, None)
            self._detected.pop(channel, None)
            self._bounce_s.pop(channel, None)

    def event_detected(self, channel: int) -> bool:
        with self._lock:
            hit = self._detected.get(channel, False)
            if channel in self._detected:
                self._detected[channel] = False
            return hit

    def cleanup(self, channel: int | Sequence[int] | None = None) -> None:
        with self._lock:
            chans = list(self._directions) if channel is None else _channels(channel)
            for ch in chans:
                self.remove_event_detect(ch)
                self._directions.pop(ch, None)
            if channel is None:
                self._mode = None
            stop = not self._detect and self._thread is not None
            if stop:
                self._thread = None
        if stop:
            self._queue.put(None)  # the callback thread ends once nothing is detected any more

    def wait_for_edge(
        self, channel: int, edge: int, bouncetime: int | None = None, timeout: int | None = None
    ) -> int | None:
        """Block until the edge (``timeout`` in ms, as RPi.GPIO); returns the channel or None."""
        if self.clock is None:
            raise RuntimeError("FakeGPIO(clock=...) is needed for wait_for_edge")
        if channel in self._detect:
            raise RuntimeError("Conflicting edge detection events already exist for this GPIO channel")
        hit = threading.Event()

        def watcher(pin: int, level: bool) -> None:
            if pin == channel and (edge == self.BOTH or edge == (self.RISING if level else self.FALLING)):
                hit.set()

        self._edge_watchers.append(watcher)
        try:
            got = wait_event(self.clock, hit, None if timeout is None else timeout / 1000.0)
        finally:
            self._edge_watchers.remove(watcher)
        return channel if got else None

    def gpio_function(self, channel: int) -> int:
        return self._directions.get(channel, self.IN)

    # emulator side
    def attach_output_listener(self, pin: int, listener: Callable[[bool], None]) -> None:
        self._listeners.setdefault(pin, []).append(listener)

    def drive_input(self, pin: int, level: bool) -> None:
        """An external device (the chip's DIO) sets the level of ``pin``; fires edge detection."""
        with self._lock:
            old = self._levels.get(pin, False)
            self._levels[pin] = level
            if old == level:
                return
            if level and self.drop_edges.get(pin, 0) > 0:
                self.drop_edges[pin] -= 1
                self.edges_dropped += 1
                return
            edge = self._detect.get(pin)
            if edge is not None and (edge == self.BOTH or edge == (self.RISING if level else self.FALLING)):
                now = self.clock.monotonic() if self.clock is not None else time.monotonic()
                last = self._last_edge_s.get(pin)
                if last is not None and now - last < self._bounce_s.get(pin, 0.0):
                    self.edges_debounced += 1  # within bouncetime of the last accepted edge: dropped
                else:
                    self._last_edge_s[pin] = now
                    self._detected[pin] = True
                    callbacks = self._callbacks.get(pin)
                    if callbacks:
                        self._dispatch(pin, list(callbacks))
        for watcher in list(self._edge_watchers):
            watcher(pin, level)

    def _dispatch(self, pin: int, callbacks: list[Callable[[int], None]]) -> None:
        """Queue the callbacks for the callback thread (started on first use, as RPi.GPIO's)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run_callbacks, name="gpio-callbacks", daemon=True)
            self._thread.start()
        if self.clock is not None:
            self.clock.hold()
        with self._idle:
            self._pending += 1
        self._queue.put((pin, callbacks, self.clock))

    def _run_callbacks(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            pin, callbacks, clock = item
            try:
                for cb in callbacks:
                    if pin not in self._detect:
                        break  # detection removed (cleanup) before the callback ran
                    try:
                        cb(pin)
                    except Exception:  # RPi.GPIO prints the traceback and keeps its thread
                        self.callback_errors += 1
                        log.exception("GPIO callback for channel %d failed", pin)
            finally:
                if clock is not None:
                    clock.release()
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def callbacks_idle(self, timeout_s: float = 5.0) -> bool:
        """Test side: wait (wall time) until every queued edge callback has returned. A driver may
        act on state its callback sets before the callback finishes (LoRaRF's ``wait()`` returns
        once ``_interruptRx*`` stores the IRQ flags, before it reads RegRxNbBytes): a test that
        checks such a driver's result must not race its callback thread."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout_s)

    def level(self, pin: int) -> bool:
        return self._levels.get(pin, False)

    def add_edge_watcher(self, watcher: Callable[[int, bool], None]) -> None:
        """Observe every level change of driven inputs (the gpiod fake's edge queue)."""
        self._edge_watchers.append(watcher)

    def _set_output(self, pin: int, level: bool) -> None:
        with self._lock:
            old = self._levels.get(pin)
            self._levels[pin] = level
        if old != level:
            for listener in self._listeners.get(pin, []):
                listener(level)

    def _need_mode(self) -> None:
        if self._mode is None:
            raise RuntimeError(
                "Please set pin numbering mode using GPIO.setmode(GPIO.BOARD) or GPIO.setmode(GPIO.BCM)"
            )


def _channels(channel: int | Sequence[int]) -> list[int]:
    return [channel] if isinstance(channel, int) else list(channel)


def _shift_late(out: list[int]) -> list[int]:
    """MISO sampled one bit late (wrong clock phase): each byte takes the next byte's first bit."""
    return [((b << 1) & 0xFF) | ((out[i + 1] >> 7) if i + 1 < len(out) else 0) for i, b in enumerate(out)]


def _shift_lag(out: list[int]) -> list[int]:
    """MISO too slow for the clock: every bit arrives one clock late (a byte keeps the last bit of
    the byte before it)."""
    return [(b >> 1) | (((out[i - 1] & 1) << 7) if i else 0) for i, b in enumerate(out)]


class FakeSpiDev:
    """One ``spidev.SpiDev()`` handle on a ``SpiBoard``: independent of other handles, as the real one.

    ``open(bus, device)`` selects the chip wired at that bus and chip select, or raises the
    FileNotFoundError of a missing ``/dev/spidevB.D``. ``mode`` and ``max_speed_hz`` are this
    handle's and reach the chip with every frame (default speed: the Pi's device-tree maximum,
    far above the SX1276's 10 MHz, so a driver must set it).
    """

    def __init__(self, board: SpiBoard) -> None:
        self._board = board
        self._chip: EmulatedSX1276 | None = None
        self.bus: int | None = None
        self.device: int | None = None
        self.mode = 0
        self.bits_per_word = 8
        self.max_speed_hz = SPIDEV_DEFAULT_HZ
        self.lsbfirst = False
        self.cshigh = False
        self.threewire = False
        self.loop = False
        self.no_cs = False

    def open(self, bus: int, device: int) -> None:
        chip = self._board.chips.get((bus, device))
        if chip is None:
            raise FileNotFoundError(2, "No such file or directory")
        self._chip, self.bus, self.device = chip, bus, device
        chip.bus, chip.device = bus, device

    def close(self) -> None:
        self._chip = None

    def _frame(self, data: Sequence[int], speed_hz: int = 0) -> list[int]:
        if self._chip is None:
            raise OSError(9, "Bad file descriptor")
        return self._chip.spi_frame(list(data), self.mode, speed_hz or self.max_speed_hz)

    def xfer(
        self, data: Sequence[int], speed_hz: int = 0, delay_usecs: int = 0, bits_per_word: int = 0
    ) -> list[int]:
        return self._frame(data, speed_hz)

    def xfer2(
        self, data: Sequence[int], speed_hz: int = 0, delay_usecs: int = 0, bits_per_word: int = 0
    ) -> list[int]:
        return self._frame(data, speed_hz)

    def xfer3(
        self, data: Sequence[int], speed_hz: int = 0, delay_usecs: int = 0, bits_per_word: int = 0
    ) -> list[int]:
        return self._frame(data, speed_hz)

    def readbytes(self, n: int) -> list[int]:
        return self._frame([0] * n)

    def writebytes(self, data: Sequence[int]) -> None:
        self._frame(data)

    def writebytes2(self, data: Sequence[int]) -> None:
        self._frame(data)

    def fileno(self) -> int:
        return -1 if self._chip is None else 3

    def __enter__(self) -> FakeSpiDev:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SpiBoard:
    """The SPI buses of one emulated board: which chip sits at which (bus, chip select).

    ``SpiDev`` is the ``spidev.SpiDev`` class of that board (a board may carry two radios).
    """

    def __init__(self, chips: Mapping[tuple[int, int], EmulatedSX1276] | EmulatedSX1276) -> None:
        self.chips = dict(chips) if isinstance(chips, Mapping) else {(0, 0): chips}

    def SpiDev(self, *args: int) -> FakeSpiDev:
        dev = FakeSpiDev(self)
        if len(args) == 2:
            dev.open(*args)
        return dev


@contextlib.contextmanager
def installed_as_modules(
    chips: EmulatedSX1276 | Mapping[tuple[int, int], EmulatedSX1276],
    gpio: FakeGPIO,
    gpiod: FakeGpiod | None = None,
) -> Iterator[None]:
    """Within the block, ``import spidev`` / ``import RPi.GPIO`` (/ ``import gpiod``) give the emulator.

    ``chips`` maps (bus, chip select) to the chip wired there; a single chip sits at (0, 0), CE0.
    So a third-party driver that imports those libraries itself runs unchanged against the chips.
    """
    spidev = types.ModuleType("spidev")
    spidev.SpiDev = SpiBoard(chips).SpiDev  # type: ignore[attr-defined]
    rpi = types.ModuleType("RPi")
    rpi.GPIO = gpio  # type: ignore[attr-defined]
    fakes: dict[str, Any] = {"spidev": spidev, "RPi": rpi, "RPi.GPIO": gpio}
    if gpiod is not None:
        fakes |= {"gpiod": gpiod, "gpiod.line": gpiod.line}
    saved = {name: sys.modules.get(name) for name in fakes}
    sys.modules.update(fakes)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class _Ns:
    """A namespace of constants (stands in for gpiod.line.* enums)."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


class FakeGpiod:
    """The libgpiod v2 surface our backend uses, on top of a ``FakeGPIO`` pin bank.

    ``chips`` maps device paths to labels; every chip exposes the same pins (offset = BCM number).
    Edge waits run on ``clock`` so they work in virtual time.
    """

    class _Enum:
        def __init__(self, name: str) -> None:
            self.name = name

        def __repr__(self) -> str:
            return self.name

    def __init__(self, pins: FakeGPIO, clock: VirtualClock, chips: dict[str, str] | None = None) -> None:
        self.pins = pins
        self.clock = clock
        self.chips = chips or {"/dev/gpiochip0": "pinctrl-rp1"}
        e = FakeGpiod._Enum
        self.line = _Ns(
            Direction=_Ns(AS_IS=e("AS_IS"), INPUT=e("INPUT"), OUTPUT=e("OUTPUT")),
            Edge=_Ns(NONE=e("NONE"), RISING=e("RISING"), FALLING=e("FALLING"), BOTH=e("BOTH")),
            Value=_Ns(INACTIVE=e("INACTIVE"), ACTIVE=e("ACTIVE")),
        )
        self.EdgeEvent = _Ns(Type=_Ns(RISING_EDGE=e("RISING_EDGE"), FALLING_EDGE=e("FALLING_EDGE")))
        self._claimed: set[int] = set()
        self.requests: list[_FakeLineRequest] = []

    def is_gpiochip_device(self, path: str) -> bool:
        return path in self.chips

    def Chip(self, path: str) -> _FakeChip:
        if path not in self.chips:
            raise FileNotFoundError(path)
        return _FakeChip(path, self.chips[path])

    def LineSettings(
        self, direction: Any = None, edge_detection: Any = None, output_value: Any = None, **_: Any
    ) -> dict[str, Any]:
        return {"direction": direction, "edge": edge_detection, "output_value": output_value}

    def request_lines(
        self, path: str, consumer: str | None = None, config: dict[Any, Any] | None = None
    ) -> _FakeLineRequest:
        if path not in self.chips:
            raise FileNotFoundError(path)
        offsets = [o for key in (config or {}) for o in ((key,) if isinstance(key, int) else key)]
        busy = self._claimed.intersection(offsets)
        if busy:
            raise OSError(16, f"Device or resource busy: lines {sorted(busy)}")
        req = _FakeLineRequest(self, offsets, config or {})
        self._claimed.update(offsets)
        self.requests.append(req)
        return req

    def _release(self, req: _FakeLineRequest) -> None:
        self._claimed.difference_update(req.offsets)


class _FakeChip:
    def __init__(self, path: str, label: str) -> None:
        self.path = path
        self._info = _Ns(name=path.rsplit("/", 1)[-1], label=label, num_lines=54)

    def get_info(self) -> Any:
        return self._info

    def close(self) -> None:
        pass

    def __enter__(self) -> _FakeChip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _FakeLineRequest:
    def __init__(self, lib: FakeGpiod, offsets: list[int], config: dict[Any, Any]) -> None:
        self._lib = lib
        self.offsets = offsets
        self._events: list[Any] = []
        self._event = threading.Event()
        self._seq = 0
        self.released = False
        pins = lib.pins
        if pins.getmode() is None:
            pins.setmode(pins.BCM)
        self._edges: dict[int, Any] = {}
        for key, settings in config.items():
            for off in (key,) if isinstance(key, int) else key:
                if settings["direction"] is lib.line.Direction.OUTPUT:
                    pins.setup(off, pins.OUT, initial=int(settings["output_value"] is lib.line.Value.ACTIVE))
                else:
                    pins.setup(off, pins.IN)
                    if settings["edge"] not in (None, lib.line.Edge.NONE):
                        self._edges[off] = settings["edge"]
        if self._edges:
            pins.add_edge_watcher(self._on_level)

    def _on_level(self, pin: int, level: bool) -> None:
        edge = self._edges.get(pin)
        if edge is None or self.released:
            return
        line = self._lib.line
        if edge is line.Edge.BOTH or edge is (line.Edge.RISING if level else line.Edge.FALLING):
            self._seq += 1
            kind = self._lib.EdgeEvent.Type.RISING_EDGE if level else self._lib.EdgeEvent.Type.FALLING_EDGE
            stamp = round(self._lib.clock.monotonic() * 1e9)
            self._events.append(
                _Ns(event_type=kind, line_offset=pin, line_seqno=self._seq, timestamp_ns=stamp)
            )
            self._event.set()

    def set_value(self, offset: int, value: Any) -> None:
        self._lib.pins.output(offset, int(value is self._lib.line.Value.ACTIVE))

    def get_value(self, offset: int) -> Any:
        line = self._lib.line
        return line.Value.ACTIVE if self._lib.pins.level(offset) else line.Value.INACTIVE

    def wait_edge_events(self, timeout: float | None = None) -> bool:
        return wait_event(self._lib.clock, self._event, timeout)

    def read_edge_events(self, max_events: int | None = None) -> list[Any]:
        events, self._events = self._events, []
        self._event.clear()
        return events

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._lib._release(self)
            for off in self.offsets:
                self._lib.pins.cleanup(off)

    def __enter__(self) -> _FakeLineRequest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
