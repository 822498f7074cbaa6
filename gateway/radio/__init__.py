"""The radio layer: SX1276 registers, driver, time on air, emulator and virtual air."""
