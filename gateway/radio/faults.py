"""The wiring faults the register-level emulator can play (``[radio.emulator] fault``).

A module of its own so that the configuration can check the name without loading the emulator, which a
service on a real chip never uses."""

from __future__ import annotations

# Wiring faults an installer meets in the field, so that every diagnostic check can fail in a test:
#   chip-absent     every SPI read returns 0x00 (no power reaching the module, or the wrong chip select)
#   chip-unpowered  every SPI read returns 0xFF (MISO floating high: not wired, or the chip unpowered)
#   no-dio0         the DIO0 line never rises (not wired to the configured GPIO); RegIrqFlags still works
#   reset-stuck     the RESET pulse never reaches the chip: registers keep their values
#   spi-marginal    above emulator.SPI_MARGINAL_HZ the chip latches bit 0 of written data wrongly (long wires)
FAULTS = ("none", "chip-absent", "chip-unpowered", "no-dio0", "reset-stuck", "spi-marginal")
