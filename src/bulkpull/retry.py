"""Retrying temporary failures: the policy, and the one loop every retried operation runs in.

:func:`bulkpull.errors.is_temporary` decides whether a failure may go away; :class:`RetryPolicy`
bounds how often and how patiently it is repeated; :func:`retrying` carries both out, for a
registry request as for a whole blob download. Whoever wants to show retries as they happen
passes ``on_retry`` and hears a :class:`RetryNotice` before each wait. Imports only ``errors``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from bulkpull.errors import BulkpullError, DigestMismatchError, InvalidOptionError, is_temporary

log = logging.getLogger("bulkpull")

T = TypeVar("T")

DEFAULT_RETRIES = 3
DEFAULT_RETRY_DELAY = 2.0
# containers/image caps its exponential backoff at a minute; so do we (a server's Retry-After
# may ask for more, up to the five minutes of MAX_RETRY_AFTER).
MAX_RETRY_DELAY = 60.0
# The longest Retry-After worth waiting for; a throttle asking for longer (or not saying how
# long) on a TOOMANYREQUESTS answer is a spent pull limit.
MAX_RETRY_AFTER = 300.0
# Immediate resumes of one download after failures that brought new bytes: enough for a large
# layer over a link that drops every few hundred megabytes, and still an end for a server that
# drops every connection after a few new bytes.
DEFAULT_RESUMES = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently a temporary failure is retried.

    ``retries`` counts repeats after the first try, so ``retries=3`` means at most four tries.
    A download that failed after bringing new bytes resumes at once and gets its ``retries``
    afresh, at most ``resumes`` times.
    """

    retries: int = DEFAULT_RETRIES
    delay: float = DEFAULT_RETRY_DELAY
    max_delay: float = MAX_RETRY_DELAY
    resumes: int = DEFAULT_RESUMES

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise InvalidOptionError("retries must be >= 0")
        if self.resumes < 0:
            raise InvalidOptionError("resumes must be >= 0")
        if self.delay < 0 or self.max_delay < 0:
            raise InvalidOptionError("retry delays must be >= 0")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before repeat number ``attempt`` (1-based): exponential with jitter,
        never above ``max_delay``."""
        base = self.delay * 2.0 ** min(attempt - 1, 64)  # no float overflow on huge counts
        return min(base * random.uniform(0.8, 1.2), self.max_delay)  # jitter, not cryptography


@dataclass(frozen=True, slots=True)
class RetryNotice:
    """A temporary failure about to be retried: try ``attempt`` of at most ``attempts`` ended
    with ``error``, and the next one starts in ``delay`` seconds."""

    error: BulkpullError
    attempt: int
    attempts: int
    delay: float


RetryListener = Callable[[RetryNotice], None]
"""Told of each retry before its wait, so a display can show the wait instead of going silent."""


@dataclass(slots=True)
class _Attempts:
    """The count kept for one retried operation, and the decision after each failure.

    ``failures`` are those since the last progress: the retry budget. A failure after progress
    (new bytes kept) resumes at once and renews that budget, but only ``policy.resumes`` times,
    so a server that drops every connection after a few new bytes is still given up on.
    """

    policy: RetryPolicy
    made: int = 0
    failures: int = 0
    resumes: int = 0
    refetched: bool = False
    # Whether the last retry decided on costs the budget (a resume or a refetch does not).
    counted: bool = False

    def delay_after(self, exc: BulkpullError, progressed: bool) -> float | None:
        """Seconds to wait before the next attempt, or None to give up on ``exc``.

        A body that arrived corrupted is fetched once more at once (the store has dropped its
        bytes); a second mismatch means the registry serves wrong bytes, and one marked
        ``final`` is known not to be the transfer's fault (a damaged source). Otherwise only
        temporary errors are retried: exponential backoff, lengthened by a ``Retry-After`` of
        up to five minutes.
        """
        self.counted = False
        if isinstance(exc, DigestMismatchError) and not (self.refetched or exc.final):
            self.refetched = True
            return 0.0
        if not is_temporary(exc):
            return None
        if progressed and self.resumes < self.policy.resumes:
            self.resumes += 1
            self.failures = 0
            return 0.0
        self.failures += 1
        if self.failures > self.policy.retries:
            return None
        self.counted = True
        delay = self.policy.backoff(self.failures)
        if exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, MAX_RETRY_AFTER))
        return delay

    def notice(self, exc: BulkpullError, delay: float) -> RetryNotice | None:
        """What a listener hears of the retry just decided on: only of one that costs the
        budget (a resume after progress, or the refetch of corrupted bytes, starts at once)."""
        if not self.counted:
            return None
        return RetryNotice(exc, self.failures, self.policy.retries + 1, delay)


async def retrying(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    progress: Callable[[], int] | None = None,
    on_retry: RetryListener | None = None,
) -> T:
    """Run ``attempt`` until it succeeds, fails permanently, or ``policy`` runs out.

    The wait grows exponentially with jitter; a server's ``Retry-After`` lengthens it.
    ``progress`` counts what attempts achieved that is kept (new bytes of a blob beyond the
    most its partial file held): a temporary failure after progress, such as a reset in the
    middle of a large layer, is resumed at once, as containers/image does, so a long download
    over a flaky link is not abandoned while it is still moving. The error given up on is
    raised as :meth:`BulkpullError.given_up` makes it: it says how many tries it took, and is
    ``final``, so no outer loop tries it again.
    """
    attempts = _Attempts(policy)
    while True:
        attempts.made += 1
        before = progress() if progress else 0
        try:
            return await attempt()
        except BulkpullError as exc:
            progressed = progress is not None and progress() > before
            delay = attempts.delay_after(exc, progressed)
            if delay is None:
                if exc.final:  # an inner loop's count stands
                    raise
                raise exc.given_up(attempts.made) from exc.__cause__
            log.info("retrying in %.1fs (try %d failed): %s", delay, attempts.made, exc)
            notice = attempts.notice(exc, delay)
            if on_retry is not None and notice is not None:
                on_retry(notice)
            await asyncio.sleep(delay)
