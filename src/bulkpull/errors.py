"""The exception tree and the single retry decision.

Every error bulkpull raises on purpose derives from :class:`BulkpullError`, so a caller can tell
"this image could not be pulled" from a bug. Messages name the image or URL and never a password or
a token. This module imports nothing from bulkpull.

    BulkpullError
    ├── InvalidReferenceError      (ValueError)  a reference that distribution/reference refuses
    ├── InvalidPlatformError       (ValueError)  an os/arch[/variant] we cannot parse
    ├── ImageListError             (ValueError)  a bad line in an image list: FILE:LINE: why
    ├── InvalidOptionError         (ValueError)  an option that cannot work: a proxy, a mirror
    ├── RegistryError                            the registry answered with an error status
    │   ├── AuthenticationError                  401/403, refused login, token endpoint failure
    │   ├── NotFoundError                        404: unknown repository, tag or blob
    │   └── RateLimitError                       429 TOOMANYREQUESTS: the pull limit is spent
    ├── TransportError                           connection, TLS, timeout, truncated body
    │   └── UnknownHostError                     a registry name that does not resolve
    ├── CredentialsError                         unreadable auth file, failing credential helper
    ├── VerifyKeyError             (ValueError)  a --verify-key file that is no usable public key
    ├── OutputError                              an archive or layout cannot be written
    │   └── DestinationError       (ValueError)  an output named that cannot be one
    ├── SourceError                (ValueError)  what a push was given cannot be pushed
    └── ContentError                             what came back is not what we can use
        ├── DigestMismatchError                  bytes do not hash (or size) to what was promised
        ├── UnsupportedMediaTypeError            schema1 and other types we do not pull
        ├── PlatformNotFoundError                no manifest for the wanted platform
        └── SignatureError                       no signature verifies with --verify-key
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Self

# HTTP statuses a registry or CDN uses for "try again later"; the same set as
# go-containerregistry's transport.temporaryStatusCodes.
TEMPORARY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Registry error codes that mean the same even when the status alone would not.
TEMPORARY_CODES = frozenset({"TOOMANYREQUESTS", "UNAVAILABLE"})


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on escaped (``\\x1b``, ``\\n``).

    Registries, token servers and CDNs choose the text of their error bodies, headers and
    URLs; shown raw, an escape sequence could clear the screen or forge a "pulled" line.
    Every non-printable character is escaped as Python's ``repr`` would: C0 and C1 controls,
    DEL, bidirectional overrides. Backslashes are left alone, so escaping twice changes nothing.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


class BulkpullError(Exception):
    """Root of every error bulkpull raises deliberately.

    Its message is always :func:`printable`: errors carry text the registry chose, and every
    consumer (the console, reports, logs) gets it escaped from this one place.

    ``tries`` is how many attempts the failed operation got (the retry loop raises a copy that
    says so when it gives up, see :meth:`given_up`), so a summary can say "after 4 tries"
    without parsing messages. ``retry_after`` is the wait a server asked for, if it did.
    ``final`` marks an error a retry loop has given up on, or that stands for a registry written
    off for the rest of the run: no loop retries it again, so attempts are never multiplied by
    nested loops or by images sharing one failure.
    """

    tries: int = 1
    retry_after: float | None = None
    final: bool = False

    def __str__(self) -> str:
        return printable(super().__str__())

    def given_up(self, tries: int) -> Self:
        """This error as the outcome of ``tries`` attempts that a retry loop gave up on: a new
        exception with the same type, message and fields, ``final`` when it was temporary.

        A copy, never this error changed: an error is often shared while it propagates (a
        registry's failed handshake reaches every image waiting for it, a failed download
        every image needing the blob), and each holder must keep what it was given.
        """
        copy = type(self).__new__(type(self), *self.args)
        copy.__dict__.update(self.__dict__)
        copy.tries = tries
        copy.final = is_temporary(self)
        return copy.with_traceback(self.__traceback__)


class InvalidReferenceError(BulkpullError, ValueError):
    """An image reference that distribution/reference would refuse."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"invalid reference {text!r}: {reason}")
        self.text = text
        self.reason = reason


class InvalidPlatformError(BulkpullError, ValueError):
    """A platform string that is not ``os/arch[/variant]``."""


class InvalidOptionError(BulkpullError, ValueError):
    """An option that cannot work: a proxy URL, a mirror, a registry host, a count or a delay
    out of range. Raised when the option is made, before any network I/O."""


class ImageListError(BulkpullError, ValueError):
    """An image list, or a line of one, that cannot be used: ``str()`` is ``FILE:LINE: reason``,
    or ``SOURCE: reason`` where no line number applies (an unreadable file, ``--image``).

    ``source`` names the list (a file, ``<stdin>``) or, for a problem between parsed images, the
    image itself (its ``FILE:LINE``).
    """

    def __init__(self, source: str, line: int | None, reason: str) -> None:
        super().__init__(f"{source}:{line}: {reason}" if line else f"{source}: {reason}")
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
        hint: str = "",
        *,
        summary: str = "",
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        # Escaped here, where the registry's words enter: codes and messages are data too (the
        # report shows them), not only part of the message.
        self.diagnostics = tuple(
            RegistryDiagnostic(printable(d.code), printable(d.message), printable(d.detail))
            for d in diagnostics
        )
        # Seconds the server asked us to wait (Retry-After), already parsed by the transport.
        self.retry_after = retry_after
        said = "; ".join(str(d) for d in self.diagnostics) or printable(text.strip()[:200])
        detail = f"{status} {said or _phrase(status)}".rstrip()
        # ``hint``: what bulkpull knows and the registry does not say (why no login was sent);
        # ``summary``: the whole message, where bulkpull can say it better than the answer.
        super().__init__(summary or f"{method} {url}: {detail}" + (f"; {hint}" if hint else ""))

    @property
    def codes(self) -> frozenset[str]:
        return frozenset(d.code for d in self.diagnostics)


