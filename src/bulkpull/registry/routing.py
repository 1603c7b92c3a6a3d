"""Where requests go, decided as data: registry names, mirrors and insecure hosts.

Every rule that picks a host, a scheme or whether TLS is verified lives here (and the proxy for a
URL in ``proxies``), without I/O, so the HTTP pieces only carry the decisions out and each rule is
tested on its own. Registries are named as in image references and in Docker's and podman's
configuration (``host[:port]``); the names Docker Hub goes by all mean ``docker.io``. Imports
only ``errors``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from bulkpull.errors import InvalidOptionError, printable

# Applies to connecting, to silence while reading, and to the whole of each small request
# (ping, token, manifest); never to a whole blob, since a large layer on a slow link may take
# hours and still be moving.
DEFAULT_TIMEOUT = 60.0

DOCKER_HUB = "docker.io"
# Docker Hub's names: the reference domain, its legacy index name, the host serving the API, and
# the key ``docker login`` writes to config.json (reduced to its host by ``registry_key``).
_DOCKER_HUB_ALIASES = frozenset({DOCKER_HUB, "index.docker.io", "registry-1.docker.io"})

_HOST_PORT = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?"
)
# Repository path components, as distribution/reference spells them.
_NAMESPACE = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)

# A URL scheme, as RFC 3986 spells it.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
MAX_PORT = 65535


def parse_host(text: str) -> str:
    """``host[:port]`` checked and lowercased; anything else (a URL, a path) is refused."""
    match = _HOST_PORT.fullmatch(text.strip())
    if not match or int(match["port"] or 0) > MAX_PORT:
        raise InvalidOptionError(f"{text!r} is not a registry host[:port]")
    return match.group().lower()


def registry_key(name: str) -> str:
    """The name under which a registry's settings and credentials are filed.

    Accepts ``host[:port]`` as well as the URLs Docker writes as config keys
    (``https://index.docker.io/v1/``): scheme and path are dropped, the host is lowercased, and
    every Docker Hub name becomes ``docker.io``.
    """
    text = name.strip()
    if "://" not in text:
        text = "//" + text
    host = urlsplit(text).netloc.lower()
    return DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host


def is_loopback(host: str) -> bool:
    """Whether ``host[:port]`` names this machine."""
    name = urlsplit("//" + host).hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Mirror:
    """Pull ``registry``'s images from ``mirror`` first (``host[:port][/namespace]``).

    A pull-through cache for Docker Hub is the usual case: ``Mirror("docker.io",
    "cache.example:5000")``. With a namespace the mirror keeps the images below it, as Harbor's
    proxy-cache projects do: ``docker.io/library/alpine`` is asked for as
    ``<namespace>/library/alpine``.
    """

    registry: str
    mirror: str

    def __post_init__(self) -> None:
        parse_host(self.registry)
        host, _, namespace = self.mirror.partition("/")
        try:
            parse_host(host)
        except InvalidOptionError:
            raise InvalidOptionError(
                f"mirror {self.mirror!r} is not host[:port][/namespace]"
            ) from None
        if namespace and not _NAMESPACE.fullmatch(namespace):
            raise InvalidOptionError(
                f"mirror {self.mirror!r}: {namespace!r} is not a repository path"
            )

    @classmethod
    def parse(cls, text: str) -> Mirror:
        """``REGISTRY=MIRROR``, as ``--mirror`` and ``BULKPULL_MIRROR`` write it."""
        registry, equals, mirror = text.partition("=")
        if not equals:
            raise InvalidOptionError(f"mirror {text!r}: expected REGISTRY=MIRROR")
        return cls(registry, mirror)

    @property
    def host(self) -> str:
        return parse_host(self.mirror.partition("/")[0])

    def serves(self, registry: str) -> bool:
        """Whether this mirror stands in for ``registry`` (any of Docker Hub's names count)."""
        return registry_key(self.registry) == registry_key(registry)

    def repository(self, repository: str) -> str:
        """Where ``repository`` of the mirrored registry lives on the mirror."""
        namespace = self.mirror.partition("/")[2]
        return f"{namespace}/{repository}" if namespace else repository

    def __str__(self) -> str:
        return self.mirror


@dataclass(frozen=True, slots=True)
class SecurityPolicy:
    """Which scheme a registry is spoken to in, and whether TLS certificates are verified.

    HTTPS with verified certificates unless the user said otherwise: ``plain_http`` for every
    registry, ``insecure_registries`` for some (HTTPS without verification, falling back to
    HTTP, as Docker's insecure-registries do). Loopback registries may fall back to HTTP without
    being listed, but their certificates are still verified. Credentials follow the scheme:
    Basic credentials only travel in the clear to registries reached over HTTP, which is only
    ever one of these.
    """

    plain_http: bool = False
    skip_tls_verify: bool = False
    insecure_registries: frozenset[str] = frozenset()

    def schemes(self, registry: str) -> tuple[str, ...]:
        """The schemes to try for ``registry``, in order."""
        if self.plain_http:
            return ("http",)
        if self.is_insecure(registry) or is_loopback(registry):
            return ("https", "http")
        return ("https",)

    def verifies_tls(self, host: str) -> bool:
        """Whether the certificate of ``host[:port]`` (registry, token server or CDN) is checked."""
        return not (self.skip_tls_verify or self.is_insecure(host))

    def is_insecure(self, registry: str) -> bool:
        key = registry_key(registry)
        return any(registry_key(insecure) == key for insecure in self.insecure_registries)


def redact(url: str) -> str:
    """A URL or proxy string fit for messages: no login, no query, nothing a terminal acts on.

    A login is whatever comes before the last ``@``, whatever its shape: proxy strings are
    typed by people, who leave out the scheme (``user:pw@proxy:3128``) or put an unescaped
    ``/``, ``?`` or ``@`` in a password, so URL parsing would leave part of it in view. The query
    and fragment go because presigned CDN URLs carry signatures there.
    """
    scheme, separator, rest = url.partition("://")
    if not separator or not _SCHEME.fullmatch(scheme):
        scheme, separator, rest = "", "", url
    rest = rest.rpartition("@")[2]
    rest = re.split(r"[?#]", rest, maxsplit=1)[0]
    return printable(f"{scheme}{separator}{rest}")


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, without any login: what a pause or a credential is
    kept for."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def has_valid_port(parts: SplitResult) -> bool:
    """Whether the URL has no port or one from 0 to 65535 (``.port`` raises otherwise)."""
    try:
        return parts.port is None or parts.port >= 0
    except ValueError:
        return False
