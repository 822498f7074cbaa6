"""SX1276 registers and bit fields in LoRa mode, declared once.

Source: Semtech SX1276/77/78/79 datasheet, section 6 (register map, table 41 defaults) and the
SX1276/77/78 errata note. Both the driver and the emulator read their chip facts from here; nothing
else in the project spells a register address.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Reg(IntEnum):
    """Register addresses (LoRa page; FSK-page names where the driver needs them)."""

    FIFO = 0x00
    OP_MODE = 0x01
    FRF_MSB = 0x06
    FRF_MID = 0x07
    FRF_LSB = 0x08
    PA_CONFIG = 0x09
    PA_RAMP = 0x0A
    OCP = 0x0B
    LNA = 0x0C
    FIFO_ADDR_PTR = 0x0D
    FIFO_TX_BASE_ADDR = 0x0E
    FIFO_RX_BASE_ADDR = 0x0F
    FIFO_RX_CURRENT_ADDR = 0x10
    IRQ_FLAGS_MASK = 0x11
    IRQ_FLAGS = 0x12
    RX_NB_BYTES = 0x13
    RX_HEADER_CNT_MSB = 0x14
    RX_HEADER_CNT_LSB = 0x15
    RX_PACKET_CNT_MSB = 0x16
    RX_PACKET_CNT_LSB = 0x17
    MODEM_STAT = 0x18
    PKT_SNR_VALUE = 0x19
    PKT_RSSI_VALUE = 0x1A
    RSSI_VALUE = 0x1B
    HOP_CHANNEL = 0x1C
    MODEM_CONFIG1 = 0x1D
    MODEM_CONFIG2 = 0x1E
    SYMB_TIMEOUT_LSB = 0x1F
    PREAMBLE_MSB = 0x20
    PREAMBLE_LSB = 0x21
    PAYLOAD_LENGTH = 0x22
    MAX_PAYLOAD_LENGTH = 0x23
    HOP_PERIOD = 0x24
    FIFO_RX_BYTE_ADDR = 0x25
    MODEM_CONFIG3 = 0x26
    FEI_MSB = 0x28
    FEI_MID = 0x29
    FEI_LSB = 0x2A
    RSSI_WIDEBAND = 0x2C
    IF_FREQ2 = 0x2F  # errata 2.3
    IF_FREQ1 = 0x30  # errata 2.3
    DETECT_OPTIMIZE = 0x31
    INVERT_IQ = 0x33
    HIGH_BW_OPTIMIZE1 = 0x36  # errata 2.1
    DETECTION_THRESHOLD = 0x37
    SYNC_WORD = 0x39
    HIGH_BW_OPTIMIZE2 = 0x3A  # errata 2.1
    INVERT_IQ2 = 0x3B  # LoRa page; the FSK page has RegImageCal at the same address
    DIO_MAPPING1 = 0x40
    DIO_MAPPING2 = 0x41
    VERSION = 0x42
    TCXO = 0x4B
    PA_DAC = 0x4D


IMAGE_CAL = 0x3B  # FSK page (LongRangeMode = 0): b7 AutoImageCalOn, b6 ImageCalStart, b5 ImageCalRunning
IMAGE_CAL_START = 0x40
IMAGE_CAL_RUNNING = 0x20

WRITE = 0x80  # bit 7 of the address byte selects a write
ADDRESS_MASK = 0x7F
FIFO_SIZE = 256
CHIP_VERSION = 0x12
FXOSC_HZ = 32_000_000
FSTEP_HZ = FXOSC_HZ / 2**19  # 61.035 Hz per Frf step


@dataclass(frozen=True, slots=True)
class Field:
    """A bit field: register, lowest bit and width, as in the datasheet's register table."""

    reg: int
    shift: int
    width: int

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.shift

    @property
    def max(self) -> int:
        return (1 << self.width) - 1

    def get(self, reg_value: int) -> int:
        return (reg_value & self.mask) >> self.shift

    def put(self, reg_value: int, value: int) -> int:
        """Return ``reg_value`` with this field replaced; values wider than the field are refused."""
        if not 0 <= value <= self.max:
            raise ValueError(
                f"value {value} does not fit a {self.width}-bit field of register 0x{self.reg:02X}"
            )
        return (reg_value & ~self.mask & 0xFF) | (value << self.shift)


