"""Writing to one registry: blob uploads (whole, in chunks, resumed, mounted) and manifests.

A :class:`PushClient` is bound to the registry it was made for: every method takes a repository
path, never a host, and an upload ``Location`` that points anywhere but that registry's origin
is refused, as is a redirect of a write (``redirects``). So a push cannot write to any other
registry, whatever a registry answers. Tokens are asked for with the push scope
(``repository:NAME:pull,push``), plus the pull of the repository a blob is mounted from.

The requests follow the distribution spec's push side: ``HEAD`` of a blob; ``POST`` to open an
upload (with ``mount``/``from`` to cross-mount); ``PATCH`` with ``Content-Range`` for a chunk;
``GET`` of the upload's location for what the registry holds; ``PUT ?digest=`` to close it, with
the whole blob in it for a small one; ``PUT`` of a manifest, whose ``Docker-Content-Digest``
must be the digest of the bytes sent (and whose ``OCI-Subject`` says whether the registry
indexed a referrer itself); ``GET`` of a manifest (a referrers tag schema index, to merge into)
and of the Referrers API (whether there is one); ``GET`` of a small blob (a signature payload).
What to do when one fails is the caller's decision (the push orchestration resumes or starts
over). Imports ``transport``, ``session``, ``auth``, ``redirects``, ``routing`` and the value
modules.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from urllib.parse import quote, urljoin, urlsplit

from bulkpull.digest import Digest
from bulkpull.errors import (
    AuthenticationError,
    BulkpullError,
    ContentError,
    DigestMismatchError,
    InvalidReferenceError,
    NotFoundError,
    RegistryError,
)
from bulkpull.manifest import MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, OCI_INDEX
from bulkpull.referrers import is_referrers_list
from bulkpull.registry.auth import pull_scope, push_scope
from bulkpull.registry.redirects import READS
from bulkpull.registry.routing import redact
from bulkpull.registry.session import Body, Response
from bulkpull.registry.transport import Transport

# distribution answers "0-<end>"; some registries put "bytes=" in front.
log = logging.getLogger("bulkpull")

_RANGE = re.compile(r"(?:bytes=)?0-(\d+)")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# What a registry without the Referrers API answers its route with (as for a pull).
_NO_REFERRERS_API = frozenset({400, 404, 406})
OCTET_STREAM = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class UploadSession:
    """An upload the registry holds open: where the next request goes (its latest
    ``Location``, absolute), how many bytes of the blob it has, and the smallest chunk it
    takes (``OCI-Chunk-Min-Length``; 0 when it did not say)."""

    repository: str
    location: str
    offset: int = 0
    min_chunk: int = 0


class PushClient:
    """Requests that write to ``registry`` (``host[:port]``) through a shared transport.

    ``read_only``: a client that only asks (``HEAD``), with the pull scope, and never writes:
    what a check of the registry against a lock file needs.
    """

    def __init__(self, transport: Transport, registry: str, *, read_only: bool = False) -> None:
        self.transport = transport
        self.registry = registry
        self.read_only = read_only

    async def has_blob(self, repository: str, digest: Digest) -> bool:
        """Whether ``repository`` holds the blob (``HEAD``): then it need not be uploaded."""
        try:
            async with self._send("HEAD", repository, f"/v2/{repository}/blobs/{digest}"):
                return True
        except NotFoundError:
            return False

    async def manifest_digest(self, repository: str, reference: str) -> Digest | None:
        """The digest ``repository:reference`` names now (``HEAD``), None when it names none
        or the registry will not say."""
        path = f"/v2/{repository}/manifests/{reference}"
        try:
            async with self._send(
                "HEAD", repository, path, {"Accept": MANIFEST_ACCEPT}
            ) as response:
                return _header_digest(response)
        except NotFoundError:
            return None

    async def fetch_manifest(self, repository: str, reference: str) -> tuple[bytes, str] | None:
        """What ``repository:reference`` holds (``GET``) and its ``Content-Type``, None when
        it holds nothing; checked against the digest the registry names for it."""
        path = f"/v2/{repository}/manifests/{reference}"
        try:
            async with self._send("GET", repository, path, {"Accept": MANIFEST_ACCEPT}) as response:
                raw = await response.read(MAX_MANIFEST_BYTES)
                said, content_type = _header_digest(response), response.content_type
        except NotFoundError:
            return None
        if said is not None and said != Digest.of(raw):
            what = f"manifest {reference} of {repository}"
            raise DigestMismatchError(
                f"{what} (Docker-Content-Digest)", str(said), str(Digest.of(raw))
            )
        return raw, content_type

    async def fetch_blob(self, repository: str, digest: Digest, limit: int) -> bytes:
        """A small blob's bytes (``GET``; a signature payload), checked against ``digest``."""
        path = f"/v2/{repository}/blobs/{digest}"
        async with self._send("GET", repository, path) as response:
            data = await response.read(limit)
        if Digest.of(data) != digest:
            what = f"blob {digest} of {repository}"
            raise DigestMismatchError(what, str(digest), str(Digest.of(data)), len(data))
        return data

    async def has_referrers_api(self, repository: str, subject: Digest) -> bool:
        """Whether the registry lists referrers itself: ``GET /v2/<name>/referrers/<subject>``
        answers an OCI index (a 404, 400 or 406, or anything else, means it does not)."""
        path = f"/v2/{repository}/referrers/{subject}"
        try:
            async with self._send("GET", repository, path, {"Accept": OCI_INDEX}) as response:
                return is_referrers_list(response.headers.get("Content-Type", ""))
        except RegistryError as exc:
            if exc.status in _NO_REFERRERS_API:
                return False
            raise

    async def mount(self, repository: str, digest: Digest, source: str) -> UploadSession | None:
        """Ask to mount the blob from ``source`` (another repository of this registry): None
        when mounted, else the upload the registry opened instead (it declined, 202).

        A registry that refuses the mount outright (a token without pull on ``source``, which
        distribution refuses with 401, or an unknown source) gets an ordinary upload request.
        """
        query = f"?mount={digest}&from={quote(source, safe='/')}"
        path = f"/v2/{repository}/blobs/uploads/{query}"
        try:
            async with self._send(
                "POST",
                repository,
                path,
                {"Content-Length": "0"},
                scope=push_scope(repository, source),
            ) as response:
                if response.status == 201:
                    _check_digest(response, digest, f"mount of {digest} into {repository}")
                    return None
                return await self._session(repository, response)
        except (AuthenticationError, NotFoundError):
            return await self.start(repository)

    async def start(self, repository: str) -> UploadSession:
        """Open an upload (``POST``)."""
        path = f"/v2/{repository}/blobs/uploads/"
        async with self._send("POST", repository, path, {"Content-Length": "0"}) as response:
            return await self._session(repository, response)

    async def cancel(self, upload: UploadSession) -> None:
        """Close an upload that will not be used (``DELETE`` of its location), so that the
        registry need not keep it until it expires; one that cannot be closed is left to."""
        try:
            async with self._send("DELETE", upload.repository, self._path(upload.location)):
                return
        except BulkpullError as exc:
            # Not the location itself: it is a capability (distribution signs its state in).
            log.info(
                "%s/%s: %s; the upload is left to expire", self.registry, upload.repository, exc
            )

    async def status(self, upload: UploadSession) -> UploadSession:
        """What the registry holds of an upload (``GET`` of its location): its ``Range``, and
        the location to go on with. :class:`NotFoundError` when the upload is gone."""
        async with self._send("GET", upload.repository, self._path(upload.location)) as response:
            return await self._session(upload.repository, response, upload)

    async def append(self, upload: UploadSession, body: Body, length: int) -> UploadSession:
        """Send the next ``length`` bytes (``PATCH`` with ``Content-Range``); returns the
        upload with the registry's new location, ``length`` bytes further on."""
        headers = {
            "Content-Type": OCTET_STREAM,
            "Content-Range": f"{upload.offset}-{upload.offset + length - 1}",
            "Content-Length": str(length),
        }
        async with self._send(
            "PATCH", upload.repository, self._path(upload.location), headers, body=body
        ) as response:
            moved = replace(upload, offset=upload.offset + length)
            return await self._session(upload.repository, response, moved, keep_offset=True)

    async def finish(
        self, upload: UploadSession, digest: Digest, body: Body = b"", length: int = 0
    ) -> None:
        """Close the upload as the blob ``digest`` (``PUT ?digest=``), with its last ``length``
        bytes (a small blob: all of it) in ``body``."""
        joiner = "&" if urlsplit(upload.location).query else "?"
        path = self._path(upload.location) + f"{joiner}digest={digest}"
        headers = {"Content-Type": OCTET_STREAM, "Content-Length": str(length)}
        async with self._send("PUT", upload.repository, path, headers, body=body) as response:
            _check_digest(response, digest, f"upload of {digest} to {upload.repository}")

    async def put_manifest(
        self, repository: str, reference: str, raw: bytes, media_type: str
    ) -> str | None:
        """Store ``raw`` (its own bytes, under its own media type) as ``repository:reference``;
        returns the answer's ``OCI-Subject`` (None when absent), which a registry with the
        Referrers API sends for a manifest with a ``subject`` it indexed.

        The registry's ``Docker-Content-Digest`` must be the digest of ``raw``: anything else
        means it stored other bytes, and the image would not pull back as it was. A registry
        that does not say is asked with ``HEAD``.
        """
        digest = Digest.of(raw)
        what = f"manifest {digest} of {repository}"
        path = f"/v2/{repository}/manifests/{reference}"
        headers = {"Content-Type": media_type, "Content-Length": str(len(raw))}
        async with self._send("PUT", repository, path, headers, body=raw) as response:
            said = _header_digest(response)
            subject = response.headers.get("OCI-Subject")
        if said is None:
            said = await self.manifest_digest(repository, str(digest))
        if said is not None and said != digest:
            raise DigestMismatchError(f"{what} (Docker-Content-Digest)", str(digest), str(said))
        return subject

    @asynccontextmanager
    async def _send(
        self,
        method: str,
        repository: str,
        path: str,
        headers: dict[str, str] | None = None,
        *,
        scope: str | None = None,
        body: Body | None = None,
    ) -> AsyncIterator[Response]:
        """One request for ``repository`` with the push scope; a write refused with 401 or
        403 says what that likely means (a token server grants what it may without saying
        what it left out, so a login without push gets a token that cannot push)."""
        if self.read_only:
            assert method in READS, f"a read-only client sends no {method}"
            scope = pull_scope(repository)
        try:
            async with self.transport.send_to(
                method,
                self.registry,
                repository,
                path,
                headers,
                scope=scope or push_scope(repository),
                body=body,
                stream=body is not None and not isinstance(body, bytes),
            ) as response:
                yield response
        except AuthenticationError as exc:
            if method in READS or exc.method != method:
                raise
            hint = f"{self.registry} refused to let this login push to {repository}"
            raise AuthenticationError(
                exc.method, exc.url, exc.status, exc.diagnostics, hint=hint
            ) from exc

    async def _session(
        self,
        repository: str,
        response: Response,
        previous: UploadSession | None = None,
        *,
        keep_offset: bool = False,
    ) -> UploadSession:
        """The upload a response describes: its ``Location`` (resolved, and checked to be on
        this registry), its ``Range`` unless ``keep_offset``, its chunk minimum."""
        location = response.headers.get("Location") or (previous.location if previous else "")
        if not location:
            raise ContentError(f"{response.url}: the upload answer has no Location")
        absolute = await self._on_registry(location, response.url)
        offset = previous.offset if previous and keep_offset else _range_end(response)
        minimum = response.headers.get("OCI-Chunk-Min-Length", "")
        chunk = int(minimum) if minimum.isdigit() else (previous.min_chunk if previous else 0)
        return UploadSession(repository, absolute, offset, chunk)

    async def _on_registry(self, location: str, answered_at: str) -> str:
        """``location`` made absolute; refused unless it is on this registry's origin."""
        origin = await self.transport.origin(self.registry)
        absolute = urljoin(origin + "/", location)
        if _origin_key(absolute) != _origin_key(origin):
            raise ContentError(
                f"{answered_at}: the upload continues at {redact(absolute)}, not on "
                f"{self.registry}: bulkpull writes only to the registry it was given"
            )
        return absolute

    def _path(self, location: str) -> str:
        """A location on this registry as ``send_to`` takes it: path and query."""
        parts = urlsplit(location)
        return parts.path + (f"?{parts.query}" if parts.query else "")


def _origin_key(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
    return parts.scheme, (parts.hostname or "").lower(), port


def _range_end(response: Response) -> int:
    """Bytes the registry holds by its ``Range`` (``0-<last byte>``); distribution says
    ``0-0`` for an empty upload too, read as nothing held (a byte held is found out when the
    next chunk is refused, and the blob starts over)."""
    match = _RANGE.fullmatch(response.headers.get("Range", "").strip())
    if match is None:
        return 0
    end = int(match.group(1))
    return end + 1 if end else 0


def _header_digest(response: Response) -> Digest | None:
    header = response.headers.get("Docker-Content-Digest", "").strip()
    if not header:
        return None
    try:
        return Digest.parse(header)
    except InvalidReferenceError as exc:
        raise ContentError(f"{response.url}: unusable Docker-Content-Digest {header!r}") from exc


def _check_digest(response: Response, digest: Digest, what: str) -> None:
    said = _header_digest(response)
    if said is not None and said != digest:
        raise DigestMismatchError(f"{what} (Docker-Content-Digest)", str(digest), str(said))
