"""Node-side tools: C export of the codec and frame format, provisioning over a serial port."""