# RegOpMode
LONG_RANGE_MODE = Field(Reg.OP_MODE, 7, 1)
ACCESS_SHARED_REG = Field(Reg.OP_MODE, 6, 1)
LOW_FREQUENCY_MODE_ON = Field(Reg.OP_MODE, 3, 1)
MODE = Field(Reg.OP_MODE, 0, 3)


class Mode(IntEnum):
    SLEEP = 0
    STDBY = 1
    FSTX = 2
    TX = 3
    FSRX = 4
    RXCONTINUOUS = 5
    RXSINGLE = 6
    CAD = 7


# RegPaConfig / RegOcp / RegLna
PA_SELECT = Field(Reg.PA_CONFIG, 7, 1)
MAX_POWER = Field(Reg.PA_CONFIG, 4, 3)
OUTPUT_POWER = Field(Reg.PA_CONFIG, 0, 4)
OCP_ON = Field(Reg.OCP, 5, 1)
OCP_TRIM = Field(Reg.OCP, 0, 5)
LNA_GAIN = Field(Reg.LNA, 5, 3)
LNA_BOOST_HF = Field(Reg.LNA, 0, 2)

# RegModemConfig1..3
BW = Field(Reg.MODEM_CONFIG1, 4, 4)
CODING_RATE = Field(Reg.MODEM_CONFIG1, 1, 3)
IMPLICIT_HEADER_MODE_ON = Field(Reg.MODEM_CONFIG1, 0, 1)
SPREADING_FACTOR = Field(Reg.MODEM_CONFIG2, 4, 4)
TX_CONTINUOUS_MODE = Field(Reg.MODEM_CONFIG2, 3, 1)
RX_PAYLOAD_CRC_ON = Field(Reg.MODEM_CONFIG2, 2, 1)
SYMB_TIMEOUT_MSB = Field(Reg.MODEM_CONFIG2, 0, 2)
LOW_DATA_RATE_OPTIMIZE = Field(Reg.MODEM_CONFIG3, 3, 1)
AGC_AUTO_ON = Field(Reg.MODEM_CONFIG3, 2, 1)

# RegModemStat / RegHopChannel
RX_CODING_RATE = Field(Reg.MODEM_STAT, 5, 3)
CRC_ON_PAYLOAD = Field(Reg.HOP_CHANNEL, 6, 1)

# RegDetectOptimize, RegInvertIQ
AUTOMATIC_IF_ON = Field(Reg.DETECT_OPTIMIZE, 7, 1)
DETECTION_OPTIMIZE = Field(Reg.DETECT_OPTIMIZE, 0, 3)
INVERT_IQ_RX = Field(Reg.INVERT_IQ, 6, 1)
INVERT_IQ_TX_OFF = Field(Reg.INVERT_IQ, 0, 1)  # 1 = normal TX, 0 = inverted (Semtech's sx1276.c)
INVERT_IQ2_NORMAL = 0x1D
INVERT_IQ2_INVERTED = 0x19

# RegDioMapping1
DIO0_MAPPING = Field(Reg.DIO_MAPPING1, 6, 2)
DIO1_MAPPING = Field(Reg.DIO_MAPPING1, 4, 2)
DIO3_MAPPING = Field(Reg.DIO_MAPPING1, 0, 2)
DIO0_RX_DONE, DIO0_TX_DONE, DIO0_CAD_DONE = 0, 1, 2
DIO1_RX_TIMEOUT, DIO1_FHSS_CHANGE, DIO1_CAD_DETECTED = 0, 1, 2


