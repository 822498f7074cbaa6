"""SX1276 LoRa driver over an SPI port and GPIO lines (gateway.hw).

Tiers, bottom up: four SPI primitives (the only way onto the bus); register fields as descriptors;
unit-bearing settings (``LoRaConfig``); receive / transmit / CAD / RSSI on top.

Receiving follows the datasheet and avoids the usual driver mistakes: RXCONTINUOUS woken by DIO0
(or polling when DIO0 is not wired); each packet read in three SPI transactions (a status burst
0x10..0x2A, a burst write from 0x0D that sets FifoAddrPtr and clears the IRQ flags, a FIFO burst),
with everything that depends only on the configuration worked out once when it is applied;
the CRC state from CrcOnPayload (absent / failed / ok, never dropped here); signed SNR; RSSI with the
HF/LF offset and the SNR < 0 correction; flags cleared before the radio can raise the next RxDone.
A health check on idle notices a chip that reset, lost its mode, hung after a header, or whose DIO0
edge was missed (DIO0 stays high until cleared), and recovers, counting each recovery.

One thread owns a driver instance: call ``receive``/``transmit``/``cad`` from that thread only.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from gateway.errors import ConfigError, HardwareError
from gateway.hw.clock import SYSTEM_CLOCK, Clock
from gateway.hw.gpio import Gpio, open_gpio
from gateway.hw.spi import SpidevPort, SpiPort
from gateway.radio import regs
from gateway.radio.airtime import exact_bandwidth_hz, ldro_required, time_on_air_s
from gateway.radio.packet import CrcState, RxPacket
from gateway.radio.regs import Irq, Mode, Reg

log = logging.getLogger(__name__)

STATUS_FIRST = Reg.FIFO_RX_CURRENT_ADDR  # status burst 0x10..0x2A: IRQs, counters, SNR/RSSI, FEI
STATUS_LAST = Reg.FEI_LSB
# Offsets of registers in a raw status frame (MISO byte 0 is the address phase).
_S_CURRENT = Reg.FIFO_RX_CURRENT_ADDR - STATUS_FIRST + 1
_S_FLAGS = Reg.IRQ_FLAGS - STATUS_FIRST + 1
_S_NB_BYTES = Reg.RX_NB_BYTES - STATUS_FIRST + 1
_S_HEADER_CNT = Reg.RX_HEADER_CNT_MSB - STATUS_FIRST + 1
_S_PACKET_CNT = Reg.RX_PACKET_CNT_MSB - STATUS_FIRST + 1
_S_MODEM_STAT = Reg.MODEM_STAT - STATUS_FIRST + 1
_S_SNR = Reg.PKT_SNR_VALUE - STATUS_FIRST + 1
_S_RSSI = Reg.PKT_RSSI_VALUE - STATUS_FIRST + 1
_S_HOP = Reg.HOP_CHANNEL - STATUS_FIRST + 1
_S_FEI = Reg.FEI_MSB - STATUS_FIRST + 1
_STATUS_FRAME = (int(Reg.FIFO_RX_CURRENT_ADDR), *([0] * (STATUS_LAST - STATUS_FIRST + 1)))
# The FIFO/IRQ burst write from 0x0D: FifoAddrPtr, TxBase, RxBase, (0x10 read-only), mask, IrqFlags,
# then 0x13..0x15 read-only (their MISO bytes are RxNbBytes and the valid-header counter).
_W_CURRENT = Reg.FIFO_RX_CURRENT_ADDR - Reg.FIFO_ADDR_PTR + 1
FIFO_TX_BASE = 0x00
FIFO_RX_BASE = 0x00
IRQ_MASK = 0x00  # every IRQ visible
_RX_CR_SHIFT, _RX_CR_MAX = regs.RX_CODING_RATE.shift, regs.RX_CODING_RATE.max
_CRC_ON_PAYLOAD_BIT = regs.CRC_ON_PAYLOAD.mask
# plain ints for the hot path (enum attribute lookups and IntEnum operators cost there)
_RX_DONE, _CRC_ERROR = int(Irq.RX_DONE), int(Irq.PAYLOAD_CRC_ERROR)
_W_FIFO_ADDR_PTR = regs.WRITE | int(Reg.FIFO_ADDR_PTR)
_FIFO_READ = tuple(tuple([int(Reg.FIFO)] + [0] * n) for n in range(256))  # FIFO burst frames by length
_CRC_OK, _CRC_FAILED, _CRC_ABSENT = CrcState.OK, CrcState.FAILED, CrcState.ABSENT
RESET_PULSE_S = 0.001  # datasheet 7.2.2: > 100 µs low
RESET_WAIT_S = 0.010  # then 5-10 ms before the chip answers
IMAGE_CAL_TIMEOUT_S = 0.050
VERSION_RETRIES = 3


class Ldro(Enum):
    AUTO = "auto"
    ON = "on"
    OFF = "off"


@dataclass(frozen=True, slots=True)
class Pins:
    """BCM pin numbers; None where the line is not wired. Defaults: Dragino LoRa HAT."""

    reset: int | None = 17
    dio0: int | None = 4
    dio1: int | None = None


@dataclass(frozen=True, slots=True)
class LoRaConfig:
    """Every LoRa setting the driver applies; validated on construction (ConfigError)."""

    frequency_hz: int = 868_100_000
    sf: int = 7
    bw_hz: int = 125_000
    cr: str = "4/5"
    implicit_header: bool = False
    payload_length: int = 255  # fixed length in implicit header mode
    preamble: int = 8
    sync_word: int = 0x12
    crc: bool = True
    ldro: Ldro = Ldro.AUTO
    agc: bool = True
    lna_gain: int = 1  # 1 = maximum … 6 = minimum; used when AGC is off
    lna_boost: bool = True  # HF port only
    tx_power_dbm: int = 14
    pa_boost: bool = True  # PA_BOOST pin (RFM95W, Dragino); False: RFO
    ocp_ma: int = 100
    invert_iq_rx: bool = False
    invert_iq_tx: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.ldro, str):
            object.__setattr__(self, "ldro", _enum(Ldro, self.ldro, "ldro"))
        checks = [
            (137_000_000 <= self.frequency_hz <= 1_020_000_000, "frequency_hz outside 137-1020 MHz"),
            (6 <= self.sf <= 12, f"sf {self.sf} outside 6..12"),
            (self.sf != 6 or self.implicit_header, "SF6 requires implicit_header (datasheet 4.1.1.2)"),
            (6 <= self.preamble <= 65535, f"preamble {self.preamble} outside 6..65535"),
            (0 <= self.sync_word <= 0xFF, f"sync_word 0x{self.sync_word:X} is not a byte"),
            (1 <= self.payload_length <= 255, f"payload_length {self.payload_length} outside 1..255"),
            (1 <= self.lna_gain <= 6, f"lna_gain {self.lna_gain} outside 1..6"),
            (45 <= self.ocp_ma <= 240, f"ocp_ma {self.ocp_ma} outside 45..240"),
        ]
        if self.pa_boost:
            checks.append(
                (2 <= self.tx_power_dbm <= 17 or self.tx_power_dbm == 20, "PA_BOOST power is 2..17 or 20 dBm")
            )
        else:
            checks.append((0 <= self.tx_power_dbm <= 15, "RFO power is 0..15 dBm"))
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"radio: {message}", "radio_config")
        try:
            regs.bw_code(self.bw_hz)
            regs.cr_code(self.cr)
        except ValueError as exc:
            raise ConfigError(f"radio: {exc}", "radio_config") from exc

    @property
    def ldro_on(self) -> bool:
        if self.ldro is Ldro.AUTO:
            return ldro_required(self.sf, self.bw_hz)
        return self.ldro is Ldro.ON

    @property
    def high_frequency(self) -> bool:
        return self.frequency_hz >= regs.HF_THRESHOLD_HZ

    def time_on_air_s(self, payload_len: int) -> float:
        return time_on_air_s(
            payload_len,
            self.sf,
            self.bw_hz,
            self.cr,
            self.preamble,
            self.implicit_header,
            self.crc,
            self.ldro_on,
        )


@dataclass(slots=True)
class RadioStats:
    packets: int = 0
    crc_ok: int = 0
    crc_failed: int = 0
    crc_absent: int = 0
    missed: int = 0  # headers the chip counted whose packet the driver never saw
    spurious_irqs: int = 0
    tx_packets: int = 0
    recoveries: int = 0
    recovery_reasons: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> dict[str, object]:
        return {
            "packets": self.packets,
            "crc_ok": self.crc_ok,
            "crc_failed": self.crc_failed,
            "crc_absent": self.crc_absent,
            "missed": self.missed,
            "spurious_irqs": self.spurious_irqs,
            "tx_packets": self.tx_packets,
            "recoveries": self.recoveries,
            "recovery_reasons": dict(self.recovery_reasons),
        }


class _RegField:
    """A register bit field as an attribute of the driver: read-modify-write, masked to its width."""

    def __init__(self, fld: regs.Field) -> None:
        self.field = fld

    def __get__(self, obj: SX1276 | None, owner: type) -> int:
        if obj is None:
            return self  # type: ignore[return-value]
        return self.field.get(obj._read(self.field.reg))

    def __set__(self, obj: SX1276, value: int) -> None:
        current = obj._read(self.field.reg)
        new = self.field.put(current, int(value))
        if new != current:
            obj._write(self.field.reg, new)


class SX1276:
    """The driver. ``begin()`` resets, checks and configures the chip and starts receiving."""

    long_range_mode = _RegField(regs.LONG_RANGE_MODE)
    pa_select = _RegField(regs.PA_SELECT)
    max_power = _RegField(regs.MAX_POWER)
    output_power = _RegField(regs.OUTPUT_POWER)
    ocp_on = _RegField(regs.OCP_ON)
    ocp_trim = _RegField(regs.OCP_TRIM)
    lna_gain = _RegField(regs.LNA_GAIN)
    lna_boost_hf = _RegField(regs.LNA_BOOST_HF)
    bandwidth = _RegField(regs.BW)
    coding_rate = _RegField(regs.CODING_RATE)
    implicit_header_mode_on = _RegField(regs.IMPLICIT_HEADER_MODE_ON)
    spreading_factor = _RegField(regs.SPREADING_FACTOR)
    rx_payload_crc_on = _RegField(regs.RX_PAYLOAD_CRC_ON)
    low_data_rate_optimize = _RegField(regs.LOW_DATA_RATE_OPTIMIZE)
    agc_auto_on = _RegField(regs.AGC_AUTO_ON)
    automatic_if_on = _RegField(regs.AUTOMATIC_IF_ON)
    detection_optimize = _RegField(regs.DETECTION_OPTIMIZE)
    invert_iq_rx = _RegField(regs.INVERT_IQ_RX)
    invert_iq_tx_off = _RegField(regs.INVERT_IQ_TX_OFF)
    dio0_mapping = _RegField(regs.DIO0_MAPPING)
    dio1_mapping = _RegField(regs.DIO1_MAPPING)

    def __init__(
        self,
        spi: SpiPort,
        gpio: Gpio | None = None,
        pins: Pins = Pins(),
        config: LoRaConfig = LoRaConfig(),
        clock: Clock = SYSTEM_CLOCK,
        name: str = "sx1276",
        on_packet: Callable[[RxPacket], None] | None = None,
        poll_interval_s: float = 0.002,
        health_interval_s: float = 2.0,
        utc_now: Callable[[], datetime] | None = None,
    ) -> None:
        self.spi = spi
        self.gpio = gpio
        self.pins = pins
        self.config = config
        self.clock = clock
        self.name = name
        self.on_packet = on_packet
        self.poll_interval_s = poll_interval_s
        self.health_interval_s = health_interval_s
        self.stats = RadioStats()
        self._lock = threading.RLock()
        self._ready: deque[RxPacket] = deque()
        self._receiving = False
        self._rx_enabled = True
        self._expected_op_mode = 0
        self._last_header_cnt = 0
        self._last_activity = 0.0
        self._status: list[int] | None = None
        self._edge_time: float | None = None
        self._gpio_ready = False
        self.last_tx_decision_to_mode_s: float | None = None  # transmit() call to the TX mode write
        self._prepare(config)
        # UTC of a packet: the wall clock now, or (a virtual clock) the UTC of its RxDone time
        self._utc_at: Callable[[float], datetime]
        if utc_now is not None:
            self._utc_at = lambda when: utc_now()
        elif clock is not SYSTEM_CLOCK:
            epoch = datetime.now(UTC).timestamp() - clock.monotonic()  # UTC of virtual time 0
            self._utc_at = lambda when: datetime.fromtimestamp(epoch + when, UTC)
        else:
            self._utc_at = lambda when: datetime.now(UTC)

    # ------------------------------------------------------------------ SPI primitives
    def _read(self, reg: int) -> int:
        return self.spi.transfer([reg & regs.ADDRESS_MASK, 0])[1]

    def _write(self, reg: int, value: int) -> int:
        """Write one register; returns the previous value (MISO during the data byte)."""
        return self.spi.transfer([regs.WRITE | reg, value & 0xFF])[1]

    def _prepare(self, cfg: LoRaConfig) -> None:
        """Work out once, per configuration, what every packet would otherwise recompute."""
        self._rssi_offset = float(regs.rssi_offset_db(cfg.frequency_hz))
        self._fei_hz_per_step = regs.fei_to_hz(1, exact_bandwidth_hz(cfg.bw_hz))
        self._crc_from_header = not cfg.implicit_header
        self._crc_configured = cfg.crc
        self._freq_hz, self._sf, self._bw_hz, self._cr = cfg.frequency_hz, cfg.sf, cfg.bw_hz, cfg.cr
        self._op_stdby = 0x80 | self._lf_bit_for(cfg) | Mode.STDBY
        self._op_tx = 0x80 | self._lf_bit_for(cfg) | Mode.TX
        self._op_rx = 0x80 | self._lf_bit_for(cfg) | Mode.RXCONTINUOUS
        self._shifted_rx = self._rx_frequency_hz(cfg) != cfg.frequency_hz
        # RegInvertIQ2 must agree with the direction in use (0x19 inverted, 0x1D normal: Semtech's reference
        # driver writes it with RegInvertIQ in both SetRx and Send). Configured for receive; transmit()
        # switches it only when the TX polarity differs, and entering RX (or CAD) puts the RX value back.
        self._iq2_rx = regs.INVERT_IQ2_INVERTED if cfg.invert_iq_rx else regs.INVERT_IQ2_NORMAL
        self._iq2_tx = regs.INVERT_IQ2_INVERTED if cfg.invert_iq_tx else regs.INVERT_IQ2_NORMAL
        self._iq2_on_tx = False  # RegInvertIQ2 holds the TX value (between transmit and _restore_rx)

    def _burst_read(self, reg: int, count: int) -> list[int]:
        return self.spi.transfer([reg & regs.ADDRESS_MASK] + [0] * count)[1:]

    def _burst_write(self, reg: int, values: list[int]) -> list[int]:
        return self.spi.transfer([regs.WRITE | reg, *values])[1:]

    # ------------------------------------------------------------------ start-up
    def begin(self, receive: bool = True) -> None:
        """Open the bus, reset and identify the chip, configure it, start receiving (or stand by)."""
        self._rx_enabled = receive
        self.spi.open()
        self._setup_gpio()
        self._init_chip()
        log.info(
            "%s: SX1276 ready on %.3f MHz SF%d BW%g kHz CR%s sync 0x%02X (%s)",
            self.name,
            self.config.frequency_hz / 1e6,
            self.config.sf,
            self.config.bw_hz / 1e3,
            self.config.cr,
            self.config.sync_word,
            "DIO0 interrupts" if self._use_dio0 else "polling",
        )

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(HardwareError):
                self._set_mode(Mode.SLEEP)
            self._receiving = False
            if self.gpio is not None:
                self.gpio.close()
            self.spi.close()

    @property
    def _use_dio0(self) -> bool:
        return self.gpio is not None and self.pins.dio0 is not None

    def _setup_gpio(self) -> None:
        if self.gpio is None or self._gpio_ready:
            return
        if self.pins.reset is not None:
            self.gpio.setup_output(self.pins.reset, True)
        if self.pins.dio0 is not None:
            self.gpio.setup_rising(self.pins.dio0)
        if self.pins.dio1 is not None:
            self.gpio.setup_rising(self.pins.dio1)
        self._gpio_ready = True

    def reset(self) -> None:
        """Pulse RESET low for 1 ms and wait 10 ms (datasheet 7.2.2); a no-op without a RESET line."""
        if self.gpio is None or self.pins.reset is None:
            return
        self.gpio.write(self.pins.reset, False)
        self.clock.sleep(RESET_PULSE_S)
        self.gpio.write(self.pins.reset, True)
        self.clock.sleep(RESET_WAIT_S)

    def version(self) -> int:
        return self._read(Reg.VERSION)

    def _init_chip(self) -> None:
        with self._lock:
            version = 0
            for _ in range(VERSION_RETRIES):
                self.reset()
                version = self.version()
                if version == regs.CHIP_VERSION:
                    break
            if version in (0x00, 0xFF):
                raise HardwareError(
                    f"{self.name}: no SX1276 answers on SPI (version register reads 0x{version:02X}): is "
                    "SPI enabled (dtparam=spi=on), is the CS line wired to the right pin, and on a Dragino "
                    "HAT is the CS-on-GPIO25 overlay loaded (dtoverlay=spi0-cs,cs0_pin=25)?",
                    "no_chip",
                )
            if version != regs.CHIP_VERSION:
                raise HardwareError(
                    f"{self.name}: chip version 0x{version:02X} is not an SX1276/77/78/79 (0x12)",
                    "wrong_chip",
                )
            self._image_calibration()
            self._write(Reg.OP_MODE, Mode.SLEEP | self._lf_bit())  # FSK sleep first
            self._write(Reg.OP_MODE, 0x80 | Mode.SLEEP | self._lf_bit())  # LongRangeMode only in SLEEP
            self._set_mode(Mode.STDBY)
            self._last_header_cnt = 0
            self._apply_config(self.config)
            if self._rx_enabled:
                self._start_rx()

    def _lf_bit(self) -> int:
        return self._lf_bit_for(self.config)

    @staticmethod
    def _lf_bit_for(cfg: LoRaConfig) -> int:
        return 0 if cfg.high_frequency else 0x08

    def _image_calibration(self) -> None:
        """Image and RSSI calibration at the operating frequency, in FSK standby (datasheet 2.1.3.8)."""
        self._write(Reg.OP_MODE, Mode.STDBY | self._lf_bit())
        self._write_frf(self.config.frequency_hz)
        value = self._read(regs.IMAGE_CAL)
        self._write(regs.IMAGE_CAL, value | regs.IMAGE_CAL_START)
        deadline = self.clock.monotonic() + IMAGE_CAL_TIMEOUT_S
        while self._read(regs.IMAGE_CAL) & regs.IMAGE_CAL_RUNNING:
            if self.clock.monotonic() > deadline:
                raise HardwareError(f"{self.name}: image calibration did not finish in 50 ms", "image_cal")
            self.clock.sleep(0.001)

    def _set_mode(self, mode: int) -> None:
        value = 0x80 | self._lf_bit() | mode
        self._write(Reg.OP_MODE, value)
        if mode in (Mode.SLEEP, Mode.STDBY):
            readback = self._read(Reg.OP_MODE)
            if readback != value:
                raise HardwareError(
                    f"{self.name}: mode write ignored (wrote 0x{value:02X}, read 0x{readback:02X}); "
                    "check the SPI wiring and that nothing else drives the chip",
                    "mode_write",
                )
        self._expected_op_mode = value

    # ------------------------------------------------------------------ configuration
    def configure(self, config: LoRaConfig) -> None:
        """Apply ``config`` (standby, write, read back, resume receiving if we were)."""
        with self._lock:
            was_receiving = self._receiving
            self.config = config
            self._prepare(config)
            self._set_mode(Mode.STDBY)
            self._receiving = False
            self._apply_config(config)
            if was_receiving:
                self._start_rx()

    def _apply_config(self, cfg: LoRaConfig) -> None:
        code = regs.bw_code(cfg.bw_hz)
        self._write_frf(self._rx_frequency_hz(cfg))
        # transmitter: PA, OCP (datasheet 5.4)
        if cfg.pa_boost:
            self.pa_select = 1
            self.max_power = 7
            self.output_power = (17 if cfg.tx_power_dbm == 20 else cfg.tx_power_dbm) - 2
            self._write(Reg.PA_DAC, 0x87 if cfg.tx_power_dbm == 20 else 0x84)
        else:
            self.pa_select = 0
            self.max_power = 7  # Pmax = 10.8 + 0.6·7 = 15 dBm, so Pout = OutputPower
            self.output_power = cfg.tx_power_dbm
            self._write(Reg.PA_DAC, 0x84)
        self._write(Reg.OCP, 0x20 | _ocp_trim(cfg.ocp_ma))
        # receiver front end
        self.lna_gain = cfg.lna_gain
        self.lna_boost_hf = 3 if (cfg.lna_boost and cfg.high_frequency) else 0
        # modem
        self._write(
            Reg.MODEM_CONFIG1,
            (code << 4) | (regs.cr_code(cfg.cr) << 1) | int(cfg.implicit_header),
        )
        self.spreading_factor = cfg.sf
        self.rx_payload_crc_on = int(cfg.crc)
        self.low_data_rate_optimize = int(cfg.ldro_on)
        self.agc_auto_on = int(cfg.agc)
        self._burst_write(Reg.PREAMBLE_MSB, [cfg.preamble >> 8, cfg.preamble & 0xFF])
        self._write(Reg.PAYLOAD_LENGTH, cfg.payload_length)
        self._write(Reg.MAX_PAYLOAD_LENGTH, 0xFF)
        self._write(Reg.SYNC_WORD, cfg.sync_word)
        # SF6 rules (datasheet 4.1.1.2)
        sf6 = cfg.sf == 6
        self.detection_optimize = regs.DETECT_OPTIMIZE_SF6 if sf6 else regs.DETECT_OPTIMIZE_SF7_12
        self._write(
            Reg.DETECTION_THRESHOLD, regs.DETECTION_THRESHOLD_SF6 if sf6 else regs.DETECTION_THRESHOLD_SF7_12
        )
        # IQ polarity (Semtech's reference driver: RegInvertIQ b6 RX, b0 TX-normal; RegInvertIQ2)
        self.invert_iq_rx = int(cfg.invert_iq_rx)
        self.invert_iq_tx_off = int(not cfg.invert_iq_tx)
        self._write(Reg.INVERT_IQ2, self._iq2_rx)  # receive's value (see _prepare)
        self._iq2_on_tx = False
        self._apply_errata(cfg, code)
        # FIFO halves, IRQs, DIO0 = RxDone, DIO1 = RxTimeout
        self._burst_write(Reg.FIFO_TX_BASE_ADDR, [FIFO_TX_BASE, FIFO_RX_BASE])
        self._write(Reg.IRQ_FLAGS_MASK, IRQ_MASK)
        self._write(Reg.DIO_MAPPING1, 0x00)
        readback = self._burst_read(Reg.MODEM_CONFIG1, 2)
        expected1 = (code << 4) | (regs.cr_code(cfg.cr) << 1) | int(cfg.implicit_header)
        if readback[0] != expected1 or regs.SPREADING_FACTOR.get(readback[1]) != cfg.sf:
            raise HardwareError(
                f"{self.name}: configuration did not stick (ModemConfig1 0x{readback[0]:02X}, expected "
                f"0x{expected1:02X}); check the SPI wiring",
                "config_write",
            )

    def _apply_errata(self, cfg: LoRaConfig, code: int) -> None:
        """SX1276 errata note 2.1 (500 kHz sensitivity) and 2.3 (spurious reception below 500 kHz)."""
        if code == 9:
            if 862_000_000 <= cfg.frequency_hz <= 1_020_000_000:
                self._write(Reg.HIGH_BW_OPTIMIZE1, 0x02)
                self._write(Reg.HIGH_BW_OPTIMIZE2, 0x64)
            elif 410_000_000 <= cfg.frequency_hz <= 525_000_000:
                self._write(Reg.HIGH_BW_OPTIMIZE1, 0x02)
                self._write(Reg.HIGH_BW_OPTIMIZE2, 0x7F)
            else:
                self._write(Reg.HIGH_BW_OPTIMIZE1, 0x03)
            self.automatic_if_on = 1
        else:
            self._write(Reg.HIGH_BW_OPTIMIZE1, 0x03)
            self.automatic_if_on = 0
            self._write(Reg.IF_FREQ1, 0x00)
            self._write(Reg.IF_FREQ2, 0x48 if code == 0 else 0x44 if code <= 5 else 0x40)

    @staticmethod
    def _rx_frequency_hz(cfg: LoRaConfig) -> int:
        """Errata 2.3: below 62.5 kHz the receiver's Frf is raised by the bandwidth."""
        code = regs.bw_code(cfg.bw_hz)
        return cfg.frequency_hz + (regs.BANDWIDTHS_HZ[code] if code <= 5 else 0)

    def _write_frf(self, frequency_hz: int) -> None:
        frf = regs.frf_from_hz(frequency_hz)
        self._burst_write(Reg.FRF_MSB, [(frf >> 16) & 0xFF, (frf >> 8) & 0xFF, frf & 0xFF])  # LSB last

    # ------------------------------------------------------------------ receive
    def _start_rx(self) -> None:
        """Clear the IRQ flags, point the FIFO at the RX base, enter RXCONTINUOUS."""
        self._burst_write(Reg.FIFO_ADDR_PTR, [FIFO_RX_BASE, FIFO_TX_BASE, FIFO_RX_BASE, 0, IRQ_MASK, 0xFF])
        self._enter_rx()

    def _iq2_back_to_rx(self) -> None:
        """RegInvertIQ2 to its receive value if a transmission left the TX one (before RX or CAD)."""
        if self._iq2_on_tx:
            self._write(Reg.INVERT_IQ2, self._iq2_rx)
            self._iq2_on_tx = False

    def _enter_rx(self) -> None:
        """RXCONTINUOUS (flags already cleared), then note the valid-header counter."""
        self._iq2_back_to_rx()
        self._write(Reg.OP_MODE, self._op_rx)
        self._expected_op_mode = self._op_rx
        # The datasheet says both "since the last transition into RX" and "reset in SLEEP" for the
        # header counter: take it as it stands now, so either behaviour is right.
        msb, lsb = self._burst_read(Reg.RX_HEADER_CNT_MSB, 2)
        self._last_header_cnt = (msb << 8) | lsb
        self._receiving = True
        self._last_activity = self.clock.monotonic()

    def start_receive(self) -> None:
        with self._lock:
            self._rx_enabled = True
            self._start_rx()

    def standby(self) -> None:
        """Stop receiving (nodes that only transmit)."""
        with self._lock:
            self._rx_enabled = False
            self._receiving = False
            self._set_mode(Mode.STDBY)

    def receive(self, timeout_s: float | None = None) -> RxPacket | None:
        """Next received packet (any CRC state), or None after ``timeout_s`` seconds."""
        if self._ready:
            return self._ready.popleft()
        if not self._receiving:
            self.start_receive()
        deadline = None if timeout_s is None else self.clock.monotonic() + timeout_s
        while True:
            now = self.clock.monotonic()
            remaining = None if deadline is None else deadline - now
            if remaining is not None and remaining <= 0:
                break
            chunk = self.health_interval_s if remaining is None else min(remaining, self.health_interval_s)
            if self._wait_irq(chunk):
                self._service()
            elif self.clock.monotonic() - self._last_activity >= self.health_interval_s:
                self.check_health()
            if self._ready:
                return self._ready.popleft()
        return self._ready.popleft() if self._ready else None

    def run(self, stop: threading.Event, timeout_s: float = 0.5) -> None:
        """Receive until ``stop`` is set, handing each packet to ``on_packet``."""
        while not stop.is_set():
            packet = self.receive(timeout_s)
            if packet is not None and self.on_packet is not None:
                self.on_packet(packet)

    def _wait_irq(self, timeout_s: float) -> bool:
        if self._use_dio0:
            assert self.gpio is not None and self.pins.dio0 is not None
            if self.pins.dio0 not in self.gpio.wait_rising(timeout_s):
                return False
            self._edge_time = self.gpio.last_edge_s(self.pins.dio0)
            return True
        deadline = self.clock.monotonic() + timeout_s
        while True:
            with self._lock:
                status = self._read_status()
            if status[_S_FLAGS] & Irq.RX_DONE:
                self._status = status  # the poll's status read is transaction 1 of the packet
                return True
            if self.clock.monotonic() >= deadline:
                return False
            self.clock.sleep(min(self.poll_interval_s, max(deadline - self.clock.monotonic(), 0.0)))

    def _read_status(self) -> list[int]:
        """The raw status frame 0x10..0x2A (index with the ``_S_*`` offsets)."""
        return self.spi.transfer(_STATUS_FRAME)

    def _service(self) -> None:
        """Read every packet the chip holds: three SPI transactions each."""
        with self._lock:
            status, self._status = self._status, None
            previous = self._read_packet(status, None)
            if previous is not None:  # a packet landed mid-read: read it too (three rounds at most)
                for _ in range(3):
                    previous = self._read_packet(None, previous)
                    if previous is None:
                        break

    def _read_packet(self, status: list[int] | None, previous: list[int] | None) -> list[int] | None:
        """Read one packet; returns its status when another packet finished during the read.

        ``previous`` is the status of the packet read just before, when this one's RxDone was cleared
        together with it: then RxPacketCntValue (valid packets only) tells whether its CRC was good.
        The hot path of the gateway: constants come from ``_prepare``, nothing is logged per packet.
        """
        when = self._edge_time
        self._edge_time = None
        transfer = self.spi.transfer
        st = status if status is not None else transfer(_STATUS_FRAME)  # transaction 1
        flags = st[_S_FLAGS]
        seen = flags
        if not flags & _RX_DONE:
            if previous is None:
                self.stats.spurious_irqs += 1
                if flags:
                    self._write(Reg.IRQ_FLAGS, flags)
                return None
            valid = st[_S_PACKET_CNT : _S_PACKET_CNT + 2] != previous[_S_PACKET_CNT : _S_PACKET_CNT + 2]
            seen = flags | _RX_DONE | (0 if valid else _CRC_ERROR)
        start = st[_S_CURRENT]
        # transaction 2: FifoAddrPtr = start; the bases and mask as configured; 0x10 is read-only;
        # clear exactly the flags seen. MISO returns the previous values: a changed FifoRxCurrentAddr
        # means another packet finished in between (its RxDone is cleared with ours).
        miso = transfer((_W_FIFO_ADDR_PTR, start, FIFO_TX_BASE, FIFO_RX_BASE, start, IRQ_MASK, flags))
        payload = bytes(transfer(_FIFO_READ[st[_S_NB_BYTES]])[1:])  # transaction 3
        if when is None:
            when = self.clock.monotonic()  # polling: no edge time
        self._last_activity = when
        stats = self.stats
        stats.packets += 1
        if self._crc_from_header:
            header_cnt = (st[_S_HEADER_CNT] << 8) | st[_S_HEADER_CNT + 1]
            gap = (header_cnt - self._last_header_cnt) & 0xFFFF
            self._last_header_cnt = header_cnt
            if gap > 1:
                stats.missed += gap - 1
                log.warning(
                    "%s: %d packet(s) lost before the driver could read them (overrun)", self.name, gap - 1
                )
            cr_code = (st[_S_MODEM_STAT] >> _RX_CR_SHIFT) & _RX_CR_MAX
            cr = CODING_RATE_BY_CODE[cr_code] or self._cr
            crc_on = st[_S_HOP] & _CRC_ON_PAYLOAD_BIT
        else:
            crc_on, cr = self._crc_configured, self._cr
        if not crc_on:
            crc = _CRC_ABSENT
            stats.crc_absent += 1
        elif seen & _CRC_ERROR:
            crc = _CRC_FAILED
            stats.crc_failed += 1
        else:
            crc = _CRC_OK
            stats.crc_ok += 1
        snr = st[_S_SNR]
        snr = (snr - 256 if snr & 0x80 else snr) / 4.0
        fei = ((st[_S_FEI] & 0x0F) << 16) | (st[_S_FEI + 1] << 8) | st[_S_FEI + 2]
        self._ready.append(
            RxPacket(
                payload,
                self._rssi_offset + st[_S_RSSI] + (snr if snr < 0 else 0.0),
                snr,
                self._freq_hz,
                (fei - 0x100000 if fei & 0x80000 else fei) * self._fei_hz_per_step,
                self._sf,
                self._bw_hz,
                cr,
                crc,
                when,  # RxDone time: the DIO0 edge when there was one
                self._utc_at(when),
            )
        )
        if miso[_W_CURRENT] != start:
            return st  # a packet finished while this one was read: read it too
        return None

    # ------------------------------------------------------------------ self-healing
    def check_health(self) -> bool:
        """Look for a reset chip, a lost mode, a missed DIO0 edge or a hung receiver; fix and count.

        Returns True when all was well. Runs on idle only, so packets still cost three transactions.
        """
        with self._lock:
            self._last_activity = self.clock.monotonic()
            if not self._receiving:
                return True
            op_mode = self._read(Reg.OP_MODE)
            if op_mode != self._expected_op_mode:
                reason = "chip_reset" if not op_mode & 0x80 else "mode_lost"
                self._recover(
                    reason, f"OpMode reads 0x{op_mode:02X}, expected 0x{self._expected_op_mode:02X}"
                )
                return False
            status = self._read_status()
            flags = status[_S_FLAGS]
            if flags & Irq.RX_DONE:
                # DIO0 is high and stays high until RxDone is cleared: the edge was missed.
                self._note_recovery("dio0_missed", "RxDone pending without a DIO0 edge")
                self._status = status
                self._service()
                return False
            header_cnt = (status[_S_HEADER_CNT] << 8) | status[_S_HEADER_CNT + 1]
            modem_stat = status[_S_MODEM_STAT]
            if (
                not self.config.implicit_header
                and header_cnt != self._last_header_cnt
                and not modem_stat & regs.RX_ONGOING
            ):
                self._recover("rx_stalled", f"valid-header counter moved to {header_cnt} without an RxDone")
                return False
            return True

    def _note_recovery(self, reason: str, detail: str) -> None:
        self.stats.recoveries += 1
        self.stats.recovery_reasons[reason] += 1
        log.warning("%s: recovering the radio (%s): %s", self.name, reason, detail)

    def _recover(self, reason: str, detail: str) -> None:
        self._note_recovery(reason, detail)
        self._init_chip()

    # ------------------------------------------------------------------ transmit, CAD, RSSI
    def transmit(self, payload: bytes, wait: bool = True, timeout_s: float | None = None) -> float:
        """Send ``payload``; with ``wait`` block until TxDone. Returns the time on air in seconds.

        Receiving resumes after TxDone (when waiting). Raises HardwareError if TxDone never comes.
        Six SPI transactions up to the TX mode write (plus one status read when a packet might be
        pending in receive, and one RegInvertIQ2 write when the TX IQ polarity is not the receive one,
        undone on the way back); ``last_tx_decision_to_mode_s`` is the time this call took to get there.
        """
        decided = time.perf_counter()
        if not 1 <= len(payload) <= 255:
            raise ConfigError(
                f"{self.name}: payload of {len(payload)} bytes outside 1..255", "payload_length"
            )
        toa = self.config.time_on_air_s(len(payload))
        with self._lock:
            self._keep_pending_packet()
            self._write(Reg.OP_MODE, self._op_stdby)  # the FIFO can only be filled in standby
            self._receiving = False
            if self._shifted_rx:
                self._write_frf(self.config.frequency_hz)
            if self._iq2_tx != self._iq2_rx and not self._iq2_on_tx:  # a gateway: normal IQ in, inverted out
                self._write(Reg.INVERT_IQ2, self._iq2_tx)
                self._iq2_on_tx = True
            # FifoAddrPtr = TX base, bases and mask as configured, every IRQ flag cleared
            self._burst_write(
                Reg.FIFO_ADDR_PTR, [FIFO_TX_BASE, FIFO_TX_BASE, FIFO_RX_BASE, 0, IRQ_MASK, 0xFF]
            )
            self.spi.transfer([regs.WRITE | Reg.FIFO, *payload])
            self._write(Reg.PAYLOAD_LENGTH, len(payload))
            self._write(Reg.DIO_MAPPING1, regs.DIO0_TX_DONE << 6)
            if self._use_dio0:
                assert self.gpio is not None
                self.gpio.wait_rising(0)  # an RxDone edge already served must not pass for TxDone
            self.last_tx_decision_to_mode_s = time.perf_counter() - decided  # as the mode write starts
            before = self._write(Reg.OP_MODE, self._op_tx)  # MISO: the mode it replaced
            if before != self._op_stdby:
                self._restore_rx()
                raise HardwareError(
                    f"{self.name}: standby write ignored before TX (OpMode read 0x{before:02X}, expected "
                    f"0x{self._op_stdby:02X}); check the SPI wiring",
                    "mode_write",
                )
            self._expected_op_mode = self._op_tx
        if wait:
            self.wait_tx_done(timeout_s if timeout_s is not None else toa * 1.5 + 0.1)
        return toa

    def wait_tx_done(self, timeout_s: float) -> None:
        """Wait for TxDone (the DIO0 edge, or polling), then go back to receive in three transactions
        (four when RegInvertIQ2 goes back to its receive value, see ``_enter_rx``)."""
        deadline = self.clock.monotonic() + timeout_s
        while True:
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                break
            if self._use_dio0:
                assert self.gpio is not None and self.pins.dio0 is not None
                if self.pins.dio0 in self.gpio.wait_rising(remaining):
                    break  # DIO0 is mapped to TxDone; the flag itself is checked below
            else:
                with self._lock:
                    if self._read(Reg.IRQ_FLAGS) & Irq.TX_DONE:
                        break
                self.clock.sleep(min(self.poll_interval_s, remaining))
        flags = self._restore_rx()
        if not flags & Irq.TX_DONE:
            raise HardwareError(f"{self.name}: TxDone not raised within {timeout_s:.3f} s", "tx_timeout")
        self.stats.tx_packets += 1

    def cad(self, timeout_s: float = 0.5) -> bool:
        """Channel activity detection: True when a LoRa preamble of this channel is on the air."""
        with self._lock:
            self._keep_pending_packet()
            self._set_mode(Mode.STDBY)
            self._receiving = False
            self._write(Reg.DIO_MAPPING1, (regs.DIO0_CAD_DONE << 6) | (regs.DIO1_CAD_DETECTED << 4))
            self._write(Reg.IRQ_FLAGS, 0xFF)
            self._iq2_back_to_rx()
            self._set_mode(Mode.CAD)
        done = self._wait_flag(Irq.CAD_DONE, timeout_s)
        flags = self._restore_rx()
        if not done and not flags & Irq.CAD_DONE:
            raise HardwareError(f"{self.name}: CadDone not raised within {timeout_s:.3f} s", "cad_timeout")
        return bool(flags & Irq.CAD_DETECTED)

    def _keep_pending_packet(self) -> None:
        """Before leaving RX (and clearing the flags), read a packet whose RxDone is still pending."""
        if not self._receiving:
            return
        status = self._read_status()
        if status[_S_FLAGS] & Irq.RX_DONE:
            self._status = status
            self._service()

    def rssi_dbm(self) -> float:
        """Instantaneous RSSI (RegRssiValue) in receive: the noise floor when the channel is quiet."""
        with self._lock:
            if not self._receiving:
                self._start_rx()
            return float(regs.rssi_offset_db(self.config.frequency_hz) + self._read(Reg.RSSI_VALUE))

    def noise_floor_dbm(self, samples: int = 8, interval_s: float = 0.001) -> float:
        values = []
        for _ in range(max(1, samples)):
            values.append(self.rssi_dbm())
            self.clock.sleep(interval_s)
        return sum(values) / len(values)

    def _wait_flag(self, flag: int, timeout_s: float) -> bool:
        deadline = self.clock.monotonic() + timeout_s
        while True:
            with self._lock:
                if self._read(Reg.IRQ_FLAGS) & flag:
                    return True
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                return False
            if self._use_dio0:
                assert self.gpio is not None
                self.gpio.wait_rising(remaining)
            else:
                self.clock.sleep(min(self.poll_interval_s, remaining))

    def _restore_rx(self) -> int:
        """After TX or CAD: clear the flags, DIO0 back to RxDone, receive again. Returns the IRQ flags
        as they were (the MISO of the clearing write), so the caller needs no read of its own."""
        with self._lock:
            miso = self._burst_write(
                Reg.FIFO_ADDR_PTR, [FIFO_RX_BASE, FIFO_TX_BASE, FIFO_RX_BASE, 0, IRQ_MASK, 0xFF]
            )
            self._write(Reg.DIO_MAPPING1, 0x00)
            if self._shifted_rx:
                self._write(Reg.OP_MODE, self._op_stdby)  # Frf is applied on entering RX
                self._write_frf(self._rx_frequency_hz(self.config))
            if self._use_dio0:
                assert self.gpio is not None
                self.gpio.wait_rising(0)  # drop the TxDone/CadDone edge: DIO0 means RxDone again
            if self._rx_enabled:
                self._enter_rx()
            else:
                self._write(Reg.OP_MODE, self._op_stdby)
                self._expected_op_mode = self._op_stdby
            return miso[Reg.IRQ_FLAGS - Reg.FIFO_ADDR_PTR]


