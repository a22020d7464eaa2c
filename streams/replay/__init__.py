"""Backtests on the engine over a time range of the input topics, with reports and plots."""
