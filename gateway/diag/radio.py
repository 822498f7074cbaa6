"""The chip checks: does the SX1276 answer, is the SPI link clean, does RESET reset it, does DIO0 rise.

Each check talks to the chip at register level through the same SPI port and GPIO interfaces as the
driver (not through the driver, whose start-up refuses a chip that does not answer), gives up after a
bounded time, and leaves the chip in standby. Names are stable: ``chip_version``, ``spi_link``,
``chip_reset``, ``dio0_irq``. When the chip does not answer, the checks that need it are skipped
(``ok`` None), so exactly the failing link of the chain shows as failed.

A running gateway service is disturbed by these checks (its driver notices the reset and recovers);
for a clean reading stop it first (``sudo systemctl stop lora-gw``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from gateway.diag.radio_rig import RadioRig, open_rig
from gateway.diag.regulatory import tx_rules
from gateway.diag.report import Check
from gateway.errors import GatewayError, HardwareError
from gateway.hw.gpio import Gpio
from gateway.hw.spi import SpiPort
from gateway.radio import regs
from gateway.radio.regs import Irq, Mode, Reg
from gateway.service.config import Config

log = logging.getLogger(__name__)

CHECK_NAMES = ("chip_version", "spi_link", "chip_reset", "dio0_irq")
SCRATCH_REG = Reg.SYNC_WORD  # read/write in both the LoRa and the FSK page; restored after the test
RESET_PROBE_REG = Reg.PA_RAMP  # shared page: its reset value (0x09) does not depend on the modem
RESET_PULSE_S = 0.001  # datasheet 7.2.2: > 100 µs low, then 5-10 ms before the chip answers
RESET_WAIT_S = 0.010
IRQ_TIMEOUT_S = 0.5
DIO0_METHODS = ("cad", "tx")

SPI_FIX = (
    "enable SPI (sudo raspi-config nonint do_spi 0, or dtparam=spi=on in /boot/firmware/config.txt), reboot,"
    " and add this user to the 'spi' group (sudo usermod -aG spi $USER)"
)


def link_patterns() -> list[int]:
    """0x55/0xAA (alternating bits), 0x00/0xFF (stuck lines), walking ones and walking zeros."""
    walking = [1 << i for i in range(8)]
    return [0x55, 0xAA, 0x00, 0xFF, *walking, *(~b & 0xFF for b in walking)]


class RegisterBus:
    """Single-register reads and writes on an SPI port (datasheet 4.3: bit 7 of the address = write)."""

    def __init__(self, spi: SpiPort) -> None:
        self.spi = spi

    def read(self, reg: int) -> int:
        return self.spi.transfer([reg & regs.ADDRESS_MASK, 0])[1]

    def write(self, reg: int, value: int) -> None:
        self.spi.transfer([regs.WRITE | reg, value & 0xFF])


@dataclass
class _Session:
    rig: RadioRig
    cfg: Config
    bus: RegisterBus
    speed_hz: int
    gpio: Gpio | None
    gpio_error: str | None
    link_works: bool = True  # at ``speed_hz`` (the configured clock or half of it)


def radio_checks(cfg: Config, dio0_method: str = "cad") -> list[Check]:
    """The four chip checks for the configured radio (``lora-gw doctor`` and ``lora-gw diag chip``)."""
    try:
        rig = open_rig(cfg, with_nodes=False, begin=False)
    except GatewayError as exc:
        return _unreachable(Check.failed("chip_version", "cannot open the radio", exc.message, SPI_FIX))
    with rig:
        return chip_checks(rig, cfg, dio0_method)


def chip_checks(rig: RadioRig, cfg: Config, dio0_method: str = "cad") -> list[Check]:
    if dio0_method not in DIO0_METHODS:
        raise ValueError(f"dio0 method {dio0_method!r} is not one of {DIO0_METHODS}")
    spi = rig.make_spi(rig.spi_speed_hz)
    try:
        spi.open()
    except HardwareError as exc:
        return _unreachable(
            Check.failed("chip_version", f"cannot open {cfg.radio.spi_device}", exc.message, SPI_FIX)
        )
    gpio: Gpio | None = None
    gpio_error = None
    try:
        gpio = rig.make_gpio()
        gpio.setup_output(rig.pins.reset, True)
    except (HardwareError, RuntimeError, OSError) as exc:
        gpio_error = getattr(exc, "message", str(exc))
        gpio = None
    s = _Session(rig, cfg, RegisterBus(spi), rig.spi_speed_hz, gpio, gpio_error)
    try:
        version = check_version(s)
        if version.ok is not True:
            return _unreachable(version)
        link = check_spi_link(s)
        if not s.link_works:
            return [version, link, *_skipped(CHECK_NAMES[2:], "the SPI link does not work at any clock")]
        return [version, link, check_reset(s), check_dio0(s, dio0_method)]
    finally:
        _standby(s)
        s.bus.spi.close()
        if gpio is not None and not rig.emulated:
            gpio.close()


def _unreachable(first: Check) -> list[Check]:
    return [first, *_skipped(CHECK_NAMES[1:], "needs a chip that answers on SPI")]


def _skipped(names: tuple[str, ...], why: str) -> list[Check]:
    return [Check.skipped(n, f"skipped: {why}") for n in names]


def _pulse_reset(s: _Session) -> None:
    assert s.gpio is not None
    s.gpio.write(s.rig.pins.reset, False)
    s.rig.clock.sleep(RESET_PULSE_S)
    s.gpio.write(s.rig.pins.reset, True)
    s.rig.clock.sleep(RESET_WAIT_S)


# ---------------------------------------------------------------------------------------- chip_version
def check_version(s: _Session) -> Check:
    version = s.bus.read(Reg.VERSION)
    if version != regs.CHIP_VERSION and s.gpio is not None:
        _pulse_reset(s)  # a chip left in a bad state may answer after a reset
        version = s.bus.read(Reg.VERSION)
    where = s.cfg.radio.spi_device
    if version == regs.CHIP_VERSION:
        return Check.passed("chip_version", f"RegVersion 0x12 (SX1276/77/78/79) on {where}")
    detail = f"RegVersion (0x42) reads 0x{version:02X} on {where}"
    if version == 0x00:
        return Check.failed(
            "chip_version",
            detail,
            "nothing answers on this chip select: the radio module gets no power, or its chip-select (NSS)"
            " is wired to another pin than the SPI device uses",
            "check the module's 3.3 V and GND; on a Dragino HAT (NSS on GPIO25) add"
            " 'dtoverlay=spi0-cs,cs0_pin=25' to /boot/firmware/config.txt and reboot; on the Adafruit bonnet"
            ' set spi_device = "/dev/spidev0.1" in [radio]',
        )
    if version == 0xFF:
        return Check.failed(
            "chip_version",
            detail,
            "the data line from the chip (MISO) stays high: MISO is not connected, or the chip is unpowered",
            "check the wire from the module's MISO to GPIO9 (header pin 21) and the module's 3.3 V supply",
        )
    return Check.failed(
        "chip_version",
        detail,
        f"a chip answers but it is not an SX1276 (0x{version:02X}; SX126x modules answer differently),"
        " or the SPI bus corrupts the reply",
        "use an SX1276/77/78/79 module (RFM95W, Dragino LoRa HAT), or lower spi_speed_hz in [radio]",
    )


# ---------------------------------------------------------------------------------------- spi_link
def _link_errors(bus: RegisterBus) -> list[tuple[int, int]]:
    saved = bus.read(SCRATCH_REG)
    wrong = []
    try:
        for pattern in link_patterns():
            bus.write(SCRATCH_REG, pattern)
            got = bus.read(SCRATCH_REG)
            if got != pattern:
                wrong.append((pattern, got))
    finally:
        bus.write(SCRATCH_REG, saved)
    return wrong


def _describe(wrong: list[tuple[int, int]], total: int, hz: int) -> str:
    if not wrong:
        return f"{total} patterns read back at {hz / 1e6:g} MHz"
    w, g = wrong[0]
    return f"{len(wrong)} of {total} patterns wrong at {hz / 1e6:g} MHz (wrote 0x{w:02X}, read 0x{g:02X})"


def check_spi_link(s: _Session) -> Check:
    """Write/read-back patterns at the configured clock; on errors, again at half the clock."""
    total = len(link_patterns())
    hz = s.speed_hz
    wrong = _link_errors(s.bus)
    if not wrong:
        return Check.passed("spi_link", f"{_describe(wrong, total, hz)} (RegSyncWord, restored)")
    half = hz // 2
    s.bus.spi.close()
    slow = s.rig.make_spi(half)
    slow.open()
    s.bus, s.speed_hz = RegisterBus(slow), half
    wrong_half = _link_errors(s.bus)
    first = _describe(wrong, total, hz)
    s.link_works = not wrong_half
    if not wrong_half:
        return Check.failed(
            "spi_link",
            f"{first}; all {total} fine at {half / 1e6:g} MHz",
            f"bits get corrupted at {hz / 1e6:g} MHz but not at {half / 1e6:g} MHz: wires too long or loose,"
            " or a missing ground wire between the Pi and the module",
            f"set spi_speed_hz = {half} in [radio] (or shorten the jumper wires and add a ground wire)",
        )
    return Check.failed(
        "spi_link",
        f"{first}; {_describe(wrong_half, total, half)}",
        "the chip answers but what is written does not read back even at half the clock: the MOSI or SCK"
        " wire is broken, or another program or kernel driver talks to the chip at the same time",
        "check MOSI (GPIO10, header pin 19) and SCK (GPIO11, pin 23); stop other programs using the radio"
        " (sudo systemctl stop lora-gw)",
    )


# ---------------------------------------------------------------------------------------- chip_reset
def check_reset(s: _Session) -> Check:
    pin = s.rig.pins.reset
    if s.gpio is None:
        return Check.failed(
            "chip_reset",
            f"cannot drive the reset pin GPIO{pin}",
            s.gpio_error or "no GPIO library",
            "install the GPIO library (pip install 'lora-gw[pi]', or 'lora-gw[gpiod]' on a Pi 5) and add this"
            " user to the 'gpio' group",
        )
    default = regs.RESET_COMMON[RESET_PROBE_REG]
    probe = default ^ 0x06
    s.bus.write(RESET_PROBE_REG, probe)
    before = s.bus.read(RESET_PROBE_REG)
    _pulse_reset(s)
    after = s.bus.read(RESET_PROBE_REG)
    detail = (
        f"RegPaRamp 0x{before:02X} before the GPIO{pin} pulse, 0x{after:02X} after"
        f" (reset value 0x{default:02X})"
    )
    if after == default and before == probe:
        return Check.passed("chip_reset", detail)
    s.bus.write(RESET_PROBE_REG, default)
    if after == before:
        return Check.failed(
            "chip_reset",
            detail,
            f"the reset pulse on GPIO{pin} does not reach the chip: it kept the value written before"
            " the pulse",
            f"connect the module's RESET (RST) pin to GPIO{pin}, or set reset_pin in [radio] to the pin it is"
            " wired to (Dragino LoRa HAT: 17, Adafruit RFM9x bonnet: 25)",
        )
    return Check.failed(
        "chip_reset",
        detail,
        "after the reset pulse the chip reads neither its old value nor its reset value: it does not restart"
        " cleanly (unstable supply?)",
        "check the module's 3.3 V supply (a weak supply browns out on reset) and the RESET wire",
    )


# ---------------------------------------------------------------------------------------- dio0_irq
def check_dio0(s: _Session, method: str = "cad") -> Check:
    """CadDone (or TxDone) mapped to DIO0 must raise an edge on the configured GPIO."""
    pin = s.rig.pins.dio0
    if pin is None:
        return Check.skipped(
            "dio0_irq", "dio0_pin = false: the gateway polls RegIrqFlags; no DIO0 line to test"
        )
    if s.gpio is None:
        return Check.failed(
            "dio0_irq",
            f"cannot watch GPIO{pin}",
            s.gpio_error or "no GPIO library",
            "install the GPIO library (pip install 'lora-gw[pi]', or 'lora-gw[gpiod]' on a Pi 5)",
        )
    s.gpio.setup_rising(pin)
    if method == "cad":
        edge, flag, elapsed = _irq_edge(s, pin, _start_cad, Irq.CAD_DONE)
        if edge or flag:
            return _dio0_verdict(pin, "CAD", "CadDone", edge, elapsed)
        log.warning("CAD did not finish (no CadDone); testing DIO0 with a short transmission instead")
    radio = s.cfg.radio
    rules = tx_rules(radio)
    if not rules.allowed_power(radio.tx_power_dbm):
        log.warning(
            "dio0_irq skipped: tx_power_dbm %d exceeds %s's %.0f dBm in %s",
            radio.tx_power_dbm,
            rules.region,
            rules.max_power_dbm,
            rules.band,
        )
        return Check.skipped(
            "dio0_irq",
            f"warning: no test transmission, tx_power_dbm = {radio.tx_power_dbm} is above the"
            f" {rules.max_power_dbm:.0f} dBm allowed in {rules.region} ({rules.band});"
            " fix [radio] tx_power_dbm",
        )
    edge, flag, elapsed = _irq_edge(s, pin, _start_tx, Irq.TX_DONE)
    return _dio0_verdict(pin, "a 1-byte transmission at 2 dBm", "TxDone", edge or False, elapsed, flag)


def _dio0_verdict(
    pin: int, what: str, flag_name: str, edge: bool, elapsed: float, flag: bool = True
) -> Check:
    if edge:
        return Check.passed(
            "dio0_irq", f"DIO0 rose on GPIO{pin} {elapsed * 1e3:.1f} ms after {what} ({flag_name})"
        )
    if flag:
        return Check.failed(
            "dio0_irq",
            f"{flag_name} set in RegIrqFlags after {what}, but GPIO{pin} never rose",
            f"the chip raises its interrupt, but its DIO0 pin is not connected to GPIO{pin}",
            f"wire the module's DIO0 to GPIO{pin}, or set dio0_pin in [radio] to the pin it is wired to"
            " (Dragino LoRa HAT: 4, Adafruit RFM9x bonnet: 22); dio0_pin = false polls instead (slower)",
        )
    return Check.failed(
        "dio0_irq",
        f"{flag_name} never set after {what} within {IRQ_TIMEOUT_S:.1f} s",
        "the chip does not complete operations (no crystal oscillation, or a damaged chip)",
        "power-cycle the module; if it persists, replace it",
    )


def _lora_standby(s: _Session) -> int:
    lf = 0 if s.rig.lora.high_frequency else 0x08
    s.bus.write(Reg.OP_MODE, Mode.SLEEP | lf)
    s.bus.write(Reg.OP_MODE, 0x80 | Mode.SLEEP | lf)  # LongRangeMode changes only in SLEEP
    s.bus.write(Reg.OP_MODE, 0x80 | Mode.STDBY | lf)
    # SF7 / 125 kHz / CR 4/5 (the reset values): a CAD or a 1-byte packet lasts a few ms
    for reg in (Reg.MODEM_CONFIG1, Reg.MODEM_CONFIG2, Reg.MODEM_CONFIG3):
        s.bus.write(reg, regs.RESET_LORA[reg])
    frf = regs.frf_from_hz(s.rig.lora.frequency_hz)
    for reg, byte in ((Reg.FRF_MSB, frf >> 16), (Reg.FRF_MID, frf >> 8), (Reg.FRF_LSB, frf)):
        s.bus.write(reg, byte & 0xFF)
    return lf


def _start_cad(s: _Session) -> None:
    lf = _lora_standby(s)
    s.bus.write(Reg.DIO_MAPPING1, regs.DIO0_CAD_DONE << 6)
    s.bus.write(Reg.IRQ_FLAGS, 0xFF)
    s.bus.write(Reg.OP_MODE, 0x80 | Mode.CAD | lf)


def _start_tx(s: _Session) -> None:
    lf = _lora_standby(s)
    s.bus.write(Reg.PA_CONFIG, 0x80 | 0x70)  # PA_BOOST, OutputPower 0: 17 - 15 = 2 dBm (datasheet 5.4.2)
    s.bus.write(Reg.PA_DAC, 0x84)
    s.bus.write(Reg.FIFO_TX_BASE_ADDR, 0x00)
    s.bus.write(Reg.FIFO_ADDR_PTR, 0x00)
    s.bus.write(Reg.FIFO, 0x00)
    s.bus.write(Reg.PAYLOAD_LENGTH, 1)
    s.bus.write(Reg.DIO_MAPPING1, regs.DIO0_TX_DONE << 6)
    s.bus.write(Reg.IRQ_FLAGS, 0xFF)
    s.bus.write(Reg.OP_MODE, 0x80 | Mode.TX | lf)


def _irq_edge(
    s: _Session, pin: int, start: Callable[[_Session], None], flag: int
) -> tuple[bool, bool, float]:
    """(edge seen on ``pin``, ``flag`` set in RegIrqFlags, seconds to the edge) within the timeout."""
    assert s.gpio is not None
    s.gpio.wait_rising(0)  # drop stale edges
    clock = s.rig.clock
    t0 = clock.monotonic()
    start(s)
    deadline = t0 + IRQ_TIMEOUT_S
    edge = False
    while (remaining := deadline - clock.monotonic()) > 0:
        if pin in s.gpio.wait_rising(remaining):
            edge = True
            break
    elapsed = (s.gpio.last_edge_s(pin) or clock.monotonic()) - t0 if edge else clock.monotonic() - t0
    flags = s.bus.read(Reg.IRQ_FLAGS)
    return edge, bool(flags & flag), elapsed


def _standby(s: _Session) -> None:
    """Leave the chip quiet: flags cleared, DIO0 back to RxDone, standby."""
    try:
        s.bus.write(Reg.IRQ_FLAGS, 0xFF)
        s.bus.write(Reg.DIO_MAPPING1, 0x00)
        op = s.bus.read(Reg.OP_MODE)
        s.bus.write(Reg.OP_MODE, (op & 0xF8) | Mode.STDBY)
    except HardwareError as exc:
        log.warning("could not put the chip back in standby: %s", exc)
