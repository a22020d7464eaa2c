"""Owner confirmation and maintenance periods: validated, backward compatible, and kept
across a replacement by the same owner."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.cli.owners import _confirmer, add_owner_commands
from streams.errors import ConfigError, InvalidOwner
from streams.store.owners import DEFAULT_CONFIRM_EVERY_S, Owner, load_owners_file

EMAIL = "email:fraud-oncall@example.com"
RUNBOOK = "https://wiki.example.com/runbooks/fraud-eu"
DAY_S = 86_400.0


def owner(**extra: Any) -> Owner:
    specs: dict[str, Any] = {
        "owner": "team-fraud",
        "channels": [EMAIL],
        "runbook": RUNBOOK,
        "updated_at_ms": 1_000,
    }
    return Owner.from_specs("fraud-eu", **(specs | extra))


def test_a_record_written_before_the_fields_existed_still_loads_with_the_defaults():
    old = {
        "model_id": "fraud-eu",
        "owner": "team-fraud",
        "channels": [EMAIL],
        "runbook": RUNBOOK,
        "escalate_after_s": None,
        "escalation_channels": [],
        "updated_at_ms": 1_700_000_000_000,
    }
    loaded = Owner.from_json(orjson.dumps(old))
    assert loaded.confirm_every_s == DEFAULT_CONFIRM_EVERY_S == 90 * DAY_S
    assert (loaded.retrain_every_s, loaded.confirmed_at_ms, loaded.confirmed_by) == (
        None,
        None,
        None,
    )
    assert loaded.confirmed_since_ms == 1_700_000_000_000  # never confirmed: since written


def test_the_new_fields_round_trip_through_json():
    written = owner(confirm_every="30d", retrain_every="1h30m").confirmed(by="ana", at_ms=5_000)
    record = orjson.loads(written.to_json())
    assert (record["confirm_every_s"], record["retrain_every_s"]) == (30 * DAY_S, 5400.0)
    assert (record["confirmed_at_ms"], record["confirmed_by"]) == (5_000, "ana")
    assert Owner.from_json(written.to_json()) == written
    assert written.confirmed_since_ms == 5_000


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"confirm_every": "0s"}, "confirm_every"),
        ({"confirm_every": "soon"}, "confirm_every"),
        ({"confirm_every": -1}, "confirm_every"),
        ({"retrain_every": "0"}, "retrain_every"),
        ({"retrain_every": "30dd"}, "retrain_every"),
        ({"retrain_every": True}, "retrain_every"),
    ],
)
def test_bad_periods_are_refused_naming_the_field(extra: dict[str, Any], field: str):
    with pytest.raises(InvalidOwner) as caught:
        owner(**extra)
    assert [p.field for p in caught.value.problems] == [field]


@pytest.mark.parametrize(
    ("at_ms", "by", "field"),
    [
        (5, None, "confirmed_by"),
        (None, "ana", "confirmed_by"),
        (-1, "ana", "confirmed_at_ms"),
        (True, "ana", "confirmed_at_ms"),
        (5, "  ", "confirmed_by"),
    ],
)
def test_a_confirmation_needs_a_time_and_a_name(at_ms: Any, by: Any, field: str):
    with pytest.raises(InvalidOwner) as caught:
        Owner(**_kwargs(), confirmed_at_ms=at_ms, confirmed_by=by)
    assert field in {p.field for p in caught.value.problems}
    record = orjson.loads(owner().to_json()) | {"confirmed_at_ms": at_ms, "confirmed_by": by}
    with pytest.raises(InvalidOwner, match="invalid owner record"):
        Owner.from_dict(record)


def _kwargs() -> dict[str, Any]:
    o = owner()
    return {
        "model_id": o.model_id,
        "owner": o.owner,
        "channels": o.channels,
        "runbook": o.runbook,
        "updated_at_ms": o.updated_at_ms,
    }


def test_a_confirmer_name_is_trimmed():
    assert owner().confirmed(by="  ana ", at_ms=7).confirmed_by == "ana"


def test_replacing_by_the_same_owner_keeps_the_confirmation_and_a_new_owner_starts_over():
    confirmed = owner().confirmed(by="ana", at_ms=5_000)
    new_channels = owner(channels=["email:other@example.com"], updated_at_ms=9_000)
    kept = new_channels.keeping_confirmation_of(confirmed)
    assert (kept.confirmed_at_ms, kept.confirmed_by) == (5_000, "ana")
    assert kept.channels == new_channels.channels and kept.updated_at_ms == 9_000

    handed_over = owner(owner="team-risk").keeping_confirmation_of(confirmed)
    assert (handed_over.confirmed_at_ms, handed_over.confirmed_by) == (None, None)
    assert owner().keeping_confirmation_of(None).confirmed_at_ms is None
    assert owner().keeping_confirmation_of(owner()).confirmed_at_ms is None


def test_an_owners_file_takes_periods_and_suggests_the_key_on_a_typo(tmp_path: Path):
    path = tmp_path / "owners.yaml"
    path.write_text(
        "owners:\n"
        "  fraud-eu:\n"
        "    owner: team-fraud\n"
        f'    channels: ["{EMAIL}"]\n'
        f"    runbook: {RUNBOOK}\n"
        "    confirm_every: 30d\n"
        "    retrain_every: 14d\n"
        "  churn:\n"
        "    owner: growth\n"
        f'    channels: ["{EMAIL}"]\n'
        f"    runbook: {RUNBOOK}\n"
    )
    fraud, churn = sorted(load_owners_file(path, now_ms=1), key=lambda o: o.model_id != "fraud-eu")
    assert (fraud.confirm_every_s, fraud.retrain_every_s) == (30 * DAY_S, 14 * DAY_S)
    assert (churn.confirm_every_s, churn.retrain_every_s) == (DEFAULT_CONFIRM_EVERY_S, None)

    path.write_text(path.read_text().replace("confirm_every:", "confirm_evry:"))
    with pytest.raises(InvalidOwner, match="did you mean 'confirm_every'"):
        load_owners_file(path)
    path.write_text(path.read_text().replace("confirm_evry: 30d", "confirmed_at_ms: 5"))
    with pytest.raises(InvalidOwner, match="confirmed_at_ms: unknown key"):
        load_owners_file(path)  # a confirmation comes from the command, not a file


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="watchkeeper")
    add_owner_commands(p.add_subparsers(dest="command", required=True))
    return p


def test_the_cli_parses_confirm_and_the_period_flags():
    args = parser().parse_args(["owners", "confirm", "fraud-eu", "--by", "ana"])
    assert (args.owners_command, args.model, args.by) == ("confirm", "fraud-eu", "ana")
    args = parser().parse_args(
        ["owners", "set", "m", "--owner", "o", "--channel", EMAIL, "--runbook", RUNBOOK]
        + ["--confirm-every", "90d", "--retrain-every", "30d"]
    )
    assert (args.confirm_every, args.retrain_every) == ("90d", "30d")


def test_a_confirmation_without_a_name_is_a_clear_error(monkeypatch: pytest.MonkeyPatch):
    assert _confirmer(" ana ") == "ana"
    monkeypatch.setenv("LOGNAME", "bo")
    assert _confirmer(None) == "bo"  # the login name
    with pytest.raises(ConfigError, match="--by must be a non-empty name"):
        _confirmer("  ")
