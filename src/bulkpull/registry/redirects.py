"""Redirects, followed by hand so that ``Authorization`` never leaves the origin it is for.

Blob redirects go to storage or a CDN; a registry token there is a leak, and S3-style presigned
URLs refuse requests that carry a second credential. A write (an upload, a manifest) is followed
only within its registry's origin: a push writes to the registry the user named and nowhere else.
Imports ``errors``, ``routing`` and ``session``.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urljoin, urlsplit

from bulkpull.errors import RegistryError
from bulkpull.registry.routing import origin_of, redact
from bulkpull.registry.session import Body, Opener, Request, Response

MAX_REDIRECTS = 10
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Requests that read and never write; only these may be redirected to another host.
READS = frozenset({"GET", "HEAD"})


async def follow(
    open_request: Opener,
    method: str,
    url: str,
    origin: str,
    headers: Mapping[str, str],
    authorization: str | None,
    *,
    stream: bool = False,
    body: Body | None = None,
) -> Response:
    """Send through ``open_request`` and follow redirects, attaching ``authorization`` only to
    requests to ``origin``; returns the first answer that is no redirect.

    A redirect loop, one to anything but http(s), or one taking a write to another origin is a
    permanent error: asking again leads to the same place.
    """
    for _ in range(MAX_REDIRECTS + 1):
        sent = dict(headers)
        if authorization and origin_of(url) == origin:
            sent["Authorization"] = authorization
        response = await open_request(Request(method, url, sent, stream=stream, body=body))
        location = response.headers.get("Location")
        if response.status not in REDIRECT_STATUSES or not location:
            return response
        response.release()
        target = urljoin(url, location)
        if urlsplit(target).scheme not in ("http", "https"):
            raise RegistryError(
                method,
                redact(url),
                response.status,
                text=f"redirects to {redact(target)}, which is not an http(s) URL",
            )
        if method not in READS and origin_of(target) != origin:
            raise RegistryError(
                method,
                redact(url),
                response.status,
                text=f"redirects a write to {redact(target)}, another host: not followed",
            )
        url = target
    raise RegistryError(
        method, redact(url), response.status, text=f"more than {MAX_REDIRECTS} redirects"
    )
