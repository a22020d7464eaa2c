"""Detector factories by name: adding a detector is one file plus one entry here.

The order of :data:`DETECTORS` is the order in which a monitor feeds its detectors and
reports their changes, so it is part of the replay contract: append, do not reorder.
"""

from __future__ import annotations

from collections.abc import Callable

from detectors.adwin import Adwin
from detectors.base import DriftDetector
from detectors.config import MonitorConfig
from detectors.page_hinkley import PageHinkley

__all__ = ["DETECTORS", "DetectorFactory"]

DetectorFactory = Callable[[MonitorConfig], DriftDetector | None]


def _adwin(config: MonitorConfig) -> DriftDetector | None:
    return Adwin(config.adwin) if config.adwin.enabled else None


def _page_hinkley(config: MonitorConfig) -> DriftDetector | None:
    return PageHinkley(config.page_hinkley) if config.page_hinkley.enabled else None


DETECTORS: dict[str, DetectorFactory] = {
    "adwin": _adwin,
    "page_hinkley": _page_hinkley,
}
