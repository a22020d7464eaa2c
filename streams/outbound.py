"""Where the notifier may send: the outbound policy for webhook, Slack and PagerDuty URLs.

Channel targets are typed by model owners (``owners set``/``import``), and the notifier
POSTs to them from inside the network, so an unchecked URL is a server-side request
forgery: ``http://169.254.169.254/`` reads cloud credentials, ``http://127.0.0.1:6379``
talks to Redis. A target is refused when its address is loopback, link-local, private,
multicast, unspecified or reserved (IPv4 and IPv6, and IPv6 forms that embed an IPv4
address: mapped, 6to4, NAT64), or not globally routable.

The rule runs twice: when a channel is registered, on what the URL says (an IP literal,
a legacy numeric form, ``localhost``), and at send time on every address the host name
resolves to (``streams.notify.channels`` connects only to the addresses it checked, so a
name that resolves to a public address at registration and to 127.0.0.1 later, DNS
rebinding, is refused too).

``NotifySettings.allow_private_targets`` lifts the rule for CIDRs and host names you run
yourself (an internal receiver, the test suite's receivers on loopback); an allowed
host is also exempt from the Slack rule (https on hooks.slack.com), since a receiver you
run is not Slack.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

__all__ = [
    "SLACK_HOSTS",
    "IPAddress",
    "TargetPolicy",
    "TargetRefused",
    "address_problem",
    "parse_allowlist",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
SLACK_HOSTS = frozenset({"hooks.slack.com", "hooks.slack-gov.com"})
_HTTP_KINDS = frozenset({"webhook", "slack", "pagerduty"})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT
_NUMERIC_HOST = re.compile(r"(?i)[0-9a-fx.]+")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"(?i){_LABEL}(?:\.{_LABEL})*\.?")


class TargetRefused(OSError):
    """A target the outbound policy refuses; an OSError so that aiohttp passes it through
    as the cause of a connection error when a resolver raises it."""


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_problem(ip: IPAddress) -> str | None:
    """Why ``ip`` is no place to send a page to, or None when it is a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            why = address_problem(inner)
            return None if why is None else f"{ip} embeds {inner}, which {why.split(' ', 1)[1]}"
        if ip in _NAT64_LOCAL:
            return f"{ip} is a local-use NAT64 address"
        if ip.is_site_local:
            return f"{ip} is site-local"
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local (cloud metadata lives there)"),
        (ip.is_multicast, "multicast"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED, "shared (carrier-grade NAT)"),
        (ip.is_reserved, "reserved"),
        (ip.is_private, "private"),
        (not ip.is_global, "not globally routable"),
    )
    for hit, what in checks:
        if hit:
            return f"{ip} is {what}"
    return None


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """``127.1``, ``2130706433``, ``0x7f.0.0.1``: forms inet_aton (and so many resolvers)
    read as an IPv4 address although they are not dotted quads."""
    if not _NUMERIC_HOST.fullmatch(host) or not any(c.isdigit() for c in host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def parse_allowlist(entries: Iterable[str]) -> tuple[tuple[IPNetwork, ...], frozenset[str]]:
    """CIDRs (or single addresses) and host names; ValueError names a bad entry."""
    networks: list[IPNetwork] = []
    hosts: set[str] = set()
    for raw in entries:
        entry = str(raw).strip()
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        name = entry.lower().rstrip(".")
        if not name or not _HOSTNAME.fullmatch(name):
            raise ValueError(f"{entry!r} is neither a CIDR (10.0.0.0/8, ::1/128) nor a host name")
        hosts.add(name)
    return tuple(networks), frozenset(hosts)


@dataclass(frozen=True)
class TargetPolicy:
    """The outbound rule plus its allowlist; one instance serves registration and sending."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def allowing(cls, entries: Iterable[str] = ()) -> TargetPolicy:
        networks, hosts = parse_allowlist(entries)
        return cls(networks, hosts)

    def host_allowed(self, host: str) -> bool:
        """An allowlisted host name, or an IP literal inside an allowlisted network."""
        name = host.lower().strip("[]").rstrip(".")
        if name in self.hosts:
            return True
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            return False
        return self._in_networks(ip)

    def _in_networks(self, ip: IPAddress) -> bool:
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and (inner := _embedded_ipv4(ip)):
            candidates.append(inner)
        return any(
            c in net for c in candidates for net in self.networks if c.version == net.version
        )

    def check_address(self, host: str, ip: IPAddress) -> None:
        """At send time, for each address ``host`` resolved to: :class:`TargetRefused` unless
        the address is public or allowlisted (by network, or by the host's name)."""
        if self.host_allowed(host) or self._in_networks(ip):
            return
        why = address_problem(ip)
        if why is not None:
            raise TargetRefused(f"{host} resolves to a refused address: {why}")

    def url_problem(self, kind: str, url: str) -> str | None:
        """What the URL itself says against the policy (no DNS): the registration check."""
        try:
            parts = urlsplit(url)
            port = parts.port  # ValueError when out of range or not a number
        except ValueError as exc:
            return f"invalid URL ({exc})"
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host:
            return "needs an http(s) URL with a host"
        if port == 0:
            return "port 0 is not a port"
        if self.host_allowed(host):
            return None
        if kind == "slack" and (why := _slack_problem(parts, host)):
            return why
        return self._host_problem(host)

    def _host_problem(self, host: str) -> str | None:
        name = host.lower().rstrip(".")
        try:
            ip: IPAddress | None = ipaddress.ip_address(name)
        except ValueError:
            ip = _legacy_ipv4(name)
            if ip is not None and self._in_networks(ip):
                return None
        if ip is not None:
            if self._in_networks(ip):
                return None
            why = address_problem(ip)
            return None if why is None else f"{host}: {why}"
        if name == "localhost" or name.endswith(".localhost"):
            return f"{host} is a loopback name"
        return None

    def channel_problem(self, kind: str, target: str) -> str | None:
        """The registration check for one channel (email has no URL: nothing to check)."""
        if kind not in _HTTP_KINDS or kind == "pagerduty":
            return None  # a routing key; the events URL is a setting, checked at send time
        return self.url_problem(kind, target)

    def rule_text(self) -> str:
        return (
            "loopback, link-local, private, multicast, unspecified and reserved addresses are "
            "refused; allow your own receivers with WATCHKEEPER_NOTIFY_ALLOW_PRIVATE_TARGETS"
        )


def _slack_problem(parts: SplitResult, host: str) -> str | None:
    if parts.scheme != "https" or host.lower().rstrip(".") not in SLACK_HOSTS:
        return "a Slack incoming webhook must be an https URL on hooks.slack.com"
    return None
