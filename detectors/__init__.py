"""Pure, deterministic drift detection for Watchkeeper.

Adapters over river's detectors (:class:`Adwin`, :class:`PageHinkley`), the per-model
bank that feeds them one error per outcome (:class:`ModelMonitor`), bounded first for
regression models (:class:`ErrorClipper`), the settings they are built from, and the
task rules that turn a prediction and a label into an error.

Nothing here touches Kafka, Redis, asyncio, the wall clock or unseeded randomness, and
every object pickles: the live stream and a replay run the same code on the same
outcomes and report the same :class:`Change` objects, and a monitor restored from a
changelog continues exactly as the original would have.

Errors (all ``ValueError``)::

    DetectorError
     ├── DetectorSettingsError   a detector setting is unknown, mistyped or out of range
     └── InvalidOutcome          an error value the detectors cannot take
"""

from detectors.adwin import Adwin
from detectors.bank import RECENT_WINDOW, ModelMonitor
from detectors.base import Change, Direction, DriftDetector, Shift
from detectors.clipping import ErrorClipper
from detectors.config import (
    AdwinConfig,
    DetectorSettings,
    ErrorClipConfig,
    MonitorConfig,
    PageHinkleyConfig,
    PageHinkleyMode,
    Task,
    apply_overrides,
    load_detector_settings,
    parse_detector_settings,
)
from detectors.exceptions import DetectorError, DetectorSettingsError, InvalidOutcome
from detectors.page_hinkley import PageHinkley
from detectors.registry import DETECTORS, DetectorFactory
from detectors.task import error_of, infer_task

__all__ = [
    "DETECTORS",
    "RECENT_WINDOW",
    "Adwin",
    "AdwinConfig",
    "Change",
    "DetectorError",
    "DetectorFactory",
    "DetectorSettings",
    "DetectorSettingsError",
    "Direction",
    "DriftDetector",
    "ErrorClipConfig",
    "ErrorClipper",
    "InvalidOutcome",
    "ModelMonitor",
    "MonitorConfig",
    "PageHinkley",
    "PageHinkleyConfig",
    "PageHinkleyMode",
    "Shift",
    "Task",
    "apply_overrides",
    "error_of",
    "infer_task",
    "load_detector_settings",
    "parse_detector_settings",
]
