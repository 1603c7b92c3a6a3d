"""The exception tree and the single retry decision.

Every error bulkpull raises on purpose derives from :class:`BulkpullError`, so a caller can tell
"this image could not be pulled" from a bug. Messages name the image or URL and never a password or
a token. This module imports nothing from bulkpull.

    BulkpullError
    ├── InvalidReferenceError      (ValueError)  a reference that distribution/reference refuses
    ├── InvalidPlatformError       (ValueError)  an os/arch[/variant] we cannot parse
    ├── ImageListError             (ValueError)  a bad line in an image list: FILE:LINE: why
    ├── RegistryError                            the registry answered with an error status
    │   ├── AuthenticationError                  401/403, refused login, token endpoint failure
    │   └── NotFoundError                        404: unknown repository, tag or blob
    ├── TransportError                           connection, TLS, timeout, truncated body
    ├── CredentialsError                         unreadable auth file, failing credential helper
    ├── OutputError                              an archive or layout cannot be written
    └── ContentError                             what came back is not what we can use
        ├── DigestMismatchError                  bytes do not hash (or size) to what was promised
        ├── UnsupportedMediaTypeError            schema1 and other types we do not pull
        └── PlatformNotFoundError                no manifest for the wanted platform
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# HTTP statuses a registry or CDN uses for "try again later"; the same set as
# go-containerregistry's transport.temporaryStatusCodes.
TEMPORARY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Registry error codes that mean the same even when the status alone would not.
TEMPORARY_CODES = frozenset({"TOOMANYREQUESTS", "UNAVAILABLE"})


class BulkpullError(Exception):
    """Root of every error bulkpull raises deliberately.

    ``tries`` is how many attempts the failed operation got before giving up (set by the
    retry loop), so a summary can say "after 4 tries" without parsing messages.
    """

    tries: int = 1


class InvalidReferenceError(BulkpullError, ValueError):
    """An image reference that distribution/reference would refuse."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"invalid reference {text!r}: {reason}")
        self.text = text
        self.reason = reason


class InvalidPlatformError(BulkpullError, ValueError):
    """A platform string that is not ``os/arch[/variant]``."""


class ImageListError(BulkpullError, ValueError):
    """A line of an image list that cannot be used; ``str()`` is ``FILE:LINE: reason``."""

    def __init__(self, source: str, line: int, reason: str) -> None:
        super().__init__(f"{source}:{line}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RegistryDiagnostic:
    """One entry of a registry's ``{"errors": [...]}`` body."""

    code: str
    message: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code


class RegistryError(BulkpullError):
    """A registry (or token server, or CDN) answered with an error status."""

    def __init__(
        self,
        method: str,
        url: str,
        status: int,
        diagnostics: Sequence[RegistryDiagnostic] = (),
        text: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.diagnostics = tuple(diagnostics)
        # Seconds the server asked us to wait (Retry-After), already parsed by the transport.
        self.retry_after = retry_after
        said = "; ".join(str(d) for d in self.diagnostics) or text.strip()[:200]
        detail = f"{status} {said}" if said else str(status)
        super().__init__(f"{method} {url}: {detail}")

    @property
    def codes(self) -> frozenset[str]:
        return frozenset(d.code for d in self.diagnostics)


class AuthenticationError(RegistryError):
    """Credentials were refused or are needed; retrying will not help."""


class NotFoundError(RegistryError):
    """The repository, tag, manifest or blob does not exist."""


class TransportError(BulkpullError):
    """The request did not complete: connection, TLS, timeout or a cut-short body."""


class OutputError(BulkpullError):
    """An archive or layout could not be written (disk full, permissions, a bad path)."""


class CredentialsError(BulkpullError):
    """A credential source failed: an unreadable or malformed auth file, a credential helper
    that is missing or errs. The message names the file or helper, never a secret."""


class ContentError(BulkpullError):
    """The registry answered, but the content cannot be used."""


class DigestMismatchError(ContentError):
    """Bytes whose digest or size differs from what the manifest or reference promised."""

    def __init__(self, what: str, expected: str, actual: str, size: int | None = None) -> None:
        got = f"{actual} ({size} bytes)" if size is not None else actual
        super().__init__(f"{what}: digest mismatch: expected {expected}, got {got}")
        self.expected = expected
        self.actual = actual
        self.size = size


class UnsupportedMediaTypeError(ContentError):
    """A manifest type bulkpull does not pull (schema1, or one it does not know)."""

    def __init__(self, what: str, media_type: str) -> None:
        super().__init__(f"{what}: unsupported media type {media_type!r}")
        self.media_type = media_type


class PlatformNotFoundError(ContentError):
    """No manifest for the wanted platform: an index without it, or an image of another."""

    def __init__(self, what: str, wanted: str, available: Sequence[str]) -> None:
        listed = ", ".join(available) or "none"
        super().__init__(f"{what}: no manifest for platform {wanted}; available: {listed}")
        self.wanted = wanted
        self.available = tuple(available)

    @classmethod
    def only(cls, what: str, platform: str, wanted: Sequence[str]) -> PlatformNotFoundError:
        """A single-platform image that is not the platform asked for, which ``docker pull
        --platform`` refuses too: pulled anyway, it would reach hosts that cannot run it."""
        error = cls(what, ", ".join(wanted), [platform])
        error.args = (f"{what} is {platform} only; asked for {', '.join(wanted)}",)
        return error


def is_temporary(exc: BaseException) -> bool:
    """Whether repeating the same request may succeed: the one retry decision.

    Transport failures (resets, timeouts, truncated bodies) are temporary; so are registry
    answers with a throttling or server-error status, or whose every code says "later".
    Authentication, not-found and content errors are permanent.
    """
    if isinstance(exc, TransportError):
        return True
    if isinstance(exc, AuthenticationError | NotFoundError):
        return False
    if isinstance(exc, RegistryError):
        if exc.status in TEMPORARY_STATUSES:
            return True
        return bool(exc.codes) and exc.codes <= TEMPORARY_CODES
    return False