class Irq(IntEnum):
    """RegIrqFlags bits (write 1 to clear); RegIrqFlagsMask uses the same layout."""

    RX_TIMEOUT = 0x80
    RX_DONE = 0x40
    PAYLOAD_CRC_ERROR = 0x20
    VALID_HEADER = 0x10
    TX_DONE = 0x08
    CAD_DONE = 0x04
    FHSS_CHANGE_CHANNEL = 0x02
    CAD_DETECTED = 0x01


# ModemStat bits (b4..b0)
MODEM_CLEAR = 0x10
HEADER_INFO_VALID = 0x08
RX_ONGOING = 0x04
SIGNAL_SYNCHRONIZED = 0x02
SIGNAL_DETECTED = 0x01

# Bandwidth codes 0..9 (RegModemConfig1 b7-4): nominal Hz used in the API, exact Hz used for timing.
BANDWIDTHS_HZ: tuple[int, ...] = (7800, 10400, 15600, 20800, 31250, 41700, 62500, 125000, 250000, 500000)
EXACT_BANDWIDTHS_HZ: tuple[float, ...] = (
    500e3 / 64,
    125e3 / 12,
    500e3 / 32,
    125e3 / 6,
    500e3 / 16,
    125e3 / 3,
    62.5e3,
    125e3,
    250e3,
    500e3,
)
CODING_RATES: tuple[str, ...] = ("4/5", "4/6", "4/7", "4/8")  # register codes 1..4

# Frequency bands and RSSI (datasheet 5.5.5): the HF port serves band 1 (779-960 MHz).
HF_THRESHOLD_HZ = 525_000_000
RSSI_OFFSET_HF_DB = -157
RSSI_OFFSET_LF_DB = -164

# Demodulator SNR limit per SF (datasheet table 13), dB.
SNR_LIMIT_DB = {6: -5.0, 7: -7.5, 8: -10.0, 9: -12.5, 10: -15.0, 11: -17.5, 12: -20.0}

# SF6 rules (datasheet 4.1.1.2) and the SF7-12 values.
DETECT_OPTIMIZE_SF6 = 0x05
DETECT_OPTIMIZE_SF7_12 = 0x03
DETECTION_THRESHOLD_SF6 = 0x0C
DETECTION_THRESHOLD_SF7_12 = 0x0A

# Registers the chip never lets you write (LoRa page).
READ_ONLY_LORA: frozenset[int] = frozenset(
    {
        Reg.FIFO_RX_CURRENT_ADDR,
        Reg.RX_NB_BYTES,
        Reg.RX_HEADER_CNT_MSB,
        Reg.RX_HEADER_CNT_LSB,
        Reg.RX_PACKET_CNT_MSB,
        Reg.RX_PACKET_CNT_LSB,
        Reg.MODEM_STAT,
        Reg.PKT_SNR_VALUE,
        Reg.PKT_RSSI_VALUE,
        Reg.RSSI_VALUE,
        Reg.HOP_CHANNEL,
        Reg.FIFO_RX_BYTE_ADDR,
        Reg.FEI_MSB,
        Reg.FEI_MID,
        Reg.FEI_LSB,
        Reg.RSSI_WIDEBAND,
        Reg.VERSION,
    }
)

# Reset values of the registers shared by both modems (0x01-0x0C, 0x40-0x7F) after POR.
RESET_COMMON: dict[int, int] = {
    Reg.OP_MODE: 0x09,  # FSK, LowFrequencyModeOn, STDBY
    Reg.FRF_MSB: 0x6C,
    Reg.FRF_MID: 0x80,
    Reg.FRF_LSB: 0x00,
    Reg.PA_CONFIG: 0x4F,
    Reg.PA_RAMP: 0x09,
    Reg.OCP: 0x2B,
    Reg.LNA: 0x20,
    Reg.DIO_MAPPING1: 0x00,
    Reg.DIO_MAPPING2: 0x00,
    Reg.VERSION: CHIP_VERSION,
    Reg.TCXO: 0x09,
    Reg.PA_DAC: 0x84,
}

