"""Benchmarks of riskbrain's training path against plain baselines: ``python -m benchmarks.run``."""
