"""Manifest and blob requests for one image, verified against the digests that name them.

Resolving turns a reference into the exact manifest to pull: it fetches the tag or digest, checks
the bytes against the reference's digest and ``Docker-Content-Digest``, and when it finds an index
it picks the platform and fetches that manifest by digest. Blob bodies are handed out as streams;
hashing them is the blob store's job. Imports ``transport``, ``session`` and the value modules.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace

from bulkpull.digest import Digest
from bulkpull.discovery import Found
from bulkpull.errors import (
    ContentError,
    DigestMismatchError,
    InvalidReferenceError,
    NotFoundError,
    RegistryError,
    TransportError,
    is_temporary,
)
from bulkpull.manifest import (
    MANIFEST_ACCEPT,
    MAX_MANIFEST_BYTES,
    Descriptor,
    ImageIndex,
    ImageManifest,
    choose_platform,
    parse_manifest,
)
from bulkpull.platform import Platform
from bulkpull.reference import Reference
from bulkpull.referrers import ReferrerFilter
from bulkpull.registry.referrals import find_referrers
from bulkpull.registry.session import Response
from bulkpull.registry.transport import Transport
from bulkpull.resolved import FetchedManifest, ResolvedImage
from bulkpull.tasks import all_of

_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(?:\d+|\*)")


KnownManifests = Callable[[Digest], Awaitable[bytes | None]]
"""Looks up manifest bytes already on disk by digest (None when absent)."""


class RegistryClient:
    """Pulls manifests and blobs through a shared :class:`Transport`.

    With ``known``, a tag is first asked for with ``HEAD`` (which Docker Hub does not count
    against its pull limit) and a manifest already on disk is not downloaded again: a rerun of
    an unchanged list costs one small request per image.
    """

    def __init__(self, transport: Transport, known: KnownManifests | None = None) -> None:
        self.transport = transport
        self._known = known
        # Whether each repository (registry, path) has the Referrers API, once a discovery
        # there found out: a registry without it is asked once per repository.
        self._referrers_api: dict[tuple[str, str], bool] = {}

    async def referrers(
        self, reference: Reference, subjects: Sequence[Digest], keep: ReferrerFilter
    ) -> Found:
        """The signatures, SBOMs and attestations that refer to ``subjects`` (manifests of
        ``reference``'s repository), and theirs, as ``discovery`` finds them."""
        repository = (reference.registry_host, reference.path)
        api = self._referrers_api.get(repository)
        found = await find_referrers(self.transport, reference, subjects, keep, api)
        if found.api is not None:
            self._referrers_api[repository] = found.api
        return found

    async def resolve(
        self, reference: Reference, platforms: Sequence[Platform], *, every: bool = False
    ) -> list[ResolvedImage]:
        """Fetch the manifest for ``reference``; through an index, one per wanted platform,
        or with ``every`` one per entry the index lists (attestations included), in its order.

        The index is fetched once however many platforms are wanted, and two platforms that
        pick the same entry (``linux/amd64`` falling back to ``386``, say) share it.
        """
        what = str(reference)
        top = await self.fetch_manifest(reference, reference.identifier)
        content = parse_manifest(top.raw, top.media_type, what)
        top = replace(top, media_type=content.media_type)
        if isinstance(content, ImageManifest):
            return [ResolvedImage(reference, top, content)]
        chosen: list[tuple[Descriptor, Platform | None]]
        if every:
            chosen = [(entry, None) for entry in content.manifests]
        else:
            chosen = [(choose_platform(content, p, what), p) for p in platforms]
        entries: dict[Digest, tuple[Descriptor, Platform | None]] = {}
        for entry, wanted in chosen:
            entries.setdefault(entry.digest, (entry, wanted))
        return await all_of(
            self._resolve_entry(reference, top, e, wanted) for e, wanted in entries.values()
        )

    async def _resolve_entry(
        self,
        reference: Reference,
        top: FetchedManifest,
        entry: Descriptor,
        wanted: Platform | None,
    ) -> ResolvedImage:
        what = f"{reference} ({entry.platform or entry.digest})"
        child = await self.fetch_manifest(reference, str(entry.digest), expected=entry)
        child_content = parse_manifest(child.raw, child.media_type, what)
        if isinstance(child_content, ImageIndex):
            raise ContentError(f"{what}: index entry {entry.digest} is itself an index")
        child = replace(child, media_type=child_content.media_type)
        return ResolvedImage(
            reference, child, child_content, top, entry.platform, entry.is_attestation, wanted
        )

    async def fetch_manifest(
        self, reference: Reference, identifier: str, expected: Descriptor | None = None
    ) -> FetchedManifest:
        """One manifest, verified: from disk when its digest is known there, else by GET."""
        cached = await self._cached(reference, identifier) if self._known else None
        return cached or await self._get_manifest(reference, identifier, expected)

    async def head_manifest(
        self, reference: Reference, identifier: str
    ) -> tuple[Digest, str] | None:
        """The digest and media type a tag points at, or None if the registry will not say."""
        path = f"/v2/{reference.path}/manifests/{identifier}"
        try:
            async with self.transport.request(
                "HEAD", reference.registry_host, reference.path, path, {"Accept": MANIFEST_ACCEPT}
            ) as response:
                header = response.headers.get("Docker-Content-Digest", "")
                media_type = response.content_type
        except RegistryError as exc:
            if exc.final or is_temporary(exc) or exc.method != "HEAD":
                # Throttled, retried out, or the token endpoint refused us: GET would fare no
                # better (and would count against a pull limit).
                raise
            # A HEAD error has no body to explain it, and some registries refuse HEAD (405):
            # the GET that follows either works or fails with the registry's own message.
            return None
        if not header.startswith("sha256:"):
            return None
        return _header_digest(header, _manifest_named(reference, identifier)), media_type

    async def _cached(self, reference: Reference, identifier: str) -> FetchedManifest | None:
        assert self._known is not None
        media_type = ""
        if identifier.startswith("sha256:"):
            digest = Digest.parse(identifier)
        else:
            head = await self.head_manifest(reference, identifier)
            if head is None:
                return None
            digest, media_type = head
        raw = await self._known(digest)
        if raw is None or Digest.of(raw) != digest:
            return None
        return FetchedManifest(raw, media_type, digest)

    async def _get_manifest(
        self, reference: Reference, identifier: str, expected: Descriptor | None
    ) -> FetchedManifest:
        """GET one manifest and verify its bytes: against the digest asked for, and against
        ``Docker-Content-Digest`` when the registry sends one."""
        path = f"/v2/{reference.path}/manifests/{identifier}"
        async with self.transport.request(
            "GET", reference.registry_host, reference.path, path, {"Accept": MANIFEST_ACCEPT}
        ) as response:
            raw = await response.read(MAX_MANIFEST_BYTES)
            media_type = response.content_type
            header = response.headers.get("Docker-Content-Digest")
        what = _manifest_named(reference, identifier)
        actual = Digest.of(raw)
        if identifier.startswith("sha256:") and str(actual) != identifier:
            raise DigestMismatchError(what, identifier, str(actual), len(raw))
        if expected is not None and expected.size != len(raw):
            raise DigestMismatchError(
                what, f"{expected.digest} ({expected.size} bytes)", str(actual), len(raw)
            )
        if header and _header_digest(header, what) != actual:
            raise DigestMismatchError(f"{what} (Docker-Content-Digest)", header, str(actual))
        return FetchedManifest(raw, media_type, actual)

    @asynccontextmanager
    async def open_blob(
        self, reference: Reference, blob: Descriptor, offset: int = 0
    ) -> AsyncIterator[tuple[int, AsyncIterator[bytes]]]:
        """Stream a blob from ``offset``; yields where the body really starts and the chunks.

        Not retried here: a body can break after any byte, so the caller retries the whole
        download (resuming from what it kept) through :func:`bulkpull.retry.retrying`. A foreign
        (non-distributable) layer the registry does not hold is fetched from the ``urls`` its
        descriptor lists, without registry credentials, as containers/image does.
        """
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        path = f"/v2/{reference.path}/blobs/{blob.digest}"
        async with AsyncExitStack() as opened:
            try:
                response = await opened.enter_async_context(
                    self.transport.request(
                        "GET", reference.registry_host, reference.path, path, headers, stream=True
                    )
                )
            except NotFoundError as exc:
                if not blob.urls:
                    raise
                response = await opened.enter_async_context(self._open_foreign(blob, headers, exc))
            yield _body_start(response, offset), response.iter_chunks()

    @asynccontextmanager
    async def _open_foreign(
        self, blob: Descriptor, headers: dict[str, str], missing: NotFoundError
    ) -> AsyncIterator[Response]:
        """The first of the blob's ``urls`` that answers; when none does, the registry's
        ``missing`` (404) with what each URL said."""
        failures: list[str] = []
        async with AsyncExitStack() as opened:
            for url in blob.urls:
                try:
                    response = await opened.enter_async_context(
                        self.transport.request_url("GET", url, headers)
                    )
                except (RegistryError, TransportError, ContentError) as exc:
                    failures.append(str(exc))
                    continue
                yield response
                return
        raise NotFoundError(
            missing.method,
            missing.url,
            missing.status,
            missing.diagnostics,
            retry_after=missing.retry_after,
            hint=f"its urls failed too: {'; '.join(failures)}",
        )


def _body_start(response: Response, offset: int) -> int:
    """Where a blob body starts. A server that ignores ``Range`` answers 200 with the whole
    blob (start 0); a 206 is trusted only when its ``Content-Range`` begins at ``offset``."""
    if response.status != 206:
        return 0
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
    if not match or int(match.group(1)) != offset:
        raise ContentError(f"GET {response.url}: Content-Range does not start at {offset}")
    return offset


def _manifest_named(reference: Reference, identifier: str) -> str:
    """``manifest NAME:TAG`` or ``manifest NAME@DIGEST``, as users write the reference asked for
    (a tag after ``@`` reads as a broken digest)."""
    joiner = "@" if identifier.startswith("sha256:") else ":"
    return f"manifest {reference.name}{joiner}{identifier}"


def _header_digest(header: str, what: str) -> Digest:
    try:
        return Digest.parse(header.strip())
    except InvalidReferenceError as exc:
        raise ContentError(f"{what}: unusable Docker-Content-Digest {header!r}") from exc
