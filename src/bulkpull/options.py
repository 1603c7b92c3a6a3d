"""The knobs of a pull, as frozen values validated when they are made.

Options are built once at the edge (the CLI, or a library caller) and passed down; lower layers
receive only the pieces they use. Imports only ``errors``, ``platform``, ``network``, ``auth``
and ``credentials``.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bulkpull.auth import Credentials
from bulkpull.credentials import Keychain
from bulkpull.network import Mirror, Proxies, parse_host
from bulkpull.platform import DEFAULT_PLATFORM, Platform, parse_platform_choice

N = TypeVar("N", int, float)
# The fields BULKPULL_PLATFORM sets together.
_PLATFORM_CHOICE = frozenset({"platforms", "all_platforms"})

# Registries and CDNs throttle a single client beyond a handful of parallel blob GETs; eight keeps
# a fast link busy without tripping Docker Hub's or a small registry's limits.
DEFAULT_MAX_DOWNLOADS = 8
# Resolving and archiving are light; four images in flight keep downloads fed.
DEFAULT_JOBS = 4
DEFAULT_RETRIES = 3
DEFAULT_RETRY_DELAY = 2.0
# containers/image caps its exponential backoff at a minute; so do we (a server's Retry-After
# may ask for more, up to the five minutes of ``ratelimit.MAX_RETRY_AFTER``).
MAX_RETRY_DELAY = 60.0
# Immediate resumes of one download after failures that brought new bytes: enough for a large
# layer over a link that drops every few hundred megabytes, and still an end for a server that
# drops every connection after a few new bytes.
DEFAULT_RESUMES = 100
# Applies to connecting, to silence while reading, and to the whole of each small request
# (ping, token, manifest); never to a whole blob, since a large layer on a slow link may take
# hours and still be moving.
DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently a temporary failure is retried.

    ``retries`` counts repeats after the first try, so ``retries=3`` means at most four tries.
    A download that failed after bringing new bytes resumes at once and gets its ``retries``
    afresh, at most ``resumes`` times.
    """

    retries: int = DEFAULT_RETRIES
    delay: float = DEFAULT_RETRY_DELAY
    max_delay: float = MAX_RETRY_DELAY
    resumes: int = DEFAULT_RESUMES

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError("retries must be >= 0")
        if self.resumes < 0:
            raise ValueError("resumes must be >= 0")
        if self.delay < 0 or self.max_delay < 0:
            raise ValueError("retry delays must be >= 0")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before repeat number ``attempt`` (1-based): exponential with jitter,
        never above ``max_delay``."""
        base = self.delay * 2.0 ** min(attempt - 1, 64)  # no float overflow on huge counts
        return min(base * random.uniform(0.8, 1.2), self.max_delay)  # jitter, not cryptography


@dataclass(frozen=True, slots=True, kw_only=True)
class PullOptions:
    """Everything that shapes a pull besides the list of images and the output directory.

    ``platforms`` are picked from multi-platform images, in order of preference (the first is
    the one ``docker load`` gets from a bundle); a list line may override them.
    ``all_platforms`` keeps every manifest of an index instead, attestations included, under
    the registry's own index digest; ``docker load`` then gets the entry that serves
    ``platforms[0]`` best (``linux/amd64`` by default). ``force``
    rewrites archives that already hold the same image. ``store_dir`` is the content-addressed
    blob store; by default ``OUT_DIR/.bulkpull-store``, so rerunning into the same directory
    reuses every blob already verified.

    ``credentials`` is one login for every registry, or a :class:`Keychain` that knows each
    registry's (``Keychain.from_environment()`` reads docker's and podman's files); without it
    pulls are anonymous. ``insecure_registries`` (``host[:port]``) are reached over HTTPS without
    certificate checks or over plain HTTP; ``ca_cert`` adds a CA to the system's. ``mirrors``
    are tried before the registry they stand in for.

    Made directly, options ignore the environment (no proxy, anonymous pulls unless
    ``credentials`` says otherwise); :meth:`from_environment` reads it as the command does.
    """

    platforms: tuple[Platform, ...] = (DEFAULT_PLATFORM,)
    all_platforms: bool = False
    force: bool = False
    jobs: int = DEFAULT_JOBS
    max_downloads: int = DEFAULT_MAX_DOWNLOADS
    plain_http: bool = False
    skip_tls_verify: bool = False
    credentials: Credentials | Keychain | None = None
    insecure_registries: frozenset[str] = frozenset()
    ca_cert: Path | None = None
    proxies: Proxies = field(default_factory=Proxies)
    mirrors: tuple[Mirror, ...] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = DEFAULT_TIMEOUT
    store_dir: Path | None = None

    def __post_init__(self) -> None:
        if not self.platforms:
            raise ValueError("platforms must not be empty")
        if self.jobs < 1:
            raise ValueError("jobs must be > 0")
        if self.max_downloads < 1:
            raise ValueError("max_downloads must be > 0")
        if self.timeout <= 0:
            raise ValueError("timeout must be > 0")
        for registry in self.insecure_registries:
            parse_host(registry)

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> PullOptions:
        """The options the ``bulkpull`` command would use here: the ``BULKPULL_*`` variables,
        the usual proxy variables, and logins from podman's and docker's files.

        Each keyword argument is a field that wins over what the environment says, as a flag
        wins on the command line (the command builds its options with this very call);
        ``platforms`` and ``all_platforms`` are one choice: giving either leaves
        ``BULKPULL_PLATFORM`` aside::

            options = PullOptions.from_environment(jobs=8)

        ``environ`` stands in for ``os.environ``. A variable that cannot be used raises
        ``ValueError`` naming it; a malformed login file raises ``CredentialsError``.
        """
        env = os.environ if environ is None else environ
        read: dict[str, Callable[[], Any]] = {
            "platforms": lambda: _platforms(env)[0],
            "all_platforms": lambda: _platforms(env)[1],
            "jobs": lambda: _number(env, "BULKPULL_JOBS", int, DEFAULT_JOBS, 1),
            "max_downloads": lambda: _number(
                env, "BULKPULL_MAX_DOWNLOADS", int, DEFAULT_MAX_DOWNLOADS, 1
            ),
            "proxies": lambda: _proxies(env),
            "ca_cert": lambda: _ca_cert(env),
            "insecure_registries": lambda: frozenset(_words(env, "BULKPULL_INSECURE_REGISTRY")),
            "mirrors": lambda: tuple(map(Mirror.parse, _words(env, "BULKPULL_MIRROR"))),
            "retry": lambda: RetryPolicy(
                retries=_number(env, "BULKPULL_RETRIES", int, DEFAULT_RETRIES, 0),
                delay=_number(env, "BULKPULL_RETRY_DELAY", float, DEFAULT_RETRY_DELAY, 0.0),
            ),
            "timeout": lambda: _number(env, "BULKPULL_TIMEOUT", float, DEFAULT_TIMEOUT, 0.1),
            "credentials": lambda: Keychain.from_environment(environ=env),
        }
        if overrides.keys() & _PLATFORM_CHOICE:
            read = {name: get for name, get in read.items() if name not in _PLATFORM_CHOICE}
        values = {name: get() for name, get in read.items() if name not in overrides}
        return cls(**values, **overrides)

    @property
    def keychain(self) -> Keychain:
        """Where each registry's login comes from, whichever form ``credentials`` took."""
        if isinstance(self.credentials, Keychain):
            return self.credentials
        if self.credentials is None:
            return Keychain()
        return Keychain.everywhere(self.credentials)


