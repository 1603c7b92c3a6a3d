"""The knobs of a pull, as one frozen value validated when it is made.

Options are built once at the edge (the CLI, or a library caller) and passed down; each stage
receives only the pieces it uses. They gather what the stages are configured with (logins,
proxies and mirrors of ``registry``; the retry policy of ``retry``; platforms; the store
directory), so they sit above the stages with the orchestration that hands those pieces out.
Imports ``errors``, ``platform``, ``retry``, ``signatures`` and ``registry``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from bulkpull.errors import InvalidOptionError, InvalidPlatformError
from bulkpull.platform import DEFAULT_PLATFORM, Platform, parse_platform_choice
from bulkpull.registry import (
    DEFAULT_TIMEOUT,
    Credentials,
    Keychain,
    Mirror,
    Proxies,
    SecurityPolicy,
    parse_host,
)

if TYPE_CHECKING:
    from bulkpull.registry import Transport

from bulkpull.retry import DEFAULT_RETRIES, DEFAULT_RETRY_DELAY, RetryListener, RetryPolicy
from bulkpull.signatures import PublicKey

N = TypeVar("N", int, float)
# The fields BULKPULL_PLATFORM sets together.
_PLATFORM_CHOICE = frozenset({"platforms", "all_platforms"})

# Registries and CDNs throttle a single client beyond a handful of parallel blob GETs; eight keeps
# a fast link busy without tripping Docker Hub's or a small registry's limits.
DEFAULT_MAX_DOWNLOADS = 8
# Resolving and archiving are light; four images in flight keep downloads fed.
DEFAULT_JOBS = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class PullOptions:
    """Everything that shapes a pull besides the list of images and the output directory.

    ``platforms`` are picked from multi-platform images, in order of preference (the first is
    the one ``docker load`` gets from a bundle); a list line may override them.
    ``all_platforms`` keeps every manifest of an index instead, attestations included, under
    the registry's own index digest; ``docker load`` then gets the entry that serves
    ``platforms[0]`` best (``linux/amd64`` by default). ``force``
    rewrites archives that already hold the same image. ``cache_dir`` keeps a content-addressed
    store of verified blobs (and manifests) across runs and outputs; without it no store is kept
    for archives and bundles: each blob lands straight in the archive that needs it, and a
    rerun takes what the archives already in the output hold.

    ``referrers``: signatures, SBOMs and attestations found for each image travel with it
    into a bundle or layout; ``referrer_types``, when given, keeps only referrers of these
    artifact, config or layer media types. With ``verify_key`` (``load_public_key``) an image
    is pulled only if a cosign signature of it verifies with that key.

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
    cache_dir: Path | None = None
    referrers: bool = True
    referrer_types: frozenset[str] = frozenset()
    verify_key: PublicKey | None = None

    def __post_init__(self) -> None:
        if not self.platforms:
            raise InvalidOptionError("platforms must not be empty")
        if self.jobs < 1:
            raise InvalidOptionError("jobs must be > 0")
        if self.max_downloads < 1:
            raise InvalidOptionError("max_downloads must be > 0")
        if self.timeout <= 0:
            raise InvalidOptionError("timeout must be > 0")
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
        :class:`InvalidOptionError` naming it; a malformed login file
        raises ``CredentialsError``.
        """
        env = os.environ if environ is None else environ
        read: dict[str, Callable[[], Any]] = {
            "platforms": lambda: _platforms(env)[0],
            "all_platforms": lambda: _platforms(env)[1],
            "jobs": lambda: read_number(env, "BULKPULL_JOBS", int, DEFAULT_JOBS, 1),
            "max_downloads": lambda: read_number(
                env, "BULKPULL_MAX_DOWNLOADS", int, DEFAULT_MAX_DOWNLOADS, 1
            ),
            "proxies": lambda: _proxies(env),
            "ca_cert": lambda: _ca_cert(env),
            "insecure_registries": lambda: frozenset(_words(env, "BULKPULL_INSECURE_REGISTRY")),
            "mirrors": lambda: tuple(map(Mirror.parse, _words(env, "BULKPULL_MIRROR"))),
            "retry": lambda: RetryPolicy(
                retries=read_number(env, "BULKPULL_RETRIES", int, DEFAULT_RETRIES, 0),
                delay=read_number(env, "BULKPULL_RETRY_DELAY", float, DEFAULT_RETRY_DELAY, 0.0),
            ),
            "timeout": lambda: read_number(env, "BULKPULL_TIMEOUT", float, DEFAULT_TIMEOUT, 0.1),
            "credentials": lambda: Keychain.from_environment(environ=env),
            "cache_dir": lambda: Path(env["BULKPULL_CACHE"]) if env.get("BULKPULL_CACHE") else None,
        }
        if overrides.keys() & _PLATFORM_CHOICE:
            read = {name: get for name, get in read.items() if name not in _PLATFORM_CHOICE}
        values = {name: get() for name, get in read.items() if name not in overrides}
        return cls(**values, **overrides)

    @property
    def keychain(self) -> Keychain:
        """Where each registry's login comes from, whichever form ``credentials`` took."""
        return keychain_of(self.credentials)


