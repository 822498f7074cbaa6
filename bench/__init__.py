"""Benchmarks (run by hand; each prints JSON) and the baselines they measure ours against."""
