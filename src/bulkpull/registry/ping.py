"""The ``/v2/`` handshake: where a registry answers, in which scheme, and which auth it asks for.

Each registry is pinged once per run, however many requests wait for it. HTTPS comes first; HTTP
when asked for, or as a fallback for insecure and loopback registries (what Docker does). A
handshake that failed stays failed: every later request to that registry gets the same error at
once instead of waiting out another round of retries. Imports ``errors``, ``retry``, ``auth``,
``routing``, ``ratelimit`` and ``session``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from bulkpull.errors import BulkpullError
from bulkpull.registry.auth import Challenge, parse_challenges
from bulkpull.registry.ratelimit import Throttle
from bulkpull.registry.routing import SecurityPolicy
from bulkpull.registry.session import Request, is_certificate_error
from bulkpull.retry import RetryListener, RetryPolicy, retrying
from bulkpull.tasks import SharedTasks

log = logging.getLogger("bulkpull")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a registry answers and how it wants to be authenticated, learnt from ``/v2/``."""

    host: str
    origin: str
    challenge: Challenge | None


def pick_challenge(challenges: list[Challenge]) -> Challenge | None:
    """The challenge to answer: Bearer before Basic; None when neither is offered."""
    by_scheme = {challenge.scheme: challenge for challenge in challenges}
    return by_scheme.get("bearer") or by_scheme.get("basic")


class Endpoints:
    """The endpoint of each registry, learnt once per run.

    A host in ``single_try`` (a mirror) gets one try: falling back to the registry is its
    retry. Others are retried under ``retry``.
    """

    def __init__(
        self,
        throttle: Throttle,
        security: SecurityPolicy,
        retry: RetryPolicy,
        *,
        single_try: frozenset[str] = frozenset(),
        on_retry: RetryListener | None = None,
    ) -> None:
        self._throttle = throttle
        self._security = security
        self._retry = retry
        self._single_try = single_try
        self._on_retry = on_retry
        # Kept when they fail: a registry that failed its handshake fails the rest of the run.
        self._endpoints: dict[str, asyncio.Future[Endpoint]] = {}
        self._pings = SharedTasks()

    async def get(self, host: str) -> Endpoint:
        known = self._endpoints.get(host)
        if known is None or known.cancelled():
            if host in self._single_try:
                known = self._pings.start(self._ping(host))
            else:
                known = self._pings.start(
                    retrying(lambda: self._ping(host), self._retry, on_retry=self._on_retry)
                )
            self._endpoints[host] = known
        return await asyncio.shield(known)

    async def close(self) -> None:
        """Stop the pings still under way: the run that wanted them is over."""
        await self._pings.close()

    async def _ping(self, host: str) -> Endpoint:
        """``GET /v2/`` in each scheme the security policy allows, in turn. A certificate that
        fails verification is reported as such, never hidden behind a plain-HTTP attempt."""
        schemes = self._security.schemes(host)
        for scheme in schemes:
            origin = f"{scheme}://{host}"
            try:
                challenge = await self._challenge_at(origin)
            except BulkpullError as exc:
                if scheme == schemes[-1] or is_certificate_error(exc):
                    raise
                log.info("%s; trying %s", exc, schemes[-1])
                continue
            wants = f"{challenge.scheme} auth" if challenge else "no auth"
            log.info("%s answers at %s (%s)", host, origin, wants)
            return Endpoint(host, origin, challenge)
        raise AssertionError("unreachable: at least one scheme is tried")

    async def _challenge_at(self, origin: str) -> Challenge | None:
        """The challenge ``/v2/`` answers 401 with, or None for a 200.

        Any other answer is not the registry API (go-containerregistry's ping says the same):
        a 400, for one, is what a TLS port answers to plain HTTP.
        """
        url = origin + "/v2/"
        response = await self._throttle.open(Request("GET", url))
        async with response:
            if response.status == 200:
                return None
            if response.status != 401:
                raise await self._throttle.error(response, "GET")
            found = parse_challenges(response.header_values("WWW-Authenticate"), response.url)
            return pick_challenge(found)
