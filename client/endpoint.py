"""The service's address as the clients take it: `--endpoint URL`, and what it means when no
connection to it can be made at all."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

SCHEMES = ("http", "https")
# What a request raises when no connection to the endpoint could be made at all.
UNREACHABLE = (httpx.ConnectError, httpx.ConnectTimeout)


class EndpointAction(argparse.Action):
    """`--endpoint URL`, refused at parsing unless it is an http:// or https:// URL with a
    host: without a scheme, every request would fail the same obscure way."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        url = str(values)
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            parser.error(f"{option_string} must start with http:// or https:// (got {url!r})")
        if not parts.hostname:
            parser.error(f"{option_string} has no host (got {url!r})")
        setattr(namespace, self.dest, url)


def unreachable(endpoint: str, exc: httpx.TransportError) -> str:
    """One line for a connection that could not be made, e.g.
    `cannot reach http://127.0.0.1:1: connection refused`."""
    if isinstance(exc, httpx.ConnectTimeout):
        reason = "no connection in time"
    elif caused_by(exc, ConnectionRefusedError) or "refused" in str(exc).lower():
        reason = "connection refused"
    else:
        # The OS's words without their errno: `[Errno -2] Name or service not known`.
        reason = re.sub(r"^\[Errno -?\d+\] ", "", str(exc)) or type(exc).__name__
    return f"cannot reach {endpoint.rstrip('/')}: {reason}"


def caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
