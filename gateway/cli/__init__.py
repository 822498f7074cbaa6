"""The ``lora-gw`` command line: thin wiring over the package, imported by nothing."""
