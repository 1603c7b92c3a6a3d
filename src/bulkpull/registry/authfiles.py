"""Docker's ``config.json`` and podman's ``auth.json``, and the credential helpers they name.

Both files hold ``auths`` (base64 logins, identity tokens) and ``credHelpers``; Docker's also
``credsStore``. The tools read the same format differently, which :class:`Dialect` says.
Credential helpers (``docker-credential-NAME get``) run only when a registry asks for
credentials, once per registry and run. Imports ``errors``, ``routing`` and ``auth``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulkpull.errors import CredentialsError
from bulkpull.registry.auth import Credentials
from bulkpull.registry.routing import DOCKER_HUB, registry_key

log = logging.getLogger("bulkpull")

# What docker-credential-helpers print (and exit non-zero with) for an unknown server.
HELPER_NOT_FOUND = "credentials not found in native keychain"
# A helper's user name that marks its secret as an identity token.
HELPER_TOKEN_USERNAME = "<token>"
# Helpers may unlock a keyring; give them time, but never hang a run.
HELPER_TIMEOUT = 60.0
# The longest part of a failing helper's output worth quoting in an error.
HELPER_MESSAGE_CHARS = 200
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True, slots=True)
class Dialect:
    """How Docker and podman read the same file format differently."""

    # podman files may hold logins for a namespace (quay.io/org), matched longest first.
    namespaced_keys: bool
    # Docker sends every registry without a credHelpers entry to credsStore; podman ignores it.
    uses_creds_store: bool
    # What a credential helper is asked for Docker Hub.
    hub_server: str


DOCKER = Dialect(
    namespaced_keys=False, uses_creds_store=True, hub_server="https://index.docker.io/v1/"
)
PODMAN = Dialect(namespaced_keys=True, uses_creds_store=False, hub_server=DOCKER_HUB)


class AuthFile:
    """One Docker ``config.json`` or podman ``auth.json``: ``auths``, ``credHelpers`` and, for
    Docker, ``credsStore``."""

    def __init__(
        self,
        path: Path,
        document: Mapping[str, Any],
        dialect: Dialect,
        environ: Mapping[str, str],
    ) -> None:
        self.path = path
        self._dialect = dialect
        self._environ = environ
        self._logins = {
            self._key(key): _login(entry, f"{path}: auths[{key!r}]")
            for key, entry in _ordered(_section(document, "auths", path), dialect)
        }
        self._helpers = {
            registry_key(key): _helper_name(name, path)
            for key, name in _section(document, "credHelpers", path).items()
        }
        store = document.get("credsStore") if dialect.uses_creds_store else None
        self._store = _helper_name(store, path) if store else None
        self._helper_answers: dict[tuple[str, str], Credentials | None] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path, dialect: Dialect, environ: Mapping[str, str]) -> AuthFile | None:
        """The file at ``path`` read as ``dialect`` does, or None when there is none."""
        document = _read_json(path)
        return None if document is None else cls(path, document, dialect, environ)

    def __str__(self) -> str:
        return str(self.path)

    def find(self, registry: str, repository: str) -> Credentials | None:
        key = registry_key(registry)
        helper = self._helpers.get(key) or self._store
        if helper is not None:
            return self._ask_helper(helper, key)
        for candidate in self._candidates(key, repository):
            login = self._logins.get(candidate)
            if login is not None:
                return login
        return None

    def _candidates(self, key: str, repository: str) -> Iterator[str]:
        """The keys that may hold the login, most specific first."""
        if self._dialect.namespaced_keys:
            parts = repository.split("/") if repository else []
            for end in range(len(parts), 0, -1):
                yield f"{key}/{'/'.join(parts[:end])}"
        yield key

    def _key(self, key: str) -> str:
        """A key as ``_candidates`` spells it: ``host[:port]`` (Docker Hub as docker.io), plus
        the namespace for podman. URL-style keys (``https://host/v1/``) keep only the host."""
        registry = registry_key(key)
        if not self._dialect.namespaced_keys or "://" in key:
            return registry
        namespace = key.strip().partition("/")[2].strip("/")
        return f"{registry}/{namespace}" if namespace else registry

    def _ask_helper(self, helper: str, key: str) -> Credentials | None:
        server = self._dialect.hub_server if key == DOCKER_HUB else key
        with self._lock:
            if (helper, server) not in self._helper_answers:
                log.info("%s: asking docker-credential-%s (named in %s)", key, helper, self.path)
                answer = credential_helper_get(helper, server, self._environ)
                self._helper_answers[(helper, server)] = answer
            return self._helper_answers[(helper, server)]


def credential_helper_get(
    helper: str, server: str, environ: Mapping[str, str]
) -> Credentials | None:
    """Run ``docker-credential-HELPER get`` for ``server``: the one program bulkpull runs.

    The protocol of docker-credential-helpers: the server on stdin, ``{"Username", "Secret"}``
    on stdout; a non-zero exit saying "credentials not found" means no login (None). A user
    named ``<token>`` marks the secret as an identity token.
    """
    program = f"docker-credential-{helper}"
    executable = shutil.which(program, path=environ.get("PATH", os.defpath))
    if executable is None:
        raise CredentialsError(f"credential helper {program} is not on PATH")
    try:
        done = subprocess.run(
            [executable, "get"],
            input=server.encode(),
            capture_output=True,
            env=dict(environ),
            timeout=HELPER_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CredentialsError(f"{program} get {server}: no answer in {exc.timeout:.0f}s") from None
    except OSError as exc:
        raise CredentialsError(f"{program} get {server}: {exc.strerror}") from None
    said = (done.stdout or done.stderr).decode(errors="replace").strip()
    if done.returncode != 0:
        if HELPER_NOT_FOUND in said:
            return None
        first_line = said.splitlines()[0][:HELPER_MESSAGE_CHARS] if said else "no message"
        raise CredentialsError(f"{program} get {server}: exit code {done.returncode}: {first_line}")
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        answer = None
    fields = answer if isinstance(answer, dict) else {}
    username, secret = fields.get("Username"), fields.get("Secret")
    if not isinstance(username, str) or not isinstance(secret, str):
        raise CredentialsError(f"{program} get {server}: no credentials JSON on stdout")
    if not secret:
        return None
    if username == HELPER_TOKEN_USERNAME:
        return Credentials("", "", identity_token=secret)
    return Credentials(username, secret)


def _read_json(path: Path) -> dict[str, Any] | None:
    """The file's top-level object; None when there is no file."""
    try:
        text = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise CredentialsError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        # The position only: the parser's message may quote the file, secrets and all.
        where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise CredentialsError(f"{path}: not valid JSON{where}") from None
    if not isinstance(document, dict):
        raise CredentialsError(f"{path}: not a JSON object")
    return document


def _section(document: Mapping[str, Any], name: str, path: Path) -> dict[str, Any]:
    section = document.get(name)
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise CredentialsError(f"{path}: {name} is not an object")
    return section


def _ordered(auths: Mapping[str, Any], dialect: Dialect) -> list[tuple[str, Any]]:
    """Entries with the spelling the tool itself writes last, so that it wins when another
    spelling of the same registry is present too (Docker: ``https://index.docker.io/v1/``)."""
    canonical = {dialect.hub_server}
    return sorted(auths.items(), key=lambda item: item[0] in canonical)


def _login(entry: object, where: str) -> Credentials | None:
    """One ``auths`` entry: ``auth`` (base64 of ``user:password``), or ``username`` and
    ``password``, and an optional ``identitytoken``. ``{}`` is a marker helpers leave: None."""
    if not isinstance(entry, dict):
        raise CredentialsError(f"{where} is not an object")
    username, password = entry.get("username") or "", entry.get("password") or ""
    token = entry.get("identitytoken") or ""
    if entry.get("auth"):
        username, password = _decode_auth(entry["auth"], where)
    if not all(isinstance(value, str) for value in (username, password, token)):
        raise CredentialsError(f"{where}: username, password and identitytoken must be strings")
    if not (username or password or token):
        return None
    return Credentials(username, password, identity_token=token)


def _decode_auth(value: object, where: str) -> tuple[str, str]:
    """``auth`` as Docker decodes it: base64 ``user:password``, split at the first colon,
    trailing NULs trimmed; an empty user is invalid."""
    if not isinstance(value, str):
        raise CredentialsError(f"{where}: auth is not base64 text")
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (ValueError, binascii.Error):
        raise CredentialsError(f"{where}: auth is not base64 text") from None
    username, colon, password = decoded.partition(":")
    if not colon or not username:
        raise CredentialsError(f"{where}: auth is not base64 of user:password")
    return username, password.rstrip("\x00")


def _helper_name(name: object, path: Path) -> str:
    """A helper name becomes part of a program name: letters, digits, ``.``, ``_``, ``-``."""
    if not isinstance(name, str) or not _HELPER_NAME.fullmatch(name):
        raise CredentialsError(f"{path}: {name!r} is not a credential helper name")
    return name
