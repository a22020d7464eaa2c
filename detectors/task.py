"""What a model's error is: task inference and the per-outcome error.

Classification errors are 0/1 (a wrong label), regression errors the absolute
difference, so every detector sees one number per outcome whatever the model predicts.
"""

from __future__ import annotations

import math

from detectors.config import Task
from detectors.exceptions import InvalidOutcome

__all__ = ["error_of", "infer_task"]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def infer_task(prediction: object, label: object) -> Task:
    """Guess the task from one outcome when it is not configured.

    JSON decodes ``0.5`` and ``1e3`` to ``float`` and ``1`` to ``int``: a float on either
    side of two numbers means regression; integer classes, strings and booleans mean
    classification.
    """
    if (
        _is_number(prediction)
        and _is_number(label)
        and (isinstance(prediction, float) or isinstance(label, float))
    ):
        return "regression"
    return "classification"


def error_of(task: Task, prediction: object, label: object) -> float:
    """The error of one outcome: 0/1 for classification, ``|prediction - label|`` for regression.

    Raises :class:`~detectors.exceptions.InvalidOutcome` (a ``ValueError``) for a regression
    value that is not a finite number, so the caller dead-letters the outcome instead of
    feeding a detector garbage.
    """
    if task == "classification":
        return 0.0 if prediction == label else 1.0
    if task != "regression":
        raise InvalidOutcome(f"task must be 'classification' or 'regression', got {task!r}")
    if not (_is_number(prediction) and _is_number(label)):
        raise InvalidOutcome(
            f"regression needs numeric prediction and label, got {prediction!r} and {label!r}"
        )
    try:
        error = abs(float(prediction) - float(label))  # type: ignore[arg-type]
    except OverflowError:
        error = math.inf
    if not math.isfinite(error):
        raise InvalidOutcome(f"regression error is not finite for {prediction!r} and {label!r}")
    return error
