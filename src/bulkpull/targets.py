"""Where a pushed image goes: the target registry and namespace, and the one naming rule.

``--to REGISTRY[/NAMESPACE]`` names the registry that receives every image of a push. An image
goes to ``REGISTRY/NAMESPACE/<its repository path>:<its tag>``, so ``docker.io/library/alpine:3.20``
pushed ``--to internal:5000/mirror`` becomes ``internal:5000/mirror/library/alpine:3.20``; an image
whose name already names the target registry (renamed on its list line, say) keeps its path:
``internal:5000/team/app:1`` stays ``internal:5000/team/app:1``. An image known only by its digest
gets the tag bulkpull names such images by, ``sha256-<hex>``. ``bulkpull verify --lock
--registry`` maps lock lines by the same rule. Pure: imports ``errors``, ``digest`` and
``reference``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bulkpull.digest import Digest
from bulkpull.errors import InvalidOptionError, InvalidReferenceError
from bulkpull.reference import Reference, parse_reference

# Repository path components, as distribution/reference spells them.
_NAMESPACE = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)


@dataclass(frozen=True, slots=True)
class PushTarget:
    """A registry (``host[:port]``, lowercased) and a namespace in it ("" for none)."""

    registry: str
    namespace: str = ""

    @classmethod
    def parse(cls, text: str) -> PushTarget:
        """``REGISTRY[/NAMESPACE]``; a URL, a tag or a digest is refused, since every image
        brings its own tag. The registry must be written as a host (``localhost:5000``,
        ``registry.example``), not as a first path component Docker would read as a user."""
        given = text.strip().rstrip("/")
        if "://" in given:
            raise InvalidOptionError(f"--to {text!r}: give REGISTRY[/NAMESPACE], not a URL")
        registry, _, namespace = given.partition("/")
        if not _is_host(registry):
            raise InvalidOptionError(
                f"--to {text!r}: {registry!r} is not a registry host[:port] (a host has a dot "
                "or a port, or is localhost)"
            )
        if namespace and not _NAMESPACE.fullmatch(namespace):
            raise InvalidOptionError(
                f"--to {text!r}: {namespace!r} is not a repository path (lowercase letters, "
                "digits, separators; no tag or digest)"
            )
        return cls(registry.lower(), namespace)

    @property
    def registry_host(self) -> str:
        """The ``host[:port]`` serving the registry's API (``docker.io`` is a name)."""
        return Reference(self.registry, "library/x").registry_host

    def name_for(self, name: Reference) -> Reference:
        """Where the image named ``name`` goes: see the module's rule. Always tagged, never
        pinned (the digest is what is pushed, not part of the name)."""
        if name.domain.lower() == self.registry:
            path = name.path
        else:
            path = f"{self.namespace}/{name.path}" if self.namespace else name.path
        tag = name.tag if name.tag is not None else digest_tag(name.digest)
        try:
            return Reference(self.registry, path, tag)
        except InvalidReferenceError as exc:
            raise InvalidReferenceError(f"{self}/{path}:{tag}", exc.reason) from exc

    def __str__(self) -> str:
        return f"{self.registry}/{self.namespace}" if self.namespace else self.registry


def digest_tag(digest: Digest | None) -> str:
    """``sha256-<hex>``: the tag of an image known only by its digest (``latest`` if it has
    neither, as a reference without a tag means)."""
    return f"sha256-{digest.hex}" if digest is not None else "latest"


def _is_host(text: str) -> bool:
    """Whether ``text`` reads as a registry host the way docker tells one from a user name."""
    if not text or not ("." in text or ":" in text or text.lower() == "localhost"):
        return False
    try:
        parse_reference(f"{text}/x")
    except InvalidReferenceError:
        return False
    return True
