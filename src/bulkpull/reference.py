"""Image references: parsing, normalization and the spellings each consumer needs.

This module owns the reference grammar. It accepts exactly what distribution/reference's
``ParseNormalizedNamed`` accepts (so a name means here what it means to docker, podman and
containerd), adds the default ``latest`` tag like ``ParseDockerRef``, and keeps both tag and digest
when a reference carries both: the digest is what gets pulled, the tag is what the archive names.

Only ``sha256`` digests are accepted, because a digest becomes a file name in the blob store.
Imports only ``errors`` and ``digest``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from bulkpull.digest import Digest
from bulkpull.errors import InvalidReferenceError

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"

# Docker Hub's old "index" name; references using it mean the same repositories as docker.io.
_LEGACY_DEFAULT_DOMAIN = "index.docker.io"
# The host that actually serves the registry API for docker.io.
_DEFAULT_REGISTRY_HOST = "registry-1.docker.io"
# Namespace of Docker Hub's official images, implied by a one-component name.
_OFFICIAL_PREFIX = "library/"
# Always a domain, even without a dot or a port.
_LOCALHOST = "localhost"
# Path length limit; the domain is not counted (distribution/reference v0.6.0 and later).
_MAX_PATH_LENGTH = 255

# Grammar pieces, spelled as in distribution/reference's regexp.go. Character classes are explicit
# ASCII because Python's \w and [[:xdigit:]] differ from Go's, and every match is a fullmatch
# because Python's $ also matches before a trailing newline.
_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_NAME_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_NAME_COMPONENT}(?:\.{_DOMAIN_NAME_COMPONENT})*"
_IPV6_ADDRESS = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6_ADDRESS})"
_DOMAIN_AND_PORT = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_IDENTIFIER = r"[a-f0-9]{64}"
_NAME = rf"(?:(?P<domain>{_DOMAIN_AND_PORT})/)?(?P<path>{_REMOTE_NAME})"

_REFERENCE_RE = re.compile(rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?")
_NAME_RE = re.compile(_NAME)
_DOMAIN_RE = re.compile(_DOMAIN_AND_PORT)
_PATH_RE = re.compile(_REMOTE_NAME)
_TAG_RE = re.compile(_TAG)
_DIGEST_RE = re.compile(_DIGEST)
_IDENTIFIER_RE = re.compile(_IDENTIFIER)


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalized image reference: where the repository lives and which manifest to pull.

    Construction validates every part against the grammar, because the domain is connected to
    and the path and tag end up in URLs and archive names.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    def __post_init__(self) -> None:
        reason = _component_problem(self.domain, self.path, self.tag)
        if reason:
            raise InvalidReferenceError(str(self), reason)

    @property
    def name(self) -> str:
        """The fully qualified repository name, ``docker.io/library/alpine``."""
        return f"{self.domain}/{self.path}"

    @property
    def registry_host(self) -> str:
        """The ``host[:port]`` serving the registry API; docker.io is a name, not a server."""
        return _DEFAULT_REGISTRY_HOST if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def familiar_name(self) -> str:
        """The name as docker prints it: without ``docker.io/`` and an official ``library/``.

        ``library/`` stays when more components follow (``library/foo/bar``), because dropping it
        would make a different, user-namespace name.
        """
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        rest = self.path.removeprefix(_OFFICIAL_PREFIX)
        return rest if "/" not in rest else self.path

    def familiar(self) -> str:
        """The familiar name with tag and digest, as ``docker save`` writes RepoTags."""
        return self.familiar_name + self._suffix()

    def __str__(self) -> str:
        return self.name + self._suffix()

    def __repr__(self) -> str:
        """``Reference('docker.io/library/alpine:3.20')``: the reference as users write it, so
        printed lists, specs and results read like image names, not like four fields."""
        return f"Reference({str(self)!r})"

    def with_tag(self, tag: str) -> Reference:
        """The same repository and digest under another tag, refused unless the tag is valid."""
        if not _TAG_RE.fullmatch(tag):
            raise InvalidReferenceError(f"{self.name}:{tag}", "invalid tag")
        return dataclasses.replace(self, tag=tag)

    @property
    def identifier(self) -> str:
        """What to ask ``/v2/<path>/manifests/`` for: the digest when known, since it is exact.

        A reference built without tag or digest asks for ``latest``, as docker does.
        """
        if self.digest is not None:
            return str(self.digest)
        return self.tag if self.tag is not None else DEFAULT_TAG

    def _suffix(self) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return tag + digest


def parse_reference(text: str) -> Reference:
    """Parse and normalize ``text`` as ``ParseNormalizedNamed`` does, defaulting the tag.

    ``alpine`` becomes ``docker.io/library/alpine:latest``; ``name:tag@digest`` keeps both.
    Raises :class:`InvalidReferenceError` for every input distribution/reference refuses, with a
    reason naming the part that is wrong.
    """
    if not text:
        raise InvalidReferenceError(text, "reference is empty")
    if _IDENTIFIER_RE.fullmatch(text):
        # Refused so an image ID is never mistaken for docker.io/library/<hex>.
        raise InvalidReferenceError(text, "cannot be a 64-character hexadecimal identifier")
    domain, remainder = _split_domain(text)
    if _has_uppercase_repository(remainder):
        raise InvalidReferenceError(text, "repository name must be lowercase")
    match = _match_reference(text, f"{domain}/{remainder}")
    if match.group("domain") is None:
        # A first component like "foo_bar.com" is taken as a domain but fails the host grammar;
        # distribution/reference then yields a name with no domain, which has no registry to ask.
        raise InvalidReferenceError(text, f"{domain!r} is not a valid registry host")
    tag, digest = match.group("tag"), _parse_digest(text, match.group("digest"))
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    try:
        return Reference(domain, match.group("path"), tag, digest)
    except InvalidReferenceError as exc:
        raise InvalidReferenceError(text, exc.reason) from exc


def _split_domain(text: str) -> tuple[str, str]:
    """Split off the registry domain the way docker guesses it (``splitDockerDomain``).

    A first component is a domain only if it cannot be a Docker Hub namespace: ``localhost``, or
    something with a dot, a port or an uppercase letter. Without any ``/`` the input is always an
    official image, so ``example.com:5000`` alone is the repository ``example.com`` tagged ``5000``.
    """
    first, slash, rest = text.partition("/")
    if not slash:
        return DEFAULT_DOMAIN, _OFFICIAL_PREFIX + text
    if first == _LEGACY_DEFAULT_DOMAIN:
        domain, path = DEFAULT_DOMAIN, rest
    elif first == _LOCALHOST or any(c in ".:" for c in first) or first.lower() != first:
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, text
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = _OFFICIAL_PREFIX + path
    return domain, path


def _has_uppercase_repository(remainder: str) -> bool:
    """Whether the repository part (up to the first ``:`` or ``@``) has uppercase letters.

    Checked before the grammar so ``docker/Docker`` reports the actual mistake, not a bare format
    error. Tags may contain uppercase, and an uppercase digest algorithm is refused later as
    unsupported, so only the part before a ``:`` or ``@`` counts.
    """
    remote = remainder.partition(":")[0].partition("@")[0]
    return remote.lower() != remote


def _match_reference(text: str, candidate: str) -> re.Match[str]:
    """Match the normalized ``candidate`` against the grammar, or say which part is wrong."""
    match = _REFERENCE_RE.fullmatch(candidate)
    if match is not None:
        return match
    lowered = candidate.lower()
    if lowered != candidate and _REFERENCE_RE.fullmatch(lowered):
        raise InvalidReferenceError(text, "repository name must be lowercase")
    raise InvalidReferenceError(text, _format_problem(candidate))


def _format_problem(candidate: str) -> str:
    """Name the part of a non-matching reference that breaks the grammar.

    "invalid reference format" is what distribution/reference says for every case; pointing at a
    bad tag or digest when the name itself is fine tells a user what to fix.
    """
    rest, at, digest = candidate.partition("@")
    name, colon, tag = rest.rpartition(":")
    if not colon or "/" in tag:
        # The last ":" belongs to a port, not a tag.
        name, colon = rest, ""
    if not _NAME_RE.fullmatch(name):
        return "invalid reference format"
    if colon and not _TAG_RE.fullmatch(tag):
        return "invalid tag"
    if at and not _DIGEST_RE.fullmatch(digest):
        return "invalid digest"
    return "invalid reference format"


def _parse_digest(text: str, value: str | None) -> Digest | None:
    """Validate a digest that matched the grammar; only sha256 can name a blob here."""
    if value is None:
        return None
    try:
        return Digest.parse(value)
    except InvalidReferenceError as exc:
        raise InvalidReferenceError(text, exc.reason) from exc


def _component_problem(domain: str, path: str, tag: str | None) -> str | None:
    """Why these parts cannot form a reference, or None when they can."""
    if not _DOMAIN_RE.fullmatch(domain):
        return "invalid registry domain"
    if not _PATH_RE.fullmatch(path):
        return "invalid repository name"
    if len(path) > _MAX_PATH_LENGTH:
        return f"repository name must not be longer than {_MAX_PATH_LENGTH} characters"
    if tag is not None and not _TAG_RE.fullmatch(tag):
        return "invalid tag"
    return None
