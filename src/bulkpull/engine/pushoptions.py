"""The knobs of a push, as one frozen value validated when it is made.

A push reaches its registry as a pull reaches one: the same logins, TLS settings, proxies,
retries and timeout, read from the same flags and variables (:meth:`PushOptions.from_pull`
takes them from a :class:`PullOptions`). Its own are how many images and uploads go at once,
how large an upload's chunks are, and where unfinished uploads are kept for the next run.
Imports ``errors``, ``retry``, ``registry`` and ``options``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bulkpull.engine.options import (
    DEFAULT_JOBS,
    PullOptions,
    keychain_of,
    read_number,
    registry_transport,
)
from bulkpull.errors import InvalidOptionError
from bulkpull.registry import (
    DEFAULT_TIMEOUT,
    Credentials,
    Keychain,
    Proxies,
    parse_host,
)

if TYPE_CHECKING:
    from bulkpull.registry import Transport

from bulkpull.retry import RetryListener, RetryPolicy

# Uploads at once, all images together: what keeps a link to a registry busy (skopeo and
# docker push a handful of layers at a time per image).
DEFAULT_MAX_UPLOADS = 8
# A blob up to this size goes in one PUT; a larger one in PATCH chunks of this size, each a
# point the upload can resume from on registries that keep a broken chunk.
DEFAULT_CHUNK_SIZE = 32 * 1024 * 1024
MIN_CHUNK_SIZE = 64 * 1024
# Where unfinished uploads are kept, below $XDG_STATE_HOME (~/.local/state).
STATE_SUBDIRECTORY = Path("bulkpull", "uploads")
# What PullOptions carries that a push uses too.
_SHARED = (
    "jobs",
    "plain_http",
    "skip_tls_verify",
    "credentials",
    "insecure_registries",
    "ca_cert",
    "proxies",
    "retry",
    "timeout",
    "referrers",
    "referrer_types",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PushOptions:
    """Everything that shapes a push besides its sources and its target.

    ``jobs`` images are read and written at once, ``max_uploads`` blob uploads at once over
    the whole run. ``chunk_size`` splits large blobs into ``PATCH`` chunks (smaller ones go
    in one ``PUT``). ``state_dir`` keeps the location of each unfinished upload so that the
    next run resumes it; by default ``$XDG_STATE_HOME/bulkpull/uploads``
    (``~/.local/state/bulkpull/uploads``). ``referrers``: the signatures, SBOMs and
    attestations carried with each image are pushed after it (only those of
    ``referrer_types``, when given). Logins, TLS, proxies, retries and the timeout mean
    what they mean for a pull (see :class:`PullOptions`).
    """

    jobs: int = DEFAULT_JOBS
    max_uploads: int = DEFAULT_MAX_UPLOADS
    chunk_size: int = DEFAULT_CHUNK_SIZE
    plain_http: bool = False
    skip_tls_verify: bool = False
    credentials: Credentials | Keychain | None = None
    insecure_registries: frozenset[str] = frozenset()
    ca_cert: Path | None = None
    proxies: Proxies = field(default_factory=Proxies)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = DEFAULT_TIMEOUT
    state_dir: Path | None = None
    referrers: bool = True
    referrer_types: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise InvalidOptionError("jobs must be > 0")
        if self.max_uploads < 1:
            raise InvalidOptionError("max_uploads must be > 0")
        if self.chunk_size < MIN_CHUNK_SIZE:
            raise InvalidOptionError(f"chunk_size must be at least {MIN_CHUNK_SIZE}")
        if self.timeout <= 0:
            raise InvalidOptionError("timeout must be > 0")
        for registry in self.insecure_registries:
            parse_host(registry)

    @classmethod
    def from_pull(cls, options: PullOptions, **fields: Any) -> PushOptions:
        """The push a pull with ``options`` would make: its logins, TLS, proxies, retries,
        timeout and jobs, with ``fields`` of a push's own."""
        shared = {name: getattr(options, name) for name in _SHARED}
        return cls(**{**shared, **fields})

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        pull: PullOptions | None = None,
        **overrides: Any,
    ) -> PushOptions:
        """The options ``bulkpull push`` would use here: what :meth:`PullOptions.from_environment`
        reads (or what ``pull`` already holds), and ``BULKPULL_MAX_UPLOADS``; keyword
        arguments win, as flags do."""
        env = os.environ if environ is None else environ
        shared = {name: value for name, value in overrides.items() if name in _SHARED}
        if pull is None:
            pull = PullOptions.from_environment(env, **shared)
        own = {name: value for name, value in overrides.items() if name not in _SHARED}
        if "max_uploads" not in own:
            own["max_uploads"] = read_number(
                env, "BULKPULL_MAX_UPLOADS", int, DEFAULT_MAX_UPLOADS, 1
            )
        return cls.from_pull(pull, **shared, **own)

    @property
    def keychain(self) -> Keychain:
        """Where each registry's login comes from, whichever form ``credentials`` took."""
        return keychain_of(self.credentials)

    def state_directory(self, environ: Mapping[str, str] | None = None) -> Path:
        """``state_dir``, else ``$XDG_STATE_HOME/bulkpull/uploads`` (``~/.local/state/…``)."""
        if self.state_dir is not None:
            return self.state_dir
        env = os.environ if environ is None else environ
        base = env.get("XDG_STATE_HOME") or str(
            Path(env.get("HOME") or Path.home(), ".local", "state")
        )
        return Path(base) / STATE_SUBDIRECTORY


def transport_for(options: PushOptions, on_retry: RetryListener | None = None) -> Transport:
    """The transport a push (or a check of its registry) with ``options`` needs: a
    connection per upload and per image at work, and no mirrors (a push writes to its
    registry and nowhere else)."""
    connections = options.max_uploads + options.jobs
    return registry_transport(options, connections=connections, on_retry=on_retry)
