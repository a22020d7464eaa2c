"""The input signals of one model: its features drift, or their schema changes.

Prediction events may carry ``features`` (normalised and bounded by
:mod:`streams.contract.features`). :class:`FeatureWatch` gets them in the canonical order
of the model's prediction stream (:class:`~detectors.signals.SignalWatch` feeds it) and
derives:

- ``feature_drift``, per feature: a number's values shift (ADWIN on the value in standard
  deviations of the feature's first ``warmup`` values), or the share of categories not
  seen in those values rises (ADWIN on 1 per unseen category). As for prediction_drift,
  each change is measured over the next ``confirm`` values before it is reported, and
  only from ``warning`` on: with dozens of features, the ``info`` noise would multiply.
  A drift is an event: it does not resolve (ack it).
- ``schema_change``: a key present in (almost) every event disappears, a new key appears
  in most events, or a key's values change type. Judged over windows of events, so one
  odd event is not an alert; an upstream rename is one alert listing the key removed and
  the key added.

Everything is decided per event in stream order or by ADWIN (whose decisions do not depend
on how a stream is cut into batches), so live and replay agree to the alert id. Pure and
picklable; memory is bounded by ``max_features`` (drift) and ``max_keys`` (schema), and
values beyond them are counted.
"""

from __future__ import annotations

import math
from typing import Any

from detectors.config import FeatureDriftConfig, SchemaChangeConfig
from detectors.measured import RANK, Measured, MeasuredAdwin, rounded, severity_of
from detectors.signal import Signal

__all__ = ["FeatureRow", "FeatureWatch"]

FeatureRow = tuple[int, int, dict[str, Any] | None]
"""(index in the prediction stream, event ms, the event's features or None)."""

_Z_CLIP = 10.0  # standardised values are bounded, like regression predictions
_BIG = 1e100  # raw values are too, so the warm-up's sums stay finite
_SHOWN = 20  # keys named per list in a schema_change alert
_TYPES: dict[type, str | None] = {
    float: "number",
    int: "number",
    str: "string",
    bool: "boolean",
    dict: "object",
    list: "array",
    type(None): None,  # null: a missing value, not a type
}
_ARTICLE = {"number": "a number", "string": "a string", "boolean": "a boolean",
            "object": "an object", "array": "an array"}  # fmt: skip


def _judge(before: float, after: float) -> str | None:
    return None  # always measured first: ADWIN's first cut understates the shift


