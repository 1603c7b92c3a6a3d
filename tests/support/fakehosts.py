"""Host names for tests that must not leave loopback: names that resolve to 127.0.0.1, and names
that do not resolve at all, without asking any DNS server.

aiohttp resolves names with ``loop.getaddrinfo``, which calls ``socket.getaddrinfo`` in a thread;
replacing that one function for the test's duration is enough, and every other name still
resolves as usual.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pytest


class FakeHosts:
    """Answers for some names; counts how often each of them was looked up."""

    def __init__(self, to_loopback: Iterable[str], unknown: Iterable[str]) -> None:
        self.to_loopback = frozenset(to_loopback)
        self.unknown = frozenset(unknown)
        self.lookups: Counter[str] = Counter()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = socket.getaddrinfo

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            name = host.decode() if isinstance(host, bytes) else host
            if name in self.unknown:
                self.lookups[name] += 1
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            if name in self.to_loopback:
                self.lookups[name] += 1
                return real("127.0.0.1", port, *args, **kwargs)
            return real(host, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def fake_hosts(
    monkeypatch: pytest.MonkeyPatch,
    to_loopback: Iterable[str] = (),
    unknown: Iterable[str] = (),
) -> FakeHosts:
    """Make ``to_loopback`` names resolve to 127.0.0.1 and ``unknown`` ones fail to resolve."""
    hosts = FakeHosts(to_loopback, unknown)
    hosts.install(monkeypatch)
    return hosts
