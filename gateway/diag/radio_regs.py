"""A decoded register dump, with the registers that differ from the configured settings marked.

Names and bit fields come from the driver's own declarations (gateway.radio.regs): no second table.
What "configured" means is decided by the driver itself: it configures an emulated reference chip
with the same ``[radio]`` settings, and the reference chip's registers are the expected values. So a
register changed behind the driver's back (another program, a brown-out reset, a wrong CS sharing
the bus) shows up, and the expectation can never drift from what the driver really writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.diag.radio_rig import RadioRig, open_rig
from gateway.errors import HardwareError
from gateway.hw.spi import SpiPort
from gateway.radio import regs
from gateway.radio.regs import Field, Reg
from gateway.radio.sim import RadioSim
from gateway.radio.sx1276 import LoRaConfig
from gateway.service.config import Config

# Registers whose value changes in normal operation (pointers, flags, per-packet length): not compared.
VOLATILE = frozenset({Reg.FIFO_ADDR_PTR, Reg.IRQ_FLAGS})


@dataclass(frozen=True, slots=True)
class FieldValue:
    name: str
    value: int
    expected: int | None
    differs: bool


@dataclass(frozen=True, slots=True)
class RegisterRow:
    address: int
    name: str
    raw: int
    expected: int | None  # None: a status register or one that changes in operation
    fields: tuple[FieldValue, ...]

    @property
    def differs(self) -> bool:
        return self.expected is not None and self.raw != self.expected

    def as_dict(self) -> dict:
        return {
            "address": self.address,
            "address_hex": f"0x{self.address:02X}",
            "name": self.name,
            "raw": self.raw,
            "raw_hex": f"0x{self.raw:02X}",
            "expected": self.expected,
            "differs": self.differs,
            "fields": [
                {"name": f.name, "value": f.value, "expected": f.expected, "differs": f.differs}
                for f in self.fields
            ],
        }


@dataclass(frozen=True, slots=True)
class RegisterDump:
    rows: tuple[RegisterRow, ...]
    lora_mode: bool

    @property
    def differences(self) -> list[RegisterRow]:
        return [r for r in self.rows if r.differs]

    @property
    def note(self) -> str | None:
        if not self.lora_mode:
            return (
                "the chip is in FSK mode (LongRangeMode 0): not configured by the gateway since its last"
                " reset; 0x0D-0x3F show the FSK page"
            )
        return None

    def as_dict(self) -> dict:
        return {
            "ok": not self.differences,
            "lora_mode": self.lora_mode,
            "note": self.note,
            "differences": len(self.differences),
            "registers": [r.as_dict() for r in self.rows],
        }


def declared_fields() -> dict[int, list[tuple[str, Field]]]:
    """Every bit field declared in gateway.radio.regs, by register, highest bit first."""
    out: dict[int, list[tuple[str, Field]]] = {}
    for name, value in vars(regs).items():
        if isinstance(value, Field):
            out.setdefault(int(value.reg), []).append((name, value))
    for fields in out.values():
        fields.sort(key=lambda nf: -nf[1].shift)
    return out


def dumped_registers() -> list[Reg]:
    """The LoRa-page registers in address order (the FIFO is skipped: reading it moves its pointer)."""
    return sorted((r for r in Reg if r != Reg.FIFO), key=int)


def read_registers(spi: SpiPort) -> dict[int, int]:
    """One read transaction per register (no bursts: they would run through the FIFO at 0x00)."""
    return {int(r): spi.transfer([int(r) & regs.ADDRESS_MASK, 0])[1] for r in dumped_registers()}


def expected_registers(config: LoRaConfig) -> dict[int, int]:
    """What the driver leaves in a chip after ``begin(receive=True)`` with ``config`` (emulated reference)."""
    sim = RadioSim(nodes=0, config=config)
    try:
        return read_registers(sim.gateway.spi)
    finally:
        sim.close()


def compared(reg: int, config: LoRaConfig) -> bool:
    if reg in regs.READ_ONLY_LORA or reg in VOLATILE:
        return False
    # the driver rewrites PayloadLength before each transmission; it only matters with implicit headers
    return not (reg == Reg.PAYLOAD_LENGTH and not config.implicit_header)


def dump(spi: SpiPort, config: LoRaConfig) -> RegisterDump:
    actual = read_registers(spi)
    expected = expected_registers(config)
    fields = declared_fields()
    rows = []
    for reg in dumped_registers():
        raw = actual[int(reg)]
        exp = expected[int(reg)] if compared(reg, config) else None
        values = tuple(
            FieldValue(
                name,
                f.get(raw),
                None if exp is None else f.get(exp),
                exp is not None and f.get(raw) != f.get(exp),
            )
            for name, f in fields.get(int(reg), [])
        )
        rows.append(RegisterRow(int(reg), reg.name, raw, exp, values))
    lora = bool(regs.LONG_RANGE_MODE.get(actual[Reg.OP_MODE]))
    return RegisterDump(tuple(rows), lora)


def read_dump(rig: RadioRig) -> RegisterDump:
    """The chip's registers beside what the driver would have written for the rig's settings."""
    spi = rig.make_spi(rig.spi_speed_hz)
    spi.open()
    try:
        version = spi.transfer([regs.Reg.VERSION, 0])[1]
        if version != regs.CHIP_VERSION:
            raise HardwareError(f"no SX1276 answers (RegVersion reads 0x{version:02X})", "no_chip")
        return dump(spi, rig.lora)
    finally:
        spi.close()


def register_dump(cfg: Config) -> dict:
    """``diag regs --json`` for the configured radio (the support bundle includes it)."""
    with open_rig(cfg, with_nodes=False, begin=True) as rig:
        return read_dump(rig).as_dict()