class _Feature:
    """One feature's reference and detector (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.kind: str | None = None  # None while warming up, then "number" or "category"
        self.numbers = 0  # warm-up: Welford's running mean and squares of the numbers
        self.mean = 0.0
        self.squares = 0.0
        self.categories = 0
        self.vocabulary: set[str] = set()
        self.scale = 1.0
        self.adwin: MeasuredAdwin | None = None
        # where the feature stands against its reference: the first level measured (0 for
        # a number: the reference mean), and the severity of the distance from it
        self.base: float | None = None
        self.level = "info"

    def feed(
        self, at: list[tuple[int, int]], values: list[Any], c: FeatureDriftConfig
    ) -> list[Signal]:
        start = 0
        if self.kind is None:
            for value in values:
                start += 1
                self._warm(value, c)
                if self.numbers + self.categories >= c.warmup:
                    self._start(c)
                    break
            if self.kind is None or start == len(values):
                return []
        xs: list[float] = []
        xat: list[tuple[int, int]] = []
        if self.kind == "number":
            mean, scale = self.mean, self.scale
            for position in range(start, len(values)):
                v = values[position]
                kind = type(v)
                if kind is float or kind is int:
                    z = (min(max(v, -_BIG), _BIG) - mean) / scale
                    xs.append(_Z_CLIP if z > _Z_CLIP else -_Z_CLIP if z < -_Z_CLIP else z)
                    xat.append(at[position])
        else:
            vocabulary = self.vocabulary
            for position in range(start, len(values)):
                v = values[position]
                kind = type(v)
                if kind is str:
                    xs.append(0.0 if v in vocabulary else 1.0)
                elif kind is bool:
                    xs.append(0.0 if ("true" if v else "false") in vocabulary else 1.0)
                else:
                    continue
                xat.append(at[position])
        if not xs:
            return []
        assert self.adwin is not None
        return self.adwin.feed(xs, xat, _judge, lambda m: self._signal(m, c))

    def _warm(self, value: Any, c: FeatureDriftConfig) -> None:
        kind = type(value)
        if kind is float or kind is int:
            value = min(max(value, -_BIG), _BIG)  # 1e308 squared would be inf, then NaN
            self.numbers += 1
            delta = value - self.mean
            self.mean += delta / self.numbers
            self.squares += delta * (value - self.mean)
        elif kind is str or kind is bool:
            self.categories += 1
            if len(self.vocabulary) < c.max_categories:
                text = value if kind is str else ("true" if value else "false")
                self.vocabulary.add(text)

    def _start(self, c: FeatureDriftConfig) -> None:
        """The reference, from the warm-up: the feature is what most of its values were."""
        if self.numbers >= self.categories:
            self.kind = "number"
            sd = math.sqrt(self.squares / self.numbers)
            self.scale = sd or max(abs(self.mean) * 0.01, 1e-9)
            self.vocabulary = set()
        else:
            self.kind = "category"
        self.adwin = MeasuredAdwin(c.delta, c.confirm)

    def _signal(self, m: Measured, c: FeatureDriftConfig) -> Signal | None:
        """A measured change, reported when it is a shift of ``warning`` size or more, or
        when it takes the feature further from its reference than any level reported (a
        creeping drift of small steps)."""
        size = m.after - m.before
        name = self.name
        number = self.kind == "number"
        if self.base is None:
            self.base = 0.0 if number else m.before
        low, high = (
            (c.warning_std, c.critical_std) if number else (c.warning_shift, c.critical_shift)
        )
        step = severity_of(abs(size) if number else size, low, high)
        far = m.after - self.base
        level = severity_of(abs(far) if number else far, low, high)
        further = RANK[level] > RANK[self.level]
        self.level = level
        if step == "info" and not further:
            return None
        severity = step if RANK[step] >= RANK[level] else level
        if number:
            before = self.mean + m.before * self.scale
            after = self.mean + m.after * self.scale
            return Signal(
                "feature_drift", "adwin", name, "firing",
                "increase" if size > 0 else "decrease", m.index, m.at_ms, severity,
                {"mean": rounded(before), "count": m.n_before},
                {"mean": rounded(after), "count": m.n, "shift_sd": rounded(size),
                 "from_reference_sd": rounded(far)},
                f"feature {name!r} moved from a mean of {before:.4g} to {after:.4g} "
                f"({size:+.2g} standard deviations of its first values, {far:+.2g} from them)",
            )  # fmt: skip
        if size <= 0:
            return None  # fewer unseen categories is no harm
        return Signal(
            "feature_drift", "adwin", name, "firing", "increase", m.index, m.at_ms, severity,
            {"unseen_rate": rounded(m.before), "count": m.n_before},
            {"unseen_rate": rounded(m.after), "count": m.n},
            f"feature {name!r}: {m.after:.1%} of its values are categories not seen in its "
            f"first {c.warmup} (was {m.before:.1%})",
        )  # fmt: skip


Counts = dict[str, dict[str | None, int]]
"""Per key, how many events of a window had it, by the type of its value."""


def _majority(types: dict[str | None, int]) -> tuple[str | None, int, int]:
    """(the most frequent non-null type, its count, the non-null count): ties by name."""
    best: str | None = None
    top = total = 0
    for t, n in types.items():
        if t is None:
            continue
        total += n
        if n > top or (n == top and best is not None and t < best):
            best, top = t, n
    return best, top, total


class _Schema:
    """The keys and value types of a model's features (see the module docstring)."""

    def __init__(self) -> None:
        self.n = 0  # events in the warm-up or the current window
        self.counts: Counts = {}
        self.usual: dict[str, str | None] | None = None  # known key -> type; None: warming
        self.required: set[str] = set()
        self.candidate: tuple[int, Counts] | None = None  # a window that showed a change
        self.keys_dropped = 0

    def see(
        self, index: int, te: int, features: dict[str, Any] | None, c: SchemaChangeConfig
    ) -> Signal | None:
        if features:
            counts = self.counts
            usual = self.usual or {}
            for key, value in features.items():
                types = counts.get(key)
                if types is None:
                    # known keys always count: junk keys must not crowd a required one out
                    if len(counts) >= c.max_keys and key not in usual:
                        self.keys_dropped += 1
                        continue
                    types = counts[key] = {}
                t = _TYPES.get(type(value), "object")
                types[t] = types.get(t, 0) + 1
        self.n += 1
        if self.usual is None:
            if self.n >= c.warmup:
                self._learn(c)
            return None
        if self.n >= c.window:
            return self._judge(index, te, c)
        return None

    def _learn(self, c: SchemaChangeConfig) -> None:
        n, counts = self.n, self.counts
        self.usual = {key: _majority(types)[0] for key, types in counts.items()}
        self.required = {
            k for k, types in counts.items() if sum(types.values()) >= c.min_presence * n
        }
        self.n, self.counts = 0, {}

    def _changes(
        self, n: int, counts: Counts, c: SchemaChangeConfig
    ) -> tuple[list[str], list[str], dict[str, tuple[str, str]]]:
        assert self.usual is not None
        usual = self.usual
        floor = c.share * n
        removed = sorted(k for k in self.required if sum(counts.get(k, {}).values()) < floor)
        added = sorted(
            k for k, types in counts.items() if k not in usual and sum(types.values()) > floor
        )
        retyped: dict[str, tuple[str, str]] = {}
        for key, types in counts.items():
            was = usual.get(key)
            if was is None:
                continue
            now, top, total = _majority(types)
            if now is not None and now != was and total >= 10 and top > c.share * total:
                retyped[key] = (was, now)
        return added, removed, retyped

    def _judge(self, index: int, te: int, c: SchemaChangeConfig) -> Signal | None:
        n, counts = self.n, self.counts
        self.n, self.counts = 0, {}
        self._settle(counts)
        candidate, self.candidate = self.candidate, None
        if candidate is None:
            if any(self._changes(n, counts, c)):
                self.candidate = (n, counts)  # judged again with the next window
            return None
        total = candidate[0] + n
        merged: Counts = {k: dict(types) for k, types in candidate[1].items()}
        for key, types in counts.items():
            into = merged.setdefault(key, {})
            for t, count in types.items():
                into[t] = into.get(t, 0) + count
        added, removed, retyped = self._changes(total, merged, c)
        if not (added or removed or retyped):
            if any(self._changes(n, counts, c)):
                self.candidate = (n, counts)
            return None
        return self._apply(index, te, total, merged, added, removed, retyped, c)

    def _settle(self, counts: Counts) -> None:
        """Keys seen only as null get the type of their first window with values."""
        usual = self.usual
        assert usual is not None
        for key, was in usual.items():
            if was is None and (types := counts.get(key)):
                usual[key] = _majority(types)[0]

    def _apply(
        self,
        index: int,
        te: int,
        total: int,
        merged: Counts,
        added: list[str],
        removed: list[str],
        retyped: dict[str, tuple[str, str]],
        c: SchemaChangeConfig,
    ) -> Signal:
        usual = self.usual
        assert usual is not None
        before = len(usual)
        for key in removed:
            del usual[key]
            self.required.discard(key)
        for key in added[: max(c.max_keys - len(usual), 0)]:
            types = merged[key]
            usual[key] = _majority(types)[0]
            if sum(types.values()) >= c.min_presence * total:
                self.required.add(key)
        for key, (_, now) in retyped.items():
            usual[key] = now
        parts: list[str] = []
        if removed:
            parts.append(f"removed {_names(removed)}")
        if added:
            parts.append(f"added {_names(added)}")
        if retyped:
            shown = sorted(retyped.items())[:_SHOWN]
            parts.append(
                "; ".join(f"{k!r} is now {_ARTICLE[b]} (was {_ARTICLE[a]})" for k, (a, b) in shown)
                + (f" and {len(retyped) - _SHOWN} more retyped" if len(retyped) > _SHOWN else "")
            )
        return Signal(
            "schema_change", "window", "keys", "firing", None, index, te,
            "critical" if removed or retyped else "warning",
            {"keys": before, "count": total},
            {
                "keys": len(usual),
                "added": added[:_SHOWN],
                "removed": removed[:_SHOWN],
                "retyped": {k: f"{a} -> {b}" for k, (a, b) in sorted(retyped.items())[:_SHOWN]},
            },
            f"the features changed over the last {total} events: " + "; ".join(parts),
        )  # fmt: skip


