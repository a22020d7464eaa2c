"""Task inference and the per-outcome error."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.exceptions import InvalidOutcome
from detectors.task import error_of, infer_task

FAST = settings(max_examples=200, deadline=None, derandomize=True)

ints = st.integers(-(10**6), 10**6)
floats = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
non_numbers = st.one_of(st.text(max_size=5), st.booleans(), st.none(), st.lists(ints, max_size=2))


@pytest.mark.parametrize(
    ("prediction", "label", "task"),
    [
        (1, 0, "classification"),
        (True, False, "classification"),
        ("cat", "dog", "classification"),
        (1, "1", "classification"),
        (None, 1.5, "classification"),
        (True, 0.5, "classification"),
        (1.0, 0, "regression"),
        (3, 2.5, "regression"),
        (0.5, 0.25, "regression"),
    ],
)
def test_infer_task_examples(prediction: object, label: object, task: str) -> None:
    assert infer_task(prediction, label) == task


@pytest.mark.parametrize(
    ("document", "task"),
    [
        ('{"prediction": 1, "label": 0}', "classification"),
        ('{"prediction": 1e3, "label": 998}', "regression"),
        ('{"prediction": 12.5, "label": 10}', "regression"),
        ('{"prediction": "fraud", "label": "ok"}', "classification"),
        ('{"prediction": true, "label": 1.0}', "classification"),
    ],
)
def test_infer_task_follows_how_json_decodes_numbers(document: str, task: str) -> None:
    event = json.loads(document)
    assert infer_task(event["prediction"], event["label"]) == task


@FAST
@given(prediction=ints, label=ints)
def test_two_integers_are_classes(prediction: int, label: int) -> None:
    assert infer_task(prediction, label) == "classification"


@FAST
@given(number=st.one_of(ints, floats), fraction=floats, swap=st.booleans())
def test_a_float_between_numbers_is_regression(number: float, fraction: float, swap: bool) -> None:
    pair = (fraction, number) if swap else (number, fraction)
    assert infer_task(*pair) == "regression"


@FAST
@given(value=non_numbers, other=st.one_of(ints, floats, non_numbers), swap=st.booleans())
def test_anything_not_a_number_means_classification(
    value: object, other: object, swap: bool
) -> None:
    pair = (other, value) if swap else (value, other)
    assert infer_task(*pair) == "classification"


@FAST
@given(
    prediction=st.one_of(ints, st.text(max_size=3), st.booleans()),
    label=st.one_of(ints, st.text(max_size=3)),
)
def test_classification_error_is_zero_exactly_when_equal(prediction: object, label: object) -> None:
    error = error_of("classification", prediction, label)
    assert error == (0.0 if prediction == label else 1.0)
    assert isinstance(error, float)


@FAST
@given(prediction=st.one_of(ints, floats), label=st.one_of(ints, floats))
def test_regression_error_is_the_absolute_difference(prediction: float, label: float) -> None:
    error = error_of("regression", prediction, label)
    assert error == abs(float(prediction) - float(label))
    assert error == error_of("regression", label, prediction)
    assert error >= 0.0 and isinstance(error, float)


@FAST
@given(value=non_numbers, other=st.one_of(ints, floats), swap=st.booleans())
def test_regression_refuses_what_is_not_a_number(value: object, other: float, swap: bool) -> None:
    pair = (other, value) if swap else (value, other)
    with pytest.raises(ValueError):
        error_of("regression", *pair)


@pytest.mark.parametrize(
    ("prediction", "label"),
    [(math.nan, 1.0), (1.0, math.inf), (-math.inf, 0), (1e308, -1e308), (10**400, 0)],
)
def test_regression_refuses_non_finite_errors(prediction: float, label: float) -> None:
    with pytest.raises(InvalidOutcome, match="finite"):
        error_of("regression", prediction, label)


def test_unknown_task_is_refused() -> None:
    with pytest.raises(ValueError, match="task"):
        error_of("ranking", 1, 1)  # type: ignore[arg-type]
