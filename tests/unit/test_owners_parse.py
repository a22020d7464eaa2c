"""Owner input is checked before anything reaches Redis: durations, entries, owners files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.contract.ids import is_valid_id
from streams.contract.notification import Channel, parse_channel
from streams.errors import ConfigError, InvalidOwner
from streams.store.owners import Owner, format_duration, load_owners_file, parse_duration

SLACK = "slack:https://hooks.slack.com/services/T/B/X"
PAGERDUTY = "pagerduty:0123456789abcdef0123456789abcdef"
EMAIL = "email:head-of-fraud@example.com"
RUNBOOK = "https://wiki.example.com/runbooks/fraud-eu"


# --- durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("30m", 1800.0),
        ("2h", 7200.0),
        ("1d", 86_400.0),
        ("1h30m", 5400.0),
        ("1d2h3m4s", 93_784.0),
        ("90", 90.0),
        ("1.5", 1.5),
        ("1.5h", 5400.0),
        (" 2H ", 7200.0),
        ("0s", 0.0),
    ],
)
def test_durations_parse(text: str, seconds: float):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "-5",
        "-5m",
        "5x",
        "m",
        "30mm",
        "5m1h",
        "1h 30m",
        "nan",
        "inf",
        "1e3",
        "1.h",
        "9" * 400,
    ],
)
def test_garbage_durations_are_refused_with_the_text_quoted(text: str):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


UNIT_S = {"d": 86_400, "h": 3600, "m": 60, "s": 1}


@given(st.dictionaries(st.sampled_from("dhms"), st.integers(0, 10_000), min_size=1))
def test_formatted_unit_combinations_parse_back(counts: dict[str, int]) -> None:
    text = "".join(f"{counts[unit]}{unit}" for unit in "dhms" if unit in counts)
    assert parse_duration(text) == sum(n * UNIT_S[unit] for unit, n in counts.items())


@given(st.integers(0, 10**9))
def test_format_duration_is_the_inverse(seconds: int) -> None:
    text = format_duration(seconds)
    assert parse_duration(text) == seconds


# --- Owner validation ---------------------------------------------------------------------


def owner_kwargs(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "model_id": "fraud-eu",
        "owner": "team-fraud",
        "channels": (parse_channel(SLACK), parse_channel(PAGERDUTY)),
        "runbook": RUNBOOK,
        "escalate_after_s": 1800.0,
        "escalation_channels": (parse_channel(EMAIL),),
        "updated_at_ms": 1_700_000_000_000,
    }
    kwargs.update(overrides)
    return kwargs


def test_a_valid_owner_is_normalised():
    owner = Owner(**owner_kwargs(channels=[parse_channel(SLACK)] * 2, escalate_after_s=60))
    assert owner.channels == (Channel("slack", SLACK.removeprefix("slack:")),)
    assert owner.escalate_after_s == 60.0 and isinstance(owner.escalate_after_s, float)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"model_id": ""}, "model_id"),
        ({"model_id": "fraud eu"}, "model_id"),
        ({"model_id": "\x00watermark"}, "model_id"),
        ({"model_id": "fraud\u200beu"}, "model_id"),
        ({"model_id": "m" * 257}, "model_id"),
        ({"owner": ""}, "owner"),
        ({"owner": "   "}, "owner"),
        ({"channels": ()}, "channels"),
        ({"channels": (Channel("slack", "not-a-url"),)}, "channels[0]"),
        ({"runbook": ""}, "runbook"),
        ({"runbook": "ftp://wiki.example.com/x"}, "runbook"),
        ({"runbook": "wiki.example.com/x"}, "runbook"),
        ({"escalate_after_s": 0}, "escalate_after_s"),
        ({"escalate_after_s": -5.0}, "escalate_after_s"),
        ({"escalate_after_s": float("nan")}, "escalate_after_s"),
        ({"escalate_after_s": "30m"}, "escalate_after_s"),
        ({"escalation_channels": ()}, "escalation_channels"),
        ({"escalate_after_s": None}, "escalate_after_s"),
        ({"updated_at_ms": -1}, "updated_at_ms"),
    ],
)
def test_each_owner_rule_can_fail_and_names_model_and_field(overrides: dict[str, Any], field: str):
    kwargs = owner_kwargs(**overrides)
    with pytest.raises(InvalidOwner) as caught:
        Owner(**kwargs)
    assert f"{field}:" in str(caught.value)
    assert repr(kwargs["model_id"]) in str(caught.value)
    assert field in {p.field for p in caught.value.problems}


def test_escalation_rules_hold_in_both_directions():
    without_channels = owner_kwargs(escalation_channels=())
    with pytest.raises(InvalidOwner, match="escalation_channels: required when escalate_after"):
        Owner(**without_channels)
    without_delay = owner_kwargs(escalate_after_s=None)
    with pytest.raises(InvalidOwner, match="escalate_after_s: required when escalation_channels"):
        Owner(**without_delay)
    assert (
        Owner(**owner_kwargs(escalate_after_s=None, escalation_channels=())).escalate_after_s
        is None
    )


def test_invalid_owner_is_a_config_error_and_a_value_error():
    with pytest.raises(InvalidOwner) as caught:
        Owner(**owner_kwargs(owner=""))
    assert isinstance(caught.value, ConfigError) and isinstance(caught.value, ValueError)


def test_from_specs_reports_every_problem_at_once():
    with pytest.raises(InvalidOwner) as caught:
        Owner.from_specs(
            "fraud-eu",
            owner="",
            channels=[SLACK, "sms:+4412345"],
            runbook="nope",
            escalate_after="soon",
            escalation_channels=[EMAIL],
        )
    fields = [p.field for p in caught.value.problems]
    assert fields == ["owner", "channels[1]", "runbook", "escalate_after"]
    assert "sms:+4412345" in str(caught.value) and "'soon'" in str(caught.value)


def test_from_specs_parses_channels_and_durations():
    owner = Owner.from_specs(
        "fraud-eu",
        owner=" team-fraud ",
        channels=[SLACK],
        runbook=RUNBOOK,
        escalate_after="1h30m",
        escalation_channels=[EMAIL],
        updated_at_ms=5,
    )
    assert (owner.owner, owner.escalate_after_s, owner.updated_at_ms) == ("team-fraud", 5400.0, 5)
    assert [str(c) for c in owner.escalation_channels] == [EMAIL]


# --- JSON round trip ----------------------------------------------------------------------

_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=20)
_channel = st.one_of(
    st.builds(lambda u, d: f"email:{u}@{d}.example", _word, _word),
    st.builds(
        lambda k: f"pagerduty:{k}", st.text(alphabet="abcdef0123456789", min_size=32, max_size=32)
    ),
    st.builds(lambda p: f"slack:https://hooks.slack.com/services/{p}", _word),
    st.builds(lambda p: f"webhook:http://hooks.example.com/{p}", _word),
).map(parse_channel)


@st.composite
def owners(draw: st.DrawFn) -> Owner:
    escalate = draw(st.one_of(st.none(), st.floats(0.001, 1e9, allow_nan=False)))
    return Owner(
        model_id=draw(st.text(min_size=1, max_size=40).filter(is_valid_id)),
        owner=draw(st.text(min_size=1, max_size=40).filter(str.strip)),
        channels=tuple(draw(st.lists(_channel, min_size=1, max_size=4))),
        runbook=draw(st.builds(lambda p: f"https://wiki.example.com/{p}", _word)),
        escalate_after_s=escalate,
        escalation_channels=()
        if escalate is None
        else tuple(draw(st.lists(_channel, min_size=1, max_size=3))),
        updated_at_ms=draw(st.integers(0, 2**53)),
    )


@given(owners())
def test_json_round_trip(owner: Owner) -> None:
    assert Owner.from_json(owner.to_json()) == owner
    assert Owner.from_json(owner.to_json().decode()) == owner


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[1, 2]", b'{"model_id": "m", "owner": "x"}', b'{"model_id": "m"}'],
)
def test_corrupt_records_are_invalid_owners(raw: bytes):
    with pytest.raises(InvalidOwner, match="invalid owner record"):
        Owner.from_json(raw)


def test_records_from_a_newer_version_with_extra_fields_still_read():
    owner = Owner(**owner_kwargs())
    record = owner.to_dict() | {"added_later": True}
    assert Owner.from_dict(record) == owner


# --- owners files -------------------------------------------------------------------------

GOOD = f"""
owners:
  fraud-eu:
    owner: team-fraud
    channels: ["{SLACK}", "{PAGERDUTY}"]
    runbook: {RUNBOOK}
    escalate_after: 30m
    escalation_channels: ["{EMAIL}"]
  churn:
    owner: growth
    channels: ["email:growth@example.com"]
    runbook: http://wiki.example.com/churn
  "2024":
    owner: archive
    channels: ["{EMAIL}"]
    runbook: {RUNBOOK}
    escalate_after: 600
    escalation_channels: ["{EMAIL}"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "owners.yaml"
    path.write_text(text)
    return path


def test_a_good_file_loads_every_owner(tmp_path: Path):
    owners = load_owners_file(write(tmp_path, GOOD), now_ms=42)
    assert [o.model_id for o in owners] == ["fraud-eu", "churn", "2024"]
    fraud, churn, archive = owners
    assert [str(c) for c in fraud.channels] == [SLACK, PAGERDUTY]
    assert (fraud.escalate_after_s, [str(c) for c in fraud.escalation_channels]) == (
        1800.0,
        [EMAIL],
    )
    assert (churn.escalate_after_s, churn.escalation_channels) == (None, ())
    assert archive.escalate_after_s == 600.0
    assert {o.updated_at_ms for o in owners} == {42}


def entry_file(body: str, model: str = "fraud-eu") -> str:
    indented = "\n".join(f"    {line}" for line in body.strip().splitlines())
    return f"owners:\n  {model}:\n{indented}\n"


BASE = f'owner: team-fraud\nchannels: ["{SLACK}"]\nrunbook: {RUNBOOK}\n'


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        (f'channels: ["{SLACK}"]\nrunbook: {RUNBOOK}', "owner", "required"),
        ("owner: ''\n" + BASE.split("\n", 1)[1], "owner", "non-empty"),
        ("owner: [a, b]\n" + BASE.split("\n", 1)[1], "owner", "non-empty"),
        (f"owner: x\nrunbook: {RUNBOOK}", "channels", "required"),
        (f"owner: x\nchannels: []\nrunbook: {RUNBOOK}", "channels", "required"),
        (f"owner: x\nchannels: {SLACK}\nrunbook: {RUNBOOK}", "channels", "must be a list"),
        (f'owner: x\nchannels: ["{SLACK}", "sms:123"]\nrunbook: {RUNBOOK}', "channels[1]", "KIND"),
        (f'owner: x\nchannels: ["{SLACK}", 7]\nrunbook: {RUNBOOK}', "channels[1]", "string"),
        (f'owner: x\nchannels: ["pagerduty:short"]\nrunbook: {RUNBOOK}', "channels[0]", "32"),
        (f'owner: x\nchannels: ["{SLACK}"]', "runbook", "required"),
        (f'owner: x\nchannels: ["{SLACK}"]\nrunbook: wiki/page', "runbook", "http(s) URL"),
        (BASE + "escalate_after: 30m", "escalation_channels", "required when escalate_after"),
        (BASE + f'escalation_channels: ["{EMAIL}"]', "escalate_after", "required when"),
        (
            BASE + f'escalate_after: soon\nescalation_channels: ["{EMAIL}"]',
            "escalate_after",
            "'soon'",
        ),
        (
            BASE + f'escalate_after: 0s\nescalation_channels: ["{EMAIL}"]',
            "escalate_after",
            "positive",
        ),
        (
            BASE + f'escalate_after: -60\nescalation_channels: ["{EMAIL}"]',
            "escalate_after",
            "positive",
        ),
        (
            BASE + f'escalate_after: true\nescalation_channels: ["{EMAIL}"]',
            "escalate_after",
            "duration",
        ),
        (
            BASE + 'escalate_after: 1m\nescalation_channels: ["bad"]',
            "escalation_channels[0]",
            "KIND",
        ),
        (BASE + "escalate_afer: 30m", "escalate_afer", "did you mean 'escalate_after'"),
        (BASE + "pager: yes", "pager", "unknown key"),
    ],
)
def test_each_kind_of_bad_entry_names_model_field_and_reason(
    tmp_path: Path, body: str, field: str, reason: str
):
    with pytest.raises(InvalidOwner) as caught:
        load_owners_file(write(tmp_path, entry_file(body)))
    problems = [p for p in caught.value.problems if p.field == field]
    assert problems and problems[0].model_id == "fraud-eu", caught.value.problems
    assert reason in problems[0].reason
    assert f"model 'fraud-eu': {field}: " in str(caught.value)


