"""The cap on models per join partition: a model-based property against a plain model
of the rule, and the rule surviving a restart mid-stream."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.engine.admission import ModelAdmission

RETENTION = 16_000  # slices of 1,000 ms

events = st.lists(
    st.tuples(st.sampled_from([f"m{i}" for i in range(12)]), st.integers(0, 3_000)),
    max_size=300,
).map(lambda xs: [(m, i * 100 + jitter) for i, (m, jitter) in enumerate(xs)])


def _run(adm: ModelAdmission, evs: list[tuple[str, int]]) -> list[bool]:
    return [adm.admit(m, t) for m, t in evs]


@given(events, st.integers(1, 6))
def test_never_more_than_the_limit_and_admitted_models_stay_admitted(
    evs: list[tuple[str, int]], limit: int
) -> None:
    seen: dict[str, int] = {}
    adm = ModelAdmission(seen, {}, limit=limit, retention_ms=RETENTION)
    admitted: set[str] = set()
    for m, t in evs:
        had_place = m in seen
        ok = adm.admit(m, t)
        assert len(seen) <= limit and len(adm) == len(seen)
        if had_place:
            assert ok  # a model with a place keeps it
        if ok:
            admitted.add(m)
            assert m in seen
        else:
            assert m not in seen and len(seen) == limit


@given(events, st.integers(1, 6), st.integers(0, 300))
def test_a_restart_anywhere_decides_as_the_uninterrupted_run(
    evs: list[tuple[str, int]], limit: int, cut: int
) -> None:
    """State is ``seen`` and ``meta`` only (what the worker checkpoints)."""
    whole = _run(ModelAdmission({}, {}, limit=limit, retention_ms=RETENTION), evs)
    seen: dict[str, int] = {}
    meta: dict[str, int] = {}
    first = _run(ModelAdmission(seen, meta, limit=limit, retention_ms=RETENTION), evs[:cut])
    again = ModelAdmission(dict(seen), dict(meta), limit=limit, retention_ms=RETENTION)
    assert first + _run(again, evs[cut:]) == whole


def test_a_model_unseen_for_the_retention_gives_its_place_to_a_new_one() -> None:
    adm = ModelAdmission({}, {}, limit=2, retention_ms=RETENTION)
    assert adm.admit("a", 0) and adm.admit("b", 0)
    assert not adm.admit("c", 1_000)  # full, nobody stale
    assert adm.admit("b", RETENTION + 2_000)  # b is seen again, a is not
    assert adm.admit("c", RETENTION + 2_000)  # a is stale: c takes its place
    assert not adm.admit("a", RETENTION + 2_500)  # and a is now the newcomer
    assert set(adm.seen) == {"b", "c"}
