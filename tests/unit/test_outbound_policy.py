"""The outbound policy (streams.outbound): which addresses a page may go to, what a
URL says at registration, the allowlist, and the send-time check of resolved addresses."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from streams.contract.notification import InvalidChannel, parse_channel
from streams.notify.channels import _PolicyResolver
from streams.outbound import TargetPolicy, TargetRefused, address_problem
from streams.settings import NotifySettings
from streams.store.owners import Owner, policy_problems

STRICT = TargetPolicy()


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("100.64.0.1", "shared"),
        ("192.0.2.10", "private"),  # documentation range
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("ff02::1", "multicast"),
        ("fec0::1", "site-local"),
        ("2001:db8::1", "private"),
        ("::ffff:127.0.0.1", "embeds 127.0.0.1, which is loopback"),
        ("::ffff:169.254.169.254", "embeds 169.254.169.254, which is link-local"),
        ("::ffff:10.0.0.1", "embeds 10.0.0.1, which is private"),
        ("2002:7f00:1::", "embeds 127.0.0.1"),  # 6to4
        ("64:ff9b::a9fe:a9fe", "embeds 169.254.169.254"),  # NAT64
        ("64:ff9b:1::1", "local-use NAT64"),
    ],
)
def test_non_public_addresses_are_refused_naming_why(address: str, why: str) -> None:
    problem = address_problem(ipaddress.ip_address(address))
    assert problem is not None and why in problem


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


@given(st.ip_addresses(v=4))
def test_an_ipv4_mapped_address_gets_the_verdict_of_its_ipv4_address(
    ip: ipaddress.IPv4Address,
) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
    assert (address_problem(mapped) is None) == (address_problem(ip) is None)


@given(
    st.sampled_from(
        [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "127.0.0.0/8",
            "169.254.0.0/16",
            "224.0.0.0/4",
            "fc00::/7",
            "fe80::/10",
        ]
    ),  # fmt: skip
    st.integers(min_value=0),
)
def test_every_address_of_the_refused_ranges_is_refused(cidr: str, offset: int) -> None:
    net = ipaddress.ip_network(cidr)
    ip = net[offset % net.num_addresses]
    assert address_problem(ip) is not None
    assert STRICT.url_problem("webhook", f"http://{_host(ip)}:8080/hook") is not None


def _host(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return f"[{ip}]" if ip.version == 6 else str(ip)


# --------------------------------------------------------------------------- registration


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data/iam", "link-local"),
        ("http://127.0.0.1:6379/", "loopback"),
        ("http://10.0.0.7/hook", "private"),
        ("http://[::1]:8080/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://127.1/", "loopback"),  # legacy numeric forms resolvers accept
        ("http://2130706433/", "loopback"),
        ("http://0x7f000001/", "loopback"),
        ("http://0251.0376.0251.0376/", "link-local"),  # octal 169.254.169.254
        ("http://localhost:8080/hook", "loopback name"),
        ("http://api.localhost/", "loopback name"),
        ("http://hooks.example.com:0/", "port 0"),
        ("ftp://hooks.example.com/", "http(s)"),
    ],
)
def test_registration_refuses_what_the_url_says(url: str, why: str) -> None:
    problem = STRICT.url_problem("webhook", url)
    assert problem is not None and why in problem


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.slack.com/services/T0/B0/x",  # not https
        "https://hooks.example.com/services/T0/B0/x",  # not Slack
        "https://hooks.slack.com.evil.example/services/T0/B0/x",
        "https://evil.example/hooks.slack.com/services/T0/B0/x",
    ],
)
def test_slack_must_be_https_on_hooks_slack_com(url: str) -> None:
    problem = STRICT.url_problem("slack", url)
    assert problem is not None and "hooks.slack.com" in problem


def test_ordinary_targets_pass() -> None:
    assert STRICT.url_problem("slack", "https://hooks.slack.com/services/T0/B0/x") is None
    assert STRICT.url_problem("slack", "https://hooks.slack.com:443/services/T0/B0/x") is None
    assert STRICT.url_problem("webhook", "https://hooks.example.com/wk?team=a") is None
    assert STRICT.url_problem("webhook", "http://8.8.8.8:8080/") is None
    assert STRICT.channel_problem("pagerduty", "0123456789abcdef0123456789abcdef") is None
    assert STRICT.channel_problem("email", "oncall@example.com") is None


@pytest.mark.parametrize("port", ["99999", "65536", "0", "-1", "http"])
@pytest.mark.parametrize("kind", ["slack", "webhook"])
def test_a_port_out_of_range_is_refused_without_echoing_the_token(kind: str, port: str) -> None:
    spec = f"{kind}:https://hooks.slack.com:{port}/services/T000/B000/SECRETTOKEN123"
    with pytest.raises(InvalidChannel, match="port must be 1-65535") as caught:
        parse_channel(spec)
    assert "SECRETTOKEN123" not in str(caught.value)


def test_the_allowlist_lifts_the_rule_by_network_or_by_name() -> None:
    policy = TargetPolicy.allowing(["127.0.0.0/8", "10.1.0.0/16", "receiver.internal", "::1"])
    assert policy.url_problem("webhook", "http://127.0.0.1:9/hook") is None
    assert policy.url_problem("webhook", "http://[::ffff:127.0.0.1]:9/hook") is None
    assert policy.url_problem("webhook", "http://[::1]:9/hook") is None
    assert policy.url_problem("webhook", "http://10.1.2.3/hook") is None
    assert policy.url_problem("webhook", "http://10.2.0.1/hook") is not None
    assert policy.url_problem("webhook", "http://Receiver.Internal./hook") is None
    # a receiver of one's own is not Slack: the Slack host rule is lifted for it too
    assert policy.url_problem("slack", "http://127.0.0.1:9/services/T/B/x") is None
    assert policy.url_problem("webhook", "http://169.254.169.254/") is not None


@pytest.mark.parametrize("entry", ["not a host!", "10.0.0.0/33", "", "a..b"])
def test_a_bad_allowlist_entry_is_a_settings_error(entry: str) -> None:
    with pytest.raises(ValidationError, match="allow_private_targets"):
        NotifySettings(allow_private_targets=[entry])


def test_the_allowlist_reads_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHKEEPER_NOTIFY_ALLOW_PRIVATE_TARGETS", '["10.0.0.0/8", "inbox"]')
    settings = NotifySettings()
    assert settings.allow_private_targets == ["10.0.0.0/8", "inbox"]
    assert TargetPolicy.allowing(settings.allow_private_targets).host_allowed("10.9.9.9")


def test_registry_problems_name_the_field_the_rule_and_no_secret() -> None:
    owner = Owner.from_specs(
        "fraud",
        owner="team",
        channels=["email:o@example.com", "webhook:http://u:hunter2hunter2@10.0.0.5/h"],
        runbook="https://wiki.example.com/fraud",
        escalate_after="30m",
        escalation_channels=["slack:https://hooks.example.com/services/T/B/SECRETTOKEN123"],
    )
    problems = policy_problems(owner, STRICT)
    assert [p.field for p in problems] == ["channels[1]", "escalation_channels[0]"]
    text = " ".join(str(p) for p in problems)
    assert "10.0.0.5 is private" in text and "hooks.slack.com" in text
    assert "WATCHKEEPER_NOTIFY_ALLOW_PRIVATE_TARGETS" in text
    assert "hunter2hunter2" not in text and "SECRETTOKEN123" not in text
    assert policy_problems(owner, TargetPolicy.allowing(["10.0.0.0/8", "hooks.example.com"])) == []


# --------------------------------------------------------------------------- send time


class Answers(AbstractResolver):
    """What a DNS server says for each name (a rebinding server says what it likes)."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=socket.AF_INET, proto=0, flags=0)
            for a in self.answers[host]
        ]

    async def close(self) -> None:
        return None


def test_send_time_refuses_a_name_if_any_address_it_resolves_to_is_refused() -> None:
    answers = Answers({"mixed.example": ["93.184.216.34", "127.0.0.1"], "ok.example": ["8.8.8.8"]})

    async def resolve(policy: TargetPolicy, host: str) -> list[ResolveResult]:
        return await _PolicyResolver(policy, answers).resolve(host, 443)

    refused = r"mixed\.example resolves to a refused address: 127\.0\.0\.1 is loopback"
    with pytest.raises(TargetRefused, match=refused):
        asyncio.run(resolve(STRICT, "mixed.example"))
    assert [r["host"] for r in asyncio.run(resolve(STRICT, "ok.example"))] == ["8.8.8.8"]
    allowed = TargetPolicy.allowing(["127.0.0.1"])
    assert len(asyncio.run(resolve(allowed, "mixed.example"))) == 2
    by_name = TargetPolicy.allowing(["mixed.example"])
    assert len(asyncio.run(resolve(by_name, "mixed.example"))) == 2