def _names(keys: list[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:_SHOWN])
    return shown + (f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")


class FeatureWatch:
    """``feature_drift`` and ``schema_change`` of one model; see the module docstring."""

    def __init__(self, drift: FeatureDriftConfig, schema: SchemaChangeConfig) -> None:
        self.drift = drift
        self.schema_config = schema
        self.features: dict[str, _Feature] = {}  # watched, at most drift.max_features
        self.features_dropped = 0  # values of features beyond the cap
        self.schema = _Schema() if schema.enabled else None

    @property
    def keys_dropped(self) -> int:
        """Values of keys beyond the schema's ``max_keys`` in a window."""
        return self.schema.keys_dropped if self.schema is not None else 0

    def feed(self, rows: list[FeatureRow]) -> list[Signal]:
        """Every valid prediction event since the first with features, in canonical order
        (``None``: an event without features)."""
        out: list[Signal] = []
        schema = self.schema
        sc = self.schema_config
        drift = self.drift.enabled
        watched = self.features
        cap = self.drift.max_features
        batch: dict[str, tuple[list[tuple[int, int]], list[Any]]] = {}
        for index, te, features in rows:
            if schema is not None and (found := schema.see(index, te, features, sc)):
                out.append(found)
            if not drift or not features:
                continue
            position = (index, te)
            for key, value in features.items():
                b = batch.get(key)
                if b is None:
                    if key not in watched:
                        if len(watched) >= cap:
                            self.features_dropped += 1
                            continue
                        watched[key] = _Feature(key)
                    b = batch[key] = ([], [])
                b[0].append(position)
                b[1].append(value)
        for key, (at, values) in batch.items():
            out += watched[key].feed(at, values, self.drift)
        out.sort(key=lambda s: (s.index, s.kind, s.signal))
        return out
