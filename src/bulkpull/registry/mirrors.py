"""Mirrors: asked first for what the registry they stand in for holds, dropped when unusable.

Mirrors get one try each (the registry itself is the fallback); any failure moves on, and a
mirror that cannot be reached (its ``/v2/`` fails, a request times out, a body breaks off) or
whose pull limit ran out is left out for the rest of the run. Imports ``errors``, ``routing``,
``ping`` and ``session``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from bulkpull.errors import BulkpullError, RateLimitError, TransportError
from bulkpull.registry.ping import Endpoint, Endpoints
from bulkpull.registry.routing import Mirror
from bulkpull.registry.session import Response

log = logging.getLogger("bulkpull")


SendTo = Callable[[str, Endpoint, str], Awaitable[Response]]
"""Sends the request at hand to a path below ``/v2/`` of a registry or mirror whose endpoint is
known, as a pull of a repository there; returns a 2xx answer, since error statuses raise."""


class Mirrors:
    """The mirrors of a run, tried in order before the registry each serves."""

    def __init__(self, mirrors: Sequence[Mirror], endpoints: Endpoints) -> None:
        self._mirrors = tuple(mirrors)
        self._endpoints = endpoints
        self._unusable: set[str] = set()

    async def first_answer(
        self, registry: str, repository: str, path: str, send: SendTo
    ) -> tuple[str, Response] | None:
        """The first mirror of ``registry`` that answers ``send`` to ``path`` (below
        ``/v2/<repository>/``) with success, and its answer."""
        for mirror in self._mirrors:
            if not mirror.serves(registry) or mirror.host in self._unusable:
                continue
            try:
                endpoint = await self._endpoints.get(mirror.host)
            except BulkpullError as exc:
                self.drop(mirror.host, exc)
                continue
            mirrored = mirror.repository(repository)
            moved = f"/v2/{mirrored}/" + path.removeprefix(f"/v2/{repository}/")
            try:
                response = await send(moved, endpoint, mirrored)
            except (TransportError, RateLimitError) as exc:
                self.drop(mirror.host, exc)
            except BulkpullError as exc:
                log.info("mirror %s: %s; asking %s", mirror, exc, registry)
            else:
                return mirror.host, response
        return None

    def drop(self, host: str, exc: BulkpullError) -> None:
        """Leave the mirror at ``host`` out for the rest of the run."""
        if host not in self._unusable:
            self._unusable.add(host)
            log.warning("mirror %s is not used in this run: %s", host, exc)
