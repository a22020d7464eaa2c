"""The id grammar: one rule for the parser and the owner registry, and no internal keys."""

from __future__ import annotations

import sys
import unicodedata

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from streams.contract.events import ground_truth_from_dict, parse_predictions
from streams.contract.ids import MAX_ID_LENGTH, id_problem, is_valid_id
from streams.errors import InvalidOwner
from streams.store.owners import Owner

RECORD_MS = 1_795_000_000_000
REFUSED = ("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp")  # the documented categories

good_chars = st.characters(blacklist_categories=REFUSED)
bad_chars = st.characters(whitelist_categories=REFUSED) | st.sampled_from(" \t\n\r\x00\x85\u200b")


@st.composite
def candidate_ids(draw: st.DrawFn) -> str:
    """Ids near the boundary: valid ones, valid ones with one bad character, any text,
    and lengths around the limit."""
    kind = draw(st.sampled_from(["valid", "one_bad", "any", "long"]))
    if kind == "any":
        return draw(st.text(max_size=40))
    if kind == "long":
        return draw(st.text(good_chars, min_size=MAX_ID_LENGTH - 2, max_size=MAX_ID_LENGTH + 2))
    text = draw(st.text(good_chars, min_size=1, max_size=30))
    if kind == "one_bad":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(bad_chars) + text[at:]
    return text


def _by_categories(value: str) -> bool:
    return 0 < len(value) <= MAX_ID_LENGTH and not any(
        unicodedata.category(c) in REFUSED for c in value
    )


def test_fast_check_equals_the_categories_on_every_code_point() -> None:
    wrong = [
        f"U+{cp:04X}"
        for cp in range(sys.maxunicode + 1)
        if is_valid_id(chr(cp)) != (unicodedata.category(chr(cp)) not in REFUSED)
    ]
    assert wrong == []


@given(st.text(max_size=300) | candidate_ids())
@example("fraud eu")
@example("fraud\u3000eu")  # ideographic space
@example("fraud\u2028")  # line separator
@example("\u200bfraud")  # zero width space
@example("\u202efraud")  # right-to-left override
@example("fraud\x85")  # next line, a C1 control
def test_grammar_refuses_controls_whitespace_and_format_characters(value: str) -> None:
    valid = is_valid_id(value)
    assert valid == _by_categories(value)
    if valid:
        assert not any(c.isspace() for c in value)
        assert not any(unicodedata.category(c)[0] in "CZ" for c in value)


@given(candidate_ids())
def test_id_problem_explains_exactly_the_refused_ids(value: str) -> None:
    problem = id_problem(value)
    assert (problem is None) == is_valid_id(value)
    if problem is not None and 0 < len(value) <= MAX_ID_LENGTH:
        first = next(i for i, c in enumerate(value) if not is_valid_id(c))
        assert f"U+{ord(value[first]):04X}" in problem
        assert f"position {first}" in problem


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "1 to 256 characters long, got 0"),
        ("m" * 257, "got 257"),
        ("a b", "whitespace, got U+0020 SPACE at position 1"),
        ("a\tb", "whitespace (a control character), got U+0009"),
        ("\x00watermark", "control character, got U+0000 at position 0"),
        ("a\u200b", "format (invisible) character, got U+200B ZERO WIDTH SPACE"),
        ("a\u2029", "paragraph separator"),
        ("\ue000", "private-use"),
    ],
)
def test_id_problem_names_the_character(value: str, says: str) -> None:
    assert says in (id_problem(value) or "")


@given(st.text(max_size=40))
def test_no_id_can_be_an_internal_state_key(tail: str) -> None:
    # the worker's internal keys (event-time watermarks, offsets) start with NUL
    key = "\x00" + tail
    assert not is_valid_id(key)
    event = {"prediction_id": key, "model_id": key, "prediction": 1}
    records, rejected = parse_predictions(orjson.dumps(event), record_timestamp_ms=RECORD_MS)
    assert records == [] and [r.reason for r in rejected] == ["invalid_id"]


def _worker_accepts_model(model_id: str) -> bool:
    event = {"prediction_id": "p-1", "model_id": model_id, "prediction": 1}
    records, _ = parse_predictions(orjson.dumps(event), record_timestamp_ms=RECORD_MS)
    return bool(records)


def _worker_accepts_prediction_id(prediction_id: str) -> bool:
    try:
        ground_truth_from_dict({"prediction_id": prediction_id, "label": 1}, RECORD_MS)
    except ValueError:
        return False
    return True


def _registry_accepts(model_id: str) -> bool:
    try:
        owner = Owner.from_specs(
            model_id,
            owner="team-fraud",
            channels=["email:oncall@example.com"],
            runbook="https://wiki.example.com/runbooks/fraud",
            updated_at_ms=0,
        )
    except InvalidOwner as exc:
        assert [field for _, field, _ in exc.problems] == ["model_id"]
        return False
    assert Owner.from_json(owner.to_json()) == owner  # a stored record reads back too
    return True


@given(candidate_ids())
@example("fraud-eu")
@example("fraud eu")
@example("m" * MAX_ID_LENGTH)
@example("m" * (MAX_ID_LENGTH + 1))
def test_worker_and_owner_registry_accept_exactly_the_same_ids(value: str) -> None:
    worker = _worker_accepts_model(value)
    assert worker == _registry_accepts(value)
    assert worker == _worker_accepts_prediction_id(value) == is_valid_id(value)
