"""Benchmarks (``make bench``): speed as ratios measured in the same run, never asserted in tests."""
