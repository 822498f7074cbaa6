"""Hardware access: SPI port, GPIO lines, clocks. The only importers of spidev / RPi.GPIO / gpiod."""