@pytest.mark.parametrize(
    ("text", "field", "model"),
    [
        ("owners:\n  fraud-eu: just-a-string\n", "entry", "fraud-eu"),
        (entry_file(BASE, model="fraud eu"), "model_id", "fraud eu"),
        (entry_file(BASE, model="123"), "model_id", "123"),
        (entry_file(BASE, model="on"), "model_id", "True"),
        ("owners: [a, b]\n", "owners", None),
        ("owners: {}\nowner: x\n", "owner", None),
    ],
)
def test_structural_problems_are_reported(tmp_path: Path, text: str, field: str, model: str | None):
    with pytest.raises(InvalidOwner) as caught:
        load_owners_file(write(tmp_path, text))
    assert (model, field) in {(p.model_id, p.field) for p in caught.value.problems}


def test_all_problems_of_all_entries_are_reported_together(tmp_path: Path):
    text = GOOD + (
        '  bad-one:\n    owner: x\n    channels: ["sms:1"]\n    runbook: nope\n'
        "  bad-two:\n    owner: y\n    chanels: []\n"
    )
    with pytest.raises(InvalidOwner) as caught:
        load_owners_file(write(tmp_path, text))
    found = {(p.model_id, p.field) for p in caught.value.problems}
    assert found == {
        ("bad-one", "channels[0]"),
        ("bad-one", "runbook"),
        ("bad-two", "chanels"),
        ("bad-two", "channels"),
        ("bad-two", "runbook"),
    }
    message = str(caught.value)
    assert message.startswith(f"owners file {tmp_path / 'owners.yaml'} (5 problems):")
    assert "did you mean 'channels'?" in message


def test_a_model_listed_twice_is_an_error_not_a_silent_override(tmp_path: Path):
    text = GOOD + f'  churn:\n    owner: other\n    channels: ["{EMAIL}"]\n    runbook: {RUNBOOK}\n'
    with pytest.raises(InvalidOwner, match="duplicate key 'churn'"):
        load_owners_file(write(tmp_path, text))


def test_missing_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(InvalidOwner, match=r"nope\.yaml: not found"):
        load_owners_file(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"owners:\n  a: [unclosed\n", "invalid YAML"),
        (b"\xff\xfe owners", "cannot be read"),
        (b"- just\n- a list\n", "top-level 'owners:'"),
        (b"", "top-level 'owners:'"),
    ],
)
def test_unreadable_files_are_clear_errors(tmp_path: Path, content: bytes, match: str):
    path = tmp_path / "owners.yaml"
    path.write_bytes(content)
    with pytest.raises(InvalidOwner, match=match) as caught:
        load_owners_file(path)
    assert str(path) in str(caught.value)


def test_an_empty_owners_mapping_loads_nothing(tmp_path: Path):
    assert load_owners_file(write(tmp_path, "owners:\n")) == []