def _number(environ: Mapping[str, str], name: str, kind: type[N], default: N, minimum: N) -> N:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{name}={text!r}: expected a number") from None
    if not value >= minimum:  # also refuses nan
        raise ValueError(f"{name}={text!r}: must be at least {minimum}")
    return value


def _platforms(environ: Mapping[str, str]) -> tuple[tuple[Platform, ...], bool]:
    try:
        return parse_platform_choice(environ.get("BULKPULL_PLATFORM", "").strip())
    except ValueError as exc:
        raise ValueError(f"BULKPULL_PLATFORM: {exc}") from None


def _words(environ: Mapping[str, str], name: str) -> list[str]:
    """Several values in one variable, separated by spaces or commas."""
    return [word for word in re.split(r"[\s,]+", environ.get(name, "")) if word]


def _proxies(environ: Mapping[str, str]) -> Proxies:
    """``BULKPULL_PROXY`` for every request, else ``HTTPS_PROXY`` and the others as curl and
    docker read them."""
    try:
        if environ.get("BULKPULL_PROXY"):
            return Proxies.everywhere(environ["BULKPULL_PROXY"])
        return Proxies.from_environment(environ)
    except ValueError as exc:
        raise ValueError(f"proxy environment variables: {exc}") from None


def _ca_cert(environ: Mapping[str, str]) -> Path | None:
    text = environ.get("BULKPULL_CA_CERT")
    if not text:
        return None
    if not Path(text).is_file():
        raise ValueError(f"BULKPULL_CA_CERT={text!r}: no such file")
    return Path(text)
