"""Registry credentials from the places users already keep them.

A :class:`Keychain` asks its sources in order and the first that knows the registry wins.
:meth:`Keychain.from_environment` builds the order users of docker and podman expect:

1. credentials given for every registry (``-u``/``--password``);
2. credentials given for one registry (``--creds REGISTRY=USER:PASSWORD``);
3. podman's ``auth.json``: ``$REGISTRY_AUTH_FILE`` if set, else
   ``$XDG_RUNTIME_DIR/containers/auth.json`` then ``$XDG_CONFIG_HOME/containers/auth.json``
   (``~/.config/containers/auth.json``);
4. Docker's ``config.json`` in ``$DOCKER_CONFIG`` (``~/.docker``).

Files are read when the keychain is made (see ``authfiles``), so a malformed one stops a run
before any network I/O. Imports ``routing``, ``auth`` and ``authfiles``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bulkpull.registry.auth import Credentials
from bulkpull.registry.authfiles import DOCKER, PODMAN, AuthFile
from bulkpull.registry.routing import registry_key

log = logging.getLogger("bulkpull")


class CredentialSource(Protocol):
    """Something that may know a login for a registry; ``str()`` names it in logs."""

    def find(self, registry: str, repository: str) -> Credentials | None:
        """The login for ``repository`` on ``registry`` (``host[:port]``), or None."""
        ...


class Keychain:
    """Credentials per registry, from sources asked in order; the first answer wins.

    An empty keychain pulls anonymously. ``resolve`` may run a credential helper, so it blocks;
    async callers run it in a thread.
    """

    def __init__(self, *sources: CredentialSource) -> None:
        self.sources = sources

    @classmethod
    def everywhere(cls, credentials: Credentials) -> Keychain:
        """One login for every registry."""
        return cls(_Everywhere(credentials))

    @classmethod
    def from_environment(
        cls,
        *,
        everywhere: Credentials | None = None,
        per_registry: Mapping[str, Credentials] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Keychain:
        """The keychain docker and podman users expect (see the module documentation).

        ``environ`` stands in for ``os.environ``: where the files are, and the ``PATH`` and
        environment credential helpers run with.
        """
        env = dict(os.environ if environ is None else environ)
        home = Path(env["HOME"]) if env.get("HOME") else Path.home()
        sources: list[CredentialSource] = []
        if everywhere is not None:
            sources.append(_Everywhere(everywhere))
        if per_registry:
            sources.append(_PerRegistry({registry_key(k): v for k, v in per_registry.items()}))
        files = [
            *(AuthFile.load(path, PODMAN, env) for path in _podman_auth_files(env, home)),
            AuthFile.load(_docker_config(env, home), DOCKER, env),
        ]
        sources.extend(file for file in files if file is not None)
        return cls(*sources)

    def resolve(self, registry: str, repository: str = "") -> Credentials | None:
        """The login for ``repository`` on ``registry``, or None to go anonymous."""
        for source in self.sources:
            found = source.find(registry, repository)
            if found is not None:
                log.info("%s: credentials from %s", registry, source)
                return found
        return None

    def __repr__(self) -> str:
        return f"Keychain({', '.join(str(source) for source in self.sources)})"


@dataclass(frozen=True, slots=True)
class _Everywhere:
    credentials: Credentials

    def find(self, registry: str, repository: str) -> Credentials:
        return self.credentials

    def __str__(self) -> str:
        return "the login given for every registry"


@dataclass(frozen=True, slots=True)
class _PerRegistry:
    logins: Mapping[str, Credentials]

    def find(self, registry: str, repository: str) -> Credentials | None:
        return self.logins.get(registry_key(registry))

    def __str__(self) -> str:
        return "the login given for this registry"


def _podman_auth_files(environ: Mapping[str, str], home: Path) -> list[Path]:
    """podman's auth.json search path (containers/image, containers/common)."""
    if environ.get("REGISTRY_AUTH_FILE"):
        return [Path(environ["REGISTRY_AUTH_FILE"])]
    runtime = environ.get("XDG_RUNTIME_DIR")
    runtime_dir = (
        Path(runtime) / "containers" if runtime else Path(f"/run/containers/{os.getuid()}")
    )
    config_home = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    return [runtime_dir / "auth.json", config_home / "containers" / "auth.json"]


def _docker_config(environ: Mapping[str, str], home: Path) -> Path:
    return Path(environ.get("DOCKER_CONFIG") or home / ".docker") / "config.json"
