"""Benchmarks (see README): ratios measured against a baseline in the same run."""
