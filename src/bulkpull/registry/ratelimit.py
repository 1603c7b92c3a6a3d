"""Throttles and pull limits: the 429 pause shared by every request, and registries written off
when their pull limit runs out.

A registry that throttles one worker (``429`` with a short ``Retry-After``, or none) would
otherwise be hammered by all the others until each got its own 429, so :class:`Throttle` holds
back every new request to that origin for the wait. Docker Hub's pull limit is another matter:
it counts manifest GETs per six hours and, once spent, answers ``429 TOOMANYREQUESTS`` usually
without ``Retry-After``. :func:`limit_is_spent` tells that answer apart, and :class:`PullLimits`
then fails the registry's remaining manifest GETs at once, while blobs of manifests already
fetched still come. Imports ``errors``, ``retry``, ``usage``, ``routing``, ``session`` and
``status``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import replace

from bulkpull.errors import RateLimitError, RegistryError
from bulkpull.registry.routing import origin_of, registry_key
from bulkpull.registry.session import Opener, Request, Response
from bulkpull.registry.status import error_of
from bulkpull.retry import MAX_RETRY_AFTER, RetryPolicy
from bulkpull.usage import PullLimit, RegistryUsage

log = logging.getLogger("bulkpull")

SPENT_CODE = "TOOMANYREQUESTS"


def limit_is_spent(error: RegistryError, patience: float = MAX_RETRY_AFTER) -> bool:
    """Whether a refusal means the pull limit is spent rather than "slow down for a moment":
    ``429 TOOMANYREQUESTS`` without ``Retry-After``, or asking for more than ``patience`` s.

    A bare 429 without the registry error code (Hub's abuse limit, a proxy's throttle) is a
    short throttle and is retried.
    """
    if error.status != 429 or SPENT_CODE not in error.codes:
        return False
    return error.retry_after is None or error.retry_after > patience


class Throttle:
    """An :class:`Opener` that waits out the pause of the origin it sends to, and the place
    every error status of a run becomes an error (:meth:`error`), so that each 429 pauses."""

    def __init__(self, open_request: Opener, retry: RetryPolicy) -> None:
        self._open = open_request
        self._retry = retry
        # origin → monotonic time before which no new request goes there.
        self._paused_until: dict[str, float] = {}

    async def open(self, request: Request) -> Response:
        origin = origin_of(request.url)
        # A loop, not an Event: another 429 may extend the pause while we sleep.
        while (wait := self._paused_until.get(origin, 0.0) - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait)
        return await self._open(request)

    async def error(self, response: Response, method: str, hint: str = "") -> RegistryError:
        """The error ``response``'s status means (see ``status``), after noting it."""
        error = await error_of(response, method, hint)
        self.note(error)
        return error

    def note(self, error: RegistryError) -> None:
        """Pause the origin that answered ``error`` if it is a throttle worth waiting out: for
        its ``Retry-After``, or the first backoff of the retry policy when it names none."""
        if error.status != 429 or limit_is_spent(error):
            return
        seconds = error.retry_after if error.retry_after is not None else self._retry.backoff(1)
        origin = origin_of(error.url)
        until = time.monotonic() + min(seconds, MAX_RETRY_AFTER)
        if until > self._paused_until.get(origin, 0.0):
            self._paused_until[origin] = until
            log.warning("%s is throttling: pausing requests to it for %.1fs", origin, seconds)


class PullLimits:
    """What a run asked of each registry and mirror, the pull limit each announced, and the
    registries whose limit ran out (keyed by ``host[:port]``)."""

    def __init__(self) -> None:
        self._usage: dict[str, RegistryUsage] = {}
        # host → the error every further manifest GET to it fails with.
        self._spent: dict[str, RateLimitError] = {}

    def usage(self) -> tuple[RegistryUsage, ...]:
        """In the order the registries were first asked."""
        return tuple(self._usage.values())

    def spent(self, host: str, method: str, path: str) -> RateLimitError | None:
        """The error a request fails with at once: a manifest GET (what the limit counts) to a
        registry whose limit ran out."""
        if method == "GET" and "/manifests/" in path:
            return self._spent.get(host)
        return None

    def observe(self, host: str, method: str, path: str, headers: Mapping[str, str]) -> None:
        """Count manifest requests and note the pull limit a registry announces (-v shows it)."""
        usage = self._usage.get(host) or RegistryUsage(registry_key(host))
        if "/manifests/" in path:
            if method == "GET":
                usage = replace(usage, manifest_gets=usage.manifest_gets + 1)
            elif method == "HEAD":
                usage = replace(usage, manifest_heads=usage.manifest_heads + 1)
        limit = PullLimit.from_headers(headers)
        if limit is not None and limit != usage.pull_limit:
            left = "unknown" if limit.remaining is None else limit.remaining
            log.info("%s: pull limit %s, %s left", usage.registry, limit, left)
            usage = replace(usage, pull_limit=limit)
        self._usage[host] = usage

    def write_off(self, host: str, refused: RegistryError, logged_in: bool) -> RateLimitError:
        """The error for every manifest GET to ``host`` from now on: its pull limit ran out.
        ``logged_in`` says whether the refused requests carried a login (the advice differs)."""
        spent = self._spent.get(host)
        if spent is None:
            usage = self._usage.get(host) or RegistryUsage(registry_key(host))
            self._usage[host] = replace(usage, rate_limited=True)
            limit = str(usage.pull_limit) if usage.pull_limit else ""
            advice = (
                "wait, or log in with an account that has a higher limit"
                if logged_in
                else "log in (docker login) or wait"
            )
            spent = RateLimitError(usage.registry, refused, limit, advice)
            self._spent[host] = spent
            log.warning("%s", spent)
        return spent