CODING_RATE_BY_CODE: tuple[str | None, ...] = (None, *regs.CODING_RATES, None, None, None)


def _ocp_trim(ocp_ma: int) -> int:
    """OcpTrim for a current limit (datasheet 5.4.4): 45 + 5·T up to 120 mA, −30 + 10·T up to 240 mA."""
    if ocp_ma <= 120:
        return (ocp_ma - 45) // 5
    if ocp_ma < 240:
        return (ocp_ma + 30) // 10
    return 27


def _enum(kind: type[Ldro], value: str, name: str) -> Ldro:
    try:
        return kind(value)
    except ValueError as exc:
        raise ConfigError(
            f"radio: {name} must be one of {', '.join(k.value for k in kind)}", "radio_config"
        ) from exc


def open_radio(
    config: LoRaConfig,
    pins: Pins = Pins(),
    bus: int = 0,
    cs: int = 0,
    speed_hz: int = 8_000_000,
    gpio_backend: str = "auto",
    name: str = "sx1276",
) -> SX1276:
    """An SX1276 on real hardware (spidev + RPi.GPIO or libgpiod); call ``begin()`` next."""
    gpio = open_gpio(SYSTEM_CLOCK, gpio_backend) if pins.reset is not None or pins.dio0 is not None else None
    return SX1276(SpidevPort(bus, cs, speed_hz), gpio, pins, config, SYSTEM_CLOCK, name=name)
