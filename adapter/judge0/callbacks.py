"""Judge0's `callback_url`: the finished submission PUT to a URL the client gave.

A client-given URL makes the service send requests for whoever asks, from inside its network.
So callbacks are off unless the operator allows them, and never reach the service's own host
(loopback) or link-local addresses (169.254.169.254 is the cloud metadata service, which hands
out credentials). Private ranges stay allowed: a grader on the same network is the usual
receiver.

The URL is checked twice: its form when the submission arrives (`check_callback_url`), and at
send time the addresses its host resolves to, all of them. The request then goes to the
checked address itself, so a name answering differently a moment later (DNS rebinding) cannot
redirect it: for http to the IP with the original Host header, for https to the IP with the
hostname as TLS server name, so the certificate is still verified against the hostname.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import httpx

log = logging.getLogger("adapter.judge0")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_CHARS = 2048
# Networks whose addresses are a way back into this host or its cloud, beyond what the
# ipaddress predicates cover: all of 0/8 (Linux connects 0.0.0.0 to the local host) and the
# broadcast address.
REFUSED_V4 = (ipaddress.IPv4Network("0.0.0.0/8"), ipaddress.IPv4Network("255.255.255.255/32"))
# IPv6 forms that carry an IPv4 address a gateway or the kernel would reach: NAT64's well-known
# prefix and the deprecated IPv4-compatible form (::a.b.c.d); IPv4-mapped and 6to4 have their
# own properties in ipaddress.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
REFUSED_MESSAGE = ("must not point to a loopback, link-local, unspecified or multicast "
                   "address")


@dataclass(frozen=True)
class CallbackPolicy:
    """Whether callbacks are sent, each try's whole time, and how often a failing one is tried
    again (connection errors, timeouts and 5xx answers), `retry_delay_s` apart."""

    enabled: bool = False
    timeout_s: float = 5.0
    max_tries: int = 3
    retry_delay_s: float = 1.0


class Outcome(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"    # may work later: the receiver is down, slow or failing
    FINAL = "final"    # will not work: refused address, a 4xx, a redirect


def refused_address(address: Address) -> bool:
    """Whether a callback must not be sent to `address`: loopback, link-local, unspecified,
    multicast, and IPv6 forms embedding such an IPv4 address (::ffff:127.0.0.1)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = embedded_ipv4(address)
        if embedded is not None and refused_address(embedded):
            return True
    elif any(address in network for network in REFUSED_V4):
        return True
    return (address.is_loopback or address.is_link_local or address.is_unspecified
            or address.is_multicast)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64 or address in IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def check_callback_url(url: str, policy: CallbackPolicy) -> str | None:
    """None when `url` may be given as a callback, else why not (the message of a 422
    {"callback_url": [message]}). Only the form and IP literals are checked here; names are
    resolved and checked when sending."""
    if not policy.enabled:
        return "callbacks are disabled on this service"
    if len(url) > MAX_URL_CHARS:
        return f"must be at most {MAX_URL_CHARS} characters"
    try:
        parsed = httpx.URL(url)
        authority = urlsplit(url).netloc
    except (httpx.InvalidURL, ValueError):
        return "is not a valid URL"
    if parsed.scheme not in ("http", "https"):
        return "must be an http or https URL"
    # Credentials would be sent to whoever the host is, and `user@host` is a way to disguise
    # where a URL points (http://grader.example@169.254.169.254/); an empty one (`http://@h/`)
    # is refused too, since parsers disagree on it.
    if parsed.userinfo or "@" in authority:
        return "must not contain a user name or password"
    if not parsed.raw_host:
        return "has no host"
    if parsed.port is not None and not 0 < parsed.port < 65536:
        return "has an invalid port"
    literal = ip_literal(parsed.raw_host.decode("ascii"))
    if literal is not None and refused_address(literal):
        return REFUSED_MESSAGE
    return None


def ip_literal(host: str) -> Address | None:
    """The address `host` spells, including the forms inet_aton takes (127.1, 0x7f.0.0.1,
    2130706433), which getaddrinfo would resolve without asking DNS."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefABCDEFxX." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


async def send_callback(url: str, body: dict[str, Any], policy: CallbackPolicy) -> bool:
    """PUTs `body` as JSON to `url`; True once a try is answered 2xx. Never raises (only a
    cancellation goes through): a failed delivery is logged once, with why."""
    try:
        problem = check_callback_url(url, policy)
        if problem is not None:
            return failed(url, problem)
        payload = json.dumps(body).encode()
        reason = ""
        tries = max(1, policy.max_tries)
        for attempt in range(1, tries + 1):
            outcome, reason = await try_once(httpx.URL(url), payload, policy)
            if outcome is Outcome.DELIVERED:
                return True
            if outcome is Outcome.FINAL:
                break
            if attempt < tries:
                await asyncio.sleep(policy.retry_delay_s)
        return failed(url, reason)
    except Exception as exc:  # noqa: BLE001 - the submission is done whatever its callback does
        return failed(url, f"{type(exc).__name__}: {exc}")


def failed(url: str, reason: str) -> bool:
    log.warning("callback to %s not delivered: %s", url, reason)
    return False


async def try_once(url: httpx.URL, payload: bytes,
                   policy: CallbackPolicy) -> tuple[Outcome, str]:
    try:
        async with asyncio.timeout(policy.timeout_s):
            address = await resolve(host_of(url), url.port or default_port(url))
            if address is None:
                return Outcome.FINAL, f"{host_of(url)} resolves to a refused address"
            status = await put(url, address, payload, policy)
    except (httpx.TransportError, OSError, TimeoutError) as exc:
        return Outcome.RETRY, f"{type(exc).__name__}: {exc}".rstrip(": ")
    if 200 <= status < 300:
        return Outcome.DELIVERED, ""
    if status >= 500:
        return Outcome.RETRY, f"answered {status}"
    return Outcome.FINAL, f"answered {status}"


def host_of(url: httpx.URL) -> str:
    # The ASCII (IDNA) form: what DNS and TLS know the name by.
    return url.raw_host.decode("ascii")


def default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


async def resolve(host: str, port: int) -> Address | None:
    """The first address `host` resolves to, or None if any of them is refused: a name with a
    loopback address among others must not be sent to, whichever one a connect would pick."""
    loop = asyncio.get_running_loop()
    found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # An IPv6 link-local answer carries its zone ("fe80::1%eth0"), which ip_address keeps.
    addresses = [ipaddress.ip_address(info[4][0]) for info in found]
    if not addresses or any(refused_address(address) for address in addresses):
        return None
    return addresses[0]


async def put(url: httpx.URL, address: Address, payload: bytes,
              policy: CallbackPolicy) -> int:
    """The status of one PUT of `payload` to `url`, sent to `address`."""
    pinned = url.copy_with(host=str(address))
    headers = {"Host": url.netloc.decode("ascii"), "Content-Type": "application/json"}
    # The certificate is checked against this name, not the address connected to.
    extensions = {"sni_hostname": host_of(url)} if url.scheme == "https" else {}
    # trust_env=False: a proxy from the environment would connect to the name itself, undoing
    # the pinning. No redirects: a 3xx to http://127.0.0.1/ would skip every check.
    async with httpx.AsyncClient(timeout=policy.timeout_s, follow_redirects=False,
                                 trust_env=False) as client:
        request = client.build_request("PUT", pinned, content=payload, headers=headers,
                                       extensions=extensions)
        # Streamed and closed unread: the status is all that matters, and a receiver's body
        # of any size costs nothing.
        response = await client.send(request, stream=True)
        await response.aclose()
        return response.status_code