class RegistryAccess(Protocol):
    """How a run reaches its registries, as the options of a pull and of a push both say."""

    @property
    def plain_http(self) -> bool: ...
    @property
    def skip_tls_verify(self) -> bool: ...
    @property
    def insecure_registries(self) -> frozenset[str]: ...
    @property
    def ca_cert(self) -> Path | None: ...
    @property
    def proxies(self) -> Proxies: ...
    @property
    def retry(self) -> RetryPolicy: ...
    @property
    def timeout(self) -> float: ...
    @property
    def keychain(self) -> Keychain: ...


def registry_transport(
    options: RegistryAccess,
    *,
    connections: int,
    on_retry: RetryListener | None,
    mirrors: tuple[Mirror, ...] = (),
) -> Transport:
    """The transport of a run with ``options``: ``connections`` at once, ``mirrors`` tried
    first (a pull's; a push writes to its registry and nowhere else). Imported here, not with
    the options: it brings the HTTP stack, which options made for ``--help`` never need."""
    from bulkpull.registry import Transport

    return Transport(
        retry=options.retry,
        on_retry=on_retry,
        timeout=options.timeout,
        connections=connections,
        keychain=options.keychain,
        security=SecurityPolicy(
            plain_http=options.plain_http,
            skip_tls_verify=options.skip_tls_verify,
            insecure_registries=options.insecure_registries,
        ),
        ca_cert=options.ca_cert,
        proxies=options.proxies,
        mirrors=mirrors,
    )


def keychain_of(credentials: Credentials | Keychain | None) -> Keychain:
    """The keychain that options' ``credentials`` (one login, a keychain, or none) stand for."""
    if isinstance(credentials, Keychain):
        return credentials
    if credentials is None:
        return Keychain()
    return Keychain.everywhere(credentials)


def read_number(environ: Mapping[str, str], name: str, kind: type[N], default: N, minimum: N) -> N:
    """The number in the variable ``name`` (``default`` when unset), at least ``minimum``."""
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise InvalidOptionError(f"{name}={text!r}: expected a number") from None
    if not value >= minimum:  # also refuses nan
        raise InvalidOptionError(f"{name}={text!r}: must be at least {minimum}")
    return value


def _platforms(environ: Mapping[str, str]) -> tuple[tuple[Platform, ...], bool]:
    try:
        return parse_platform_choice(environ.get("BULKPULL_PLATFORM", "").strip())
    except InvalidPlatformError as exc:
        raise InvalidOptionError(f"BULKPULL_PLATFORM: {exc}") from None


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
    except InvalidOptionError as exc:
        raise InvalidOptionError(f"proxy environment variables: {exc}") from None


def _ca_cert(environ: Mapping[str, str]) -> Path | None:
    text = environ.get("BULKPULL_CA_CERT")
    if not text:
        return None
    if not Path(text).is_file():
        raise InvalidOptionError(f"BULKPULL_CA_CERT={text!r}: no such file")
    return Path(text)