# Reset values of the LoRa page 0x0D-0x3F (read in LoRa mode).
RESET_LORA: dict[int, int] = {
    Reg.FIFO_ADDR_PTR: 0x00,
    Reg.FIFO_TX_BASE_ADDR: 0x80,
    Reg.FIFO_RX_BASE_ADDR: 0x00,
    Reg.MODEM_STAT: 0x10,
    Reg.MODEM_CONFIG1: 0x72,
    Reg.MODEM_CONFIG2: 0x70,
    Reg.SYMB_TIMEOUT_LSB: 0x64,
    Reg.PREAMBLE_MSB: 0x00,
    Reg.PREAMBLE_LSB: 0x08,
    Reg.PAYLOAD_LENGTH: 0x01,
    Reg.MAX_PAYLOAD_LENGTH: 0xFF,
    Reg.MODEM_CONFIG3: 0x04,
    Reg.IF_FREQ2: 0x45,
    Reg.IF_FREQ1: 0x55,
    Reg.DETECT_OPTIMIZE: 0xC3,
    Reg.INVERT_IQ: 0x27,
    Reg.HIGH_BW_OPTIMIZE1: 0x03,
    Reg.DETECTION_THRESHOLD: 0x0A,
    Reg.SYNC_WORD: 0x12,
    Reg.HIGH_BW_OPTIMIZE2: 0x65,
    Reg.INVERT_IQ2: INVERT_IQ2_NORMAL,
}

# FSK-page reset values the driver touches (RegImageCal).
RESET_FSK: dict[int, int] = {IMAGE_CAL: 0x82}


def frf_from_hz(frequency_hz: int) -> int:
    """Frf register value: f · 2^19 / 32 MHz, rounded (datasheet 4.1.4)."""
    return round(frequency_hz * 2**19 / FXOSC_HZ)


def hz_from_frf(frf: int) -> float:
    return frf * FXOSC_HZ / 2**19


def bw_code(bw_hz: float) -> int:
    """Register code of a bandwidth given as nominal Hz (7800 … 500000); tolerant to 7812.5 etc."""
    for code, (nominal, exact) in enumerate(zip(BANDWIDTHS_HZ, EXACT_BANDWIDTHS_HZ, strict=True)):
        if abs(bw_hz - nominal) < 1 or abs(bw_hz - exact) < 1:
            return code
    raise ValueError(f"unsupported bandwidth {bw_hz} Hz (one of {', '.join(map(str, BANDWIDTHS_HZ))})")


def cr_code(cr: str | int) -> int:
    """Register code 1..4 of a coding rate given as "4/5".."4/8" or the denominator 5..8."""
    if isinstance(cr, int) and 5 <= cr <= 8:
        return cr - 4
    if isinstance(cr, str) and cr in CODING_RATES:
        return CODING_RATES.index(cr) + 1
    raise ValueError(f"unsupported coding rate {cr!r} (4/5, 4/6, 4/7 or 4/8)")


def rssi_offset_db(frequency_hz: float) -> int:
    return RSSI_OFFSET_HF_DB if frequency_hz >= HF_THRESHOLD_HZ else RSSI_OFFSET_LF_DB


def fei_to_hz(fei_raw: int, bw_hz: float) -> float:
    """Frequency error from the 20-bit signed FEI: raw · 2^24 / Fxtal · BW[kHz] / 500 (datasheet 4.1.5)."""
    if fei_raw & 0x80000:
        fei_raw -= 1 << 20
    return fei_raw * (2**24 / FXOSC_HZ) * (bw_hz / 1000.0) / 500.0


def hz_to_fei(error_hz: float, bw_hz: float) -> int:
    raw = round(error_hz / ((2**24 / FXOSC_HZ) * (bw_hz / 1000.0) / 500.0))
    raw = max(-(1 << 19), min((1 << 19) - 1, raw))
    return raw & 0xFFFFF
