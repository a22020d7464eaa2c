"""streams.redact: generated secrets embedded in URLs, headers and bodies never survive
redaction, and what is not secret (host, channel kind, status) stays readable."""

from __future__ import annotations

import logging
import string

import orjson
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from streams.contract.notification import InvalidChannel, parse_channel
from streams.redact import MASK, RedactingFilter, redact

SECRET_ALPHABET = string.ascii_letters + string.digits + "-_.~%"
# words of the texts below: a secret that is one of them (or holds one) would be found
# in the redacted text for a reason that has nothing to do with redaction
VOCABULARY = ("password", "passwd", "secret", "token", "signature", "authorization",
              "cookie", "bearer", "basic", "services", "hooks", "slack", "webhook",
              "pagerduty", "routing_key", "event_action", "trigger", "login", "failed",
              "rejected", "answered", "https")  # fmt: skip


def _secret_like(s: str) -> bool:
    low = s.lower()
    return any(c.isalnum() for c in s) and not any(w in low or low in w for w in VOCABULARY)


secrets = st.text(SECRET_ALPHABET, min_size=8, max_size=48).filter(_secret_like)
hosts = st.from_regex(r"[a-z]{3,12}\.(com|net|org|io)", fullmatch=True)
kinds = st.sampled_from(["webhook", "slack"])
noise = st.text(string.ascii_letters + string.digits + " :/()[],.-", max_size=30)
PARAMS = ["token", "access_token", "key", "api_key", "secret", "client_secret", "password",
          "passwd", "sig", "signature", "auth"]  # fmt: skip


def check(text: str, secret: str, *keep: str) -> str:
    """The property: ``secret`` is gone, ``keep`` all stayed, and redaction is idempotent."""
    for part in keep:
        assume(secret not in part)
    out = redact(text)
    assert secret not in out, out
    for part in keep:
        assert part in out, (part, out)
    assert redact(out) == out
    return out


def around(prefix: str, text: str, suffix: str, secret: str) -> str:
    """``text`` between noise (which must not happen to hold the secret itself)."""
    assume(secret not in prefix and secret not in suffix)
    return f"{prefix} {text} {suffix}"


@given(secrets, hosts, kinds, noise, noise)
def test_userinfo_of_a_url_is_masked(
    secret: str, host: str, kind: str, pre: str, post: str
) -> None:
    spec = f"{kind}:https://svc-user:{secret}@{host}/hooks/wk"
    out = check(around(pre, spec, post, secret), secret, host, kind, "/hooks/wk")
    assert f"https://{MASK}@{host}" in out


@given(secrets, hosts, kinds, st.sampled_from(PARAMS), noise)
def test_secret_query_parameters_are_masked(
    secret: str, host: str, kind: str, name: str, pre: str
) -> None:
    url = f"{kind}:https://{host}/hook?team=fraud&{name}={secret}&x=1"
    out = check(around(pre, url, "failed", secret), secret, host, kind, "team=fraud", "x=1")
    assert f"{name}={MASK}" in out


@given(secrets, st.from_regex(r"[A-Z0-9]{6,11}", fullmatch=True), noise)
def test_slack_webhook_tokens_are_masked(secret: str, ids: str, pre: str) -> None:
    url = f"slack:https://hooks.slack.com/services/T{ids}/B{ids}/{secret}"
    check(around(pre, url, "http client error", secret), secret, "slack", "hooks.slack.com")
    # on a receiver of one's own the path shape gives it away too
    assume(secret not in f"T{ids}/B{ids}")
    mirror = f"http://127.0.0.1:8080/services/T{ids}/B{ids}/{secret}"
    check(mirror, secret, "127.0.0.1:8080", "/services/")


@given(st.text(string.ascii_letters + string.digits, min_size=32, max_size=32))
def test_pagerduty_routing_keys_are_masked(key: str) -> None:
    check(f"channel 'pagerduty:{key}' refused", key, "pagerduty")
    check(orjson.dumps({"routing_key": key, "event_action": "trigger"}).decode(), key, "trigger")


@given(
    secrets,
    hosts,
    st.sampled_from(
        [
            "Authorization",
            "authorization",
            "Proxy-Authorization",
            "X-Watchkeeper-Signature",
            "X-Hub-Signature-256",
            "X-Api-Key",
            "X-Auth-Token",
            "Cookie",
        ]
    ),  # fmt: skip
    st.sampled_from(["", "Bearer ", "Basic ", "t=1700000000,v1="]),
)
def test_header_values_are_masked_as_lines_and_as_dicts(
    secret: str, host: str, header: str, scheme: str
) -> None:
    check(f"POST /hook\r\nHost: {host}\r\n{header}: {scheme}{secret}\r\n", secret, host, header)
    check(str({"Host": host, header: f"{scheme}{secret}"}), secret, host, header)


@given(secrets, hosts, st.sampled_from(["password", "passwd", "pwd", "secret", "token"]))
def test_password_pairs_in_free_text_are_masked(secret: str, host: str, name: str) -> None:
    check(f"smtp login to {host} failed: {name}={secret} rejected", secret, host, "rejected")
    check(f"{name}: {secret}", secret, name)
    check(orjson.dumps({"host": host, name: secret}).decode(), secret, host)


@given(secrets, hosts)
def test_known_secrets_are_masked_wherever_they_appear(secret: str, host: str) -> None:
    assume(secret not in host)
    out = redact(f"{host} answered {secret}!", known=[secret])
    assert secret not in out and host in out


@pytest.mark.parametrize(
    "text",
    [
        "http 400 Bad Request",
        "connection refused",
        "timeout",
        "smtp 550 5.1.1 mailbox unavailable",
        "webhook:https://hooks.example.com/wk",
        "dead-lettered alert 0123456789abcdef0123456789abcdef (delivery_failed)",
        "refused by the outbound policy: 169.254.169.254 is link-local",
    ],
)
def test_text_without_credentials_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_the_slack_url_from_the_security_review_leaves_nothing_behind() -> None:
    spec = "slack:https://hooks.slack.com:99999/services/T000/B000/SECRETTOKEN123"
    with pytest.raises(InvalidChannel) as caught:
        parse_channel(spec)
    message = str(caught.value)
    assert "SECRETTOKEN123" not in message
    assert "port must be 1-65535" in message and "hooks.slack.com" in message


def test_the_logging_filter_redacts_messages_arguments_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("test_redact.filtered")
    logger.addFilter(RedactingFilter())
    url = "https://hooks.slack.com/services/T1/B1/SECRETTOKEN123"
    with caplog.at_level(logging.WARNING, logger=logger.name):
        logger.warning("delivery to %s failed", url)
        try:
            raise RuntimeError(f"cannot post to {url}?token=hunter2hunter2")
        except RuntimeError:
            logger.exception("bug")
    assert "SECRETTOKEN123" not in caplog.text and "hunter2hunter2" not in caplog.text
    assert "hooks.slack.com" in caplog.text and "RuntimeError" in caplog.text
