"""The long-running gateway: configuration, wiring, threads, signals and sd_notify."""
