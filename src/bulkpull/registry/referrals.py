"""The requests of referrer discovery, sent: ``discovery``'s flow driven against a registry.

``discovery.discover`` decides what to ask for and makes sense of the answers; this module
sends each request through the run's :class:`Transport` (authentication, mirrors, retries as
for any manifest) and hands back the answer. The answers the flow reads as "not here" (404,
and the 400 and 406 of registries that do not know the Referrers API route) come back as
answers, not errors; any other error status ends the discovery, and with it the image. A tag
is asked for with ``HEAD`` first: most are missing, and a missing one then costs no GET. Imports
``transport``, ``session`` and the value modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

from bulkpull.digest import Digest
from bulkpull.discovery import Answer, Flow, Found, GetManifest, Request, discover
from bulkpull.errors import RegistryError, is_temporary
from bulkpull.manifest import MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, OCI_INDEX
from bulkpull.reference import Reference
from bulkpull.referrers import ReferrerFilter
from bulkpull.registry.transport import Transport

# The error statuses the flow reads itself (see ``discovery``): 404 for a missing tag or a
# registry without the API, 400 and 406 from registries that do not know the route.
_ANSWERED_STATUSES: Final = frozenset({400, 404, 406})


async def find_referrers(
    transport: Transport,
    reference: Reference,
    subjects: Sequence[Digest],
    keep: ReferrerFilter,
    api: bool | None = None,
) -> Found:
    """What refers to ``subjects`` (manifests of ``reference``'s repository), kept by
    ``keep``: the flow of :func:`discovery.discover`, its requests sent one by one. ``api``
    is whether the repository has the Referrers API, when an earlier discovery found out."""
    flow: Flow = discover(subjects, keep, str(reference), api)
    try:
        request = next(flow)
        while True:
            answer = await _send(transport, reference, request)
            request = flow.send(answer)
    except StopIteration as done:
        found: Found = done.value
        return found


async def _send(transport: Transport, reference: Reference, request: Request) -> Answer:
    if isinstance(request, GetManifest):
        path = f"/v2/{reference.path}/manifests/{request.reference}"
        accept = MANIFEST_ACCEPT
        if not request.reference.startswith("sha256:"):
            missing = await _missing_tag(transport, reference, path)
            if missing is not None:
                return missing
    elif request.page:
        # next_page has held the page to the registry's origin; only its path is sent, so
        # the registry's credentials go where they always go.
        parts = urlsplit(request.page)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        accept = OCI_INDEX
    else:
        path = f"/v2/{reference.path}/referrers/{request.subject}"
        accept = OCI_INDEX
    return await _get(transport, reference, path, accept)


async def _missing_tag(transport: Transport, reference: Reference, path: str) -> Answer | None:
    """The 404 of a tag that is not there, learnt with ``HEAD``; None when the tag may be
    there (the GET then fetches it). Most images have no cosign tags and no tag-schema index,
    and Docker Hub counts manifest GETs against its pull limit, not HEADs."""
    try:
        async with transport.request(
            "HEAD", reference.registry_host, reference.path, path, {"Accept": MANIFEST_ACCEPT}
        ):
            return None
    except RegistryError as exc:
        if exc.status == 404:
            return Answer(404, exc.url)
        if exc.final or is_temporary(exc) or exc.method != "HEAD":
            raise  # throttled, retried out, or the token endpoint refused us: so would a GET be
        return None  # a HEAD error has no body to explain it; the GET says what is wrong


async def _get(transport: Transport, reference: Reference, path: str, accept: str) -> Answer:
    """One GET, its error statuses that the flow reads returned as answers."""
    try:
        async with transport.request(
            "GET", reference.registry_host, reference.path, path, {"Accept": accept}
        ) as response:
            body = await response.read(MAX_MANIFEST_BYTES)
            return Answer(
                response.status,
                response.url,
                response.content_type,
                body,
                response.headers.get("Link", ""),
            )
    except RegistryError as exc:
        if exc.status not in _ANSWERED_STATUSES:
            raise
        return Answer(exc.status, exc.url)