def _phrase(status: int) -> str:
    """``Unauthorized`` for 401: what a status means where the answer says nothing (the
    answer to a ``HEAD`` has no body); "" for a status HTTP does not name."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class AuthenticationError(RegistryError):
    """Credentials were refused or are needed; retrying will not help."""


class NotFoundError(RegistryError):
    """The repository, tag, manifest or blob does not exist."""


class RateLimitError(RegistryError):
    """A registry refused with ``429 TOOMANYREQUESTS`` and no wait worth waiting out: Docker
    Hub's pull limit counts per six hours, so backing off for seconds only repeats the refusal.
    The rest of that registry's images fail at once with this same error."""

    final = True  # no retry loop waits out a limit counted in hours

    def __init__(self, registry: str, refused: RegistryError, limit: str, advice: str) -> None:
        shown = f" ({limit})" if limit else ""
        super().__init__(
            refused.method,
            refused.url,
            refused.status,
            refused.diagnostics,
            retry_after=refused.retry_after,
            summary=f"{registry}: pull rate limit reached{shown}; {advice}",
        )
        self.registry = registry


class TransportError(BulkpullError):
    """The request did not complete: connection, TLS, timeout or a cut-short body."""


class UnknownHostError(TransportError):
    """A host name that does not resolve: asking again in a few seconds gives the same answer."""


class OutputError(BulkpullError):
    """An archive or layout could not be written (disk full, permissions, a bad path)."""


class DestinationError(OutputError, ValueError):
    """The outputs a pull was asked for cannot be: a file where a directory must be, a
    directory where the bundle's file must be, an archive name longer than a file name may be.
    Raised before any request is made; the command line exits 2 on it, as on a bad flag."""


class SourceError(BulkpullError, ValueError):
    """What a push was given cannot be pushed: a path that is no OCI archive or layout (a
    compressed tar, a docker archive without ``index.json``), an image without a name to push
    it under, two images claiming one name. Raised before any request; the command line exits
    2 on it, as on a bad list line."""


class CredentialsError(BulkpullError):
    """A credential source failed: an unreadable or malformed auth file, a credential helper
    that is missing or errs. The message names the file or helper, never a secret."""


class VerifyKeyError(BulkpullError, ValueError):
    """A ``--verify-key`` file that is not a cosign public key bulkpull can verify with: not
    PEM, a private key given by mistake, an unsupported algorithm. Raised before any request;
    the command line exits 2 on it, as on a bad flag."""


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

    def __init__(self, what: str, media_type: str, hint: str = "") -> None:
        said = f"{what}: unsupported media type {media_type!r}"
        super().__init__(f"{said}: {hint}" if hint else said)
        self.media_type = media_type


class PlatformNotFoundError(ContentError):
    """No manifest for the wanted platform: an index without it, or an image of another."""

    def __init__(
        self, what: str, wanted: str, available: Sequence[str], *, summary: str = ""
    ) -> None:
        listed = ", ".join(available) or "none"
        super().__init__(
            summary or f"{what}: no manifest for platform {wanted}; available: {listed}"
        )
        self.wanted = wanted
        self.available = tuple(available)

    @classmethod
    def only(cls, what: str, platform: str, wanted: Sequence[str]) -> PlatformNotFoundError:
        """A single-platform image that is not the platform asked for, which ``docker pull
        --platform`` refuses too: pulled anyway, it would reach hosts that cannot run it."""
        asked = ", ".join(wanted)
        return cls(what, asked, [platform], summary=f"{what} is {platform} only; asked for {asked}")


class SignatureError(ContentError):
    """An image that ``--verify-key`` refuses: no cosign signature of it verifies with the key.
    The message says why (none found, another key, another image, keyless)."""


def is_temporary(exc: BaseException) -> bool:
    """Whether repeating the same request may succeed: the one retry decision.

    Transport failures (resets, timeouts, truncated bodies) are temporary; so are registry
    answers with a throttling or server-error status, or whose every code says "later".
    Authentication, not-found, rate-limit, unknown-host and content errors are permanent, and
    so is any error marked ``final``.
    """
    if not isinstance(exc, BulkpullError) or exc.final:
        return False
    if isinstance(exc, UnknownHostError | AuthenticationError | NotFoundError | RateLimitError):
        return False
    if isinstance(exc, TransportError):
        return True
    if isinstance(exc, RegistryError):
        if exc.status in TEMPORARY_STATUSES:
            return True
        return bool(exc.codes) and exc.codes <= TEMPORARY_CODES
    return False
