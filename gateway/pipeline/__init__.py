"""RxPacket → checked frame → readings → outgoing message, with every drop counted by reason."""
