"""Which proxy a request goes through: explicit proxies, the usual environment variables, and
``NO_PROXY``, as Go's net/http (and with it docker, skopeo and crane) reads them.

A decision without I/O; ``session`` opens the connections through the proxy chosen here.
Imports ``errors`` and ``routing``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from bulkpull.errors import InvalidOptionError
from bulkpull.registry.routing import has_valid_port, redact

PROXY_SCHEMES = frozenset({"http", "https", "socks4", "socks5", "socks5h"})
# Proxy variables in the order Go's net/http reads them (upper case first); ALL_PROXY, curl's
# catch-all, applies when the scheme's own variable is unset.
_PROXY_VARIABLES = {
    "https": ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"),
    "http": ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"),
}
# A proxy cannot reach this machine's loopback for us, so environment proxies never apply to it
# (Go's net/http, and with it docker, skopeo and crane, behave the same).
LOOPBACK_NO_PROXY = ("localhost", "127.0.0.0/8", "::1")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True, repr=False)
class Proxies:
    """The proxy for each request: ``https`` for https URLs, ``http`` for http URLs.

    ``no_proxy`` lists what goes direct, in ``NO_PROXY`` syntax as Go reads it: ``*``; a host,
    which also covers its subdomains; ``.domain`` for subdomains only; an IP or a CIDR range;
    any of these with ``:port``. Proxy URLs may carry credentials; ``repr`` never shows them.
    """

    https: str | None = None
    http: str | None = None
    no_proxy: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for url in (self.https, self.http):
            if url is not None:
                _check_proxy_url(url)

    @classmethod
    def everywhere(cls, url: str) -> Proxies:
        """Every request through ``url``, loopback included (what ``--proxy`` asks for)."""
        return cls(https=url, http=url)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Proxies:
        """``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY`` and ``NO_PROXY``, as the usual tools
        read them; a value without a scheme means an HTTP proxy. Loopback always goes direct."""

        def proxy(*names: str) -> str | None:
            value = next((environ[name] for name in names if environ.get(name)), None)
            if value is None or "://" in value:
                return value
            return "http://" + value

        exclusions = environ.get("NO_PROXY") or environ.get("no_proxy") or ""
        return cls(
            https=proxy(*_PROXY_VARIABLES["https"]),
            http=proxy(*_PROXY_VARIABLES["http"]),
            no_proxy=(*LOOPBACK_NO_PROXY, *filter(None, map(str.strip, exclusions.split(",")))),
        )

    def for_url(self, url: str) -> str | None:
        """The proxy URL to send ``url`` through, or None to connect directly."""
        parts = urlsplit(url)
        proxy = self.https if parts.scheme == "https" else self.http
        if proxy is None or not parts.hostname:
            return None
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
        if any(_excludes(entry, parts.hostname, port) for entry in self.no_proxy):
            return None
        return proxy

    def __repr__(self) -> str:
        shown = [
            f"{name}={redact(url)!r}"
            for name, url in (("https", self.https), ("http", self.http))
            if url is not None
        ]
        if self.no_proxy:
            shown.append(f"no_proxy={self.no_proxy!r}")
        return f"Proxies({', '.join(shown)})"


def _check_proxy_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in PROXY_SCHEMES or not parts.hostname or not has_valid_port(parts):
        schemes = ", ".join(f"{scheme}://" for scheme in sorted(PROXY_SCHEMES))
        # The login is not shown, so say what usually breaks one.
        login = "; percent-encode any / ? # @ in its login" if "@" in url else ""
        raise InvalidOptionError(
            f"unusable proxy {redact(url)!r}: expected {schemes} with a host{login}"
        )


def _excludes(entry: str, host: str, port: int) -> bool:
    """Whether one ``NO_PROXY`` entry covers ``host`` on ``port``."""
    if entry == "*":
        return True
    try:
        network = ipaddress.ip_network(entry.strip("[]"), strict=False)
    except ValueError:
        pass
    else:
        try:
            return ipaddress.ip_address(host) in network
        except ValueError:
            return False
    pattern = entry.removeprefix("*")
    parts = urlsplit("//" + pattern)
    if not has_valid_port(parts) or parts.port not in (None, port):
        return False
    name = (parts.hostname or "").removeprefix(".")
    if pattern.startswith("."):
        return host.endswith("." + name)
    return host == name or host.endswith("." + name)
