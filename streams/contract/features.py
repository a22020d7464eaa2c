"""The optional ``features`` of a prediction event, normalised and bounded.

Producers choose the features, so they are hostile input like any other field: a 100,000-key
object, NaN, nested documents, a 900 KB string. Features travel on inside internal messages
and reach per-model detectors (:mod:`detectors.features`), so each event keeps at most
:data:`MAX_FEATURES` keys, names of at most :data:`MAX_FEATURE_NAME` printable characters,
and values that are:

- finite numbers (ints and floats, as sent),
- strings (categories), cut to :data:`MAX_CATEGORY_LENGTH` characters,
- booleans (categories too),
- ``None`` for null, and for a number that is not finite (NaN, infinity): a missing value,
- ``{}`` or ``[]`` for an object or an array: the key keeps its type for schema tracking,
  but no value.

Everything not kept as sent (a key dropped, a value cut or emptied) is counted, and the
join step adds that count to ``features_cut`` in ``wk:stats``. Normalising is idempotent,
so re-reading a normalised mapping from an internal topic gives it back unchanged; and when
nothing needs changing the mapping is returned as it is (no copy on the hot path).
"""

from __future__ import annotations

import math
from typing import Any, Final

__all__ = [
    "MAX_CATEGORY_LENGTH",
    "MAX_FEATURES",
    "MAX_FEATURE_NAME",
    "FeatureValue",
    "Features",
    "normalise_features",
]

MAX_FEATURES: Final = 64
"""Keys kept per event, in the event's order; the rest are dropped and counted."""

MAX_FEATURE_NAME: Final = 128
"""Longest feature name kept: names label alerts."""

MAX_CATEGORY_LENGTH: Final = 64
"""Longest category kept; a longer string is cut to this (and counted)."""

FeatureValue = float | int | str | bool | dict[str, Any] | list[Any] | None
Features = dict[str, FeatureValue]

_OBJECT: Final[dict[str, Any]] = {}
_ARRAY: Final[list[Any]] = []
_isfinite = math.isfinite
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def _value(value: Any) -> tuple[FeatureValue, bool]:
    """(the value kept, whether it was kept as sent)."""
    kind = type(value)
    if kind is float:
        return (value, True) if _isfinite(value) else (None, False)
    if kind is str:
        if len(value) <= MAX_CATEGORY_LENGTH:
            return value, True
        return value[:MAX_CATEGORY_LENGTH], False
    if kind is bool or value is None:
        return value, True
    if kind is int:
        if _INT_MIN <= value <= _INT_MAX:  # what JSON (orjson) reads and writes as an int
            return value, True
        try:
            return float(value), False
        except OverflowError:  # an int of hundreds of digits: a number, but no value
            return None, False
    if kind is dict or kind is list:  # an empty one is kept as it is
        return (value, True) if not value else (_OBJECT if kind is dict else _ARRAY, False)
    # a subclass, or something a Python caller passed: by what it is, else dropped
    if isinstance(value, bool):
        return bool(value), False
    if isinstance(value, int | float):
        return _value(float(value))[0], False
    if isinstance(value, str):
        return _value(str(value))[0], False
    if isinstance(value, dict):
        return _OBJECT, False
    if isinstance(value, list | tuple):
        return _ARRAY, False
    raise TypeError  # the key is dropped


def _name_ok(key: object) -> bool:
    return type(key) is str and 0 < len(key) <= MAX_FEATURE_NAME and key.isprintable()


def normalise_features(features: dict[Any, Any]) -> tuple[Features, int]:
    """``(the normalised mapping, how many keys or values were not kept as sent)``.

    Never raises: whatever a decoded JSON object (or a Python caller's dict) holds, the
    result is bounded by the module's limits."""
    cut = 0
    if len(features) <= MAX_FEATURES:
        for key, value in features.items():
            if not _name_ok(key):
                break
            try:
                if not _value(value)[1]:
                    break
            except (TypeError, ValueError, OverflowError):
                break
        else:
            return features, 0  # the common case: kept as it came
    out: Features = {}
    for key, value in features.items():
        if len(out) >= MAX_FEATURES:
            cut += 1
            continue
        if not _name_ok(key):
            cut += 1
            continue
        try:
            kept, same = _value(value)
        except (TypeError, ValueError, OverflowError):
            cut += 1
            continue
        out[key] = kept
        cut += not same
    return out, cut
