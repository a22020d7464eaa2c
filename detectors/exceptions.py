"""Exceptions raised by the pure detector code.

    DetectorError (ValueError)
     ├── DetectorSettingsError   a detector setting is unknown, mistyped or out of range
     └── InvalidOutcome          an error value the detectors cannot take (nan, inf, not a number)

Both derive from ``ValueError`` so callers that only know the built-in still catch them;
the stream layer dead-letters ``InvalidOutcome`` and turns ``DetectorSettingsError`` into
a startup failure.
"""

from __future__ import annotations

__all__ = ["DetectorError", "DetectorSettingsError", "InvalidOutcome"]


class DetectorError(ValueError):
    """Root of the errors raised by ``detectors``."""


class DetectorSettingsError(DetectorError):
    """A setting that cannot work; ``key`` is its dotted path, e.g. ``models.fraud.adwin.delta``."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(key, problem)
        self.key = key
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.key}: {self.problem}"


class InvalidOutcome(DetectorError):
    """An outcome whose error cannot be fed to a detector: the caller dead-letters it."""
