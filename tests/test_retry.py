"""Retries: the policy (validated, backoff bounded) and the one loop every retry runs in."""

from __future__ import annotations

import pytest

from bulkpull import (
    AuthenticationError,
    BulkpullError,
    DigestMismatchError,
    RegistryDiagnostic,
    RegistryError,
    TransportError,
)
from bulkpull.retry import MAX_RETRY_DELAY, RetryNotice, RetryPolicy, retrying

# backoff() is random; this many draws make "every draw within bounds" meaningful.
DRAWS = 200
NO_WAIT = RetryPolicy(retries=2, delay=0.0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"retries": -1}, "retries must be >= 0", id="retries-negative"),
        pytest.param({"resumes": -1}, "resumes must be >= 0", id="resumes-negative"),
        pytest.param({"delay": -0.1}, "retry delays must be >= 0", id="delay-negative"),
        pytest.param({"max_delay": -1.0}, "retry delays must be >= 0", id="max-delay-negative"),
    ],
)
def test_retry_policy_refuses_negative_values(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes", [{"retries": 0}, {"delay": 0.0}, {"max_delay": 0.0}, {"resumes": 0}]
)
def test_retry_policy_accepts_zero(changes: dict[str, object]) -> None:
    RetryPolicy(**changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("attempt", "base"),
    [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 32.0)],
)
def test_backoff_doubles_per_attempt_within_twenty_percent_jitter(
    attempt: int, base: float
) -> None:
    policy = RetryPolicy(delay=2.0, max_delay=MAX_RETRY_DELAY)

    draws = [policy.backoff(attempt) for _ in range(DRAWS)]

    assert all(0.8 * base <= draw <= 1.2 * base for draw in draws), (min(draws), max(draws))
    assert len(set(draws)) > 1, "no jitter"


@pytest.mark.parametrize("attempt", [6, 7, 10, 30, 200])
def test_backoff_never_exceeds_max_delay(attempt: int) -> None:
    policy = RetryPolicy(delay=2.0, max_delay=MAX_RETRY_DELAY)

    draws = [policy.backoff(attempt) for _ in range(DRAWS)]

    assert all(0.8 * MAX_RETRY_DELAY <= draw <= MAX_RETRY_DELAY for draw in draws), (
        min(draws),
        max(draws),
    )


@pytest.mark.parametrize("attempt", [1025, 10_000])
def test_backoff_after_very_many_retries_is_max_delay(attempt: int) -> None:
    policy = RetryPolicy(retries=20_000, delay=2.0, max_delay=MAX_RETRY_DELAY)

    assert 0.8 * MAX_RETRY_DELAY <= policy.backoff(attempt) <= MAX_RETRY_DELAY


def test_zero_delay_never_waits() -> None:
    policy = RetryPolicy(delay=0.0)

    assert {policy.backoff(attempt) for attempt in range(1, 10)} == {0.0}


class Attempts:
    """An operation that fails with the given errors in turn, then succeeds; counts its tries
    and lets each try report progress (bytes kept)."""

    def __init__(self, *failures: BulkpullError, progress: tuple[int, ...] = ()) -> None:
        self.failures = list(failures)
        self.progress = list(progress)
        self.tries = 0
        self.kept = 0

    async def __call__(self) -> str:
        self.tries += 1
        if self.progress:
            self.kept += self.progress.pop(0)
        if self.failures:
            raise self.failures.pop(0)
        return "done"


def throttled(retry_after: float | None = None) -> RegistryError:
    return RegistryError(
        "GET", "https://r.example/v2/x/blobs/sha256:1", 503, retry_after=retry_after
    )


async def test_temporary_failures_are_retried_until_the_attempt_succeeds() -> None:
    attempt = Attempts(TransportError("reset"), throttled())

    assert await retrying(attempt, NO_WAIT) == "done"
    assert attempt.tries == 3


async def test_a_permanent_failure_is_raised_at_once_as_the_error_it_was() -> None:
    refused = AuthenticationError("GET", "https://r.example/v2/", 401)
    attempt = Attempts(refused)

    with pytest.raises(AuthenticationError) as caught:
        await retrying(attempt, NO_WAIT)

    assert attempt.tries == 1
    assert (caught.value.tries, caught.value.final) == (1, False)


async def test_an_error_given_up_on_says_how_many_tries_and_is_final() -> None:
    attempt = Attempts(*(TransportError("reset") for _ in range(3)))

    with pytest.raises(TransportError, match="reset") as caught:
        await retrying(attempt, NO_WAIT)

    assert attempt.tries == 3
    assert (caught.value.tries, caught.value.final) == (3, True)


async def test_a_shared_error_is_never_changed_by_a_loop_giving_up_on_it() -> None:
    # One failure reaching several waiters (a registry's failed handshake) is one object.
    shared = RegistryError(
        "GET", "https://r.example/v2/", 503, [RegistryDiagnostic("UNAVAILABLE", "later")]
    )

    async def attempt() -> str:
        raise shared

    with pytest.raises(RegistryError) as caught:
        await retrying(attempt, NO_WAIT)

    given_up = caught.value
    assert given_up is not shared
    assert (shared.tries, shared.final) == (1, False)
    assert (given_up.tries, given_up.final) == (3, True)
    assert type(given_up) is RegistryError
    assert (given_up.method, given_up.url, given_up.status) == ("GET", shared.url, 503)
    assert given_up.diagnostics == shared.diagnostics
    assert str(given_up) == str(shared)


async def test_an_inner_loops_final_error_is_not_retried_by_an_outer_loop() -> None:
    inner = Attempts(*(TransportError("reset") for _ in range(3)))
    outer_tries = 0

    async def outer() -> str:
        nonlocal outer_tries
        outer_tries += 1
        return await retrying(inner, NO_WAIT)

    with pytest.raises(TransportError) as caught:
        await retrying(outer, NO_WAIT)

    assert outer_tries == 1
    assert caught.value.tries == 3


async def test_each_counted_retry_is_heard_before_its_wait() -> None:
    heard: list[RetryNotice] = []
    first, second = TransportError("reset"), throttled(retry_after=0.01)
    attempt = Attempts(first, second)

    await retrying(attempt, RetryPolicy(retries=3, delay=0.0), on_retry=heard.append)

    assert [(n.error, n.attempt, n.attempts) for n in heard] == [(first, 1, 4), (second, 2, 4)]
    assert [n.delay for n in heard] == [0.0, 0.01]  # Retry-After lengthens the wait


async def test_progress_resumes_at_once_renews_the_budget_and_is_not_counted() -> None:
    heard: list[RetryNotice] = []
    # Four failures with retries=1: the two that brought new bytes are resumed, not counted.
    attempt = Attempts(*(TransportError("reset") for _ in range(3)), progress=(10, 10, 0))

    result = await retrying(
        attempt,
        RetryPolicy(retries=1, delay=0.0),
        progress=lambda: attempt.kept,
        on_retry=heard.append,
    )

    assert result == "done"
    assert attempt.tries == 4
    assert [n.attempt for n in heard] == [1]


async def test_resumes_are_bounded_so_a_server_dropping_every_connection_is_given_up() -> None:
    attempt = Attempts(*(TransportError("reset") for _ in range(10)), progress=(1,) * 10)

    with pytest.raises(TransportError) as caught:
        await retrying(
            attempt, RetryPolicy(retries=0, delay=0.0, resumes=2), progress=lambda: attempt.kept
        )

    assert caught.value.tries == 3


async def test_corrupted_bytes_are_fetched_once_more_at_once_then_given_up() -> None:
    heard: list[RetryNotice] = []
    mismatch = DigestMismatchError("blob", "sha256:a", "sha256:b")
    attempt = Attempts(mismatch, mismatch)

    with pytest.raises(DigestMismatchError) as caught:
        await retrying(attempt, NO_WAIT, on_retry=heard.append)

    assert attempt.tries == 2
    assert heard == []
    assert (caught.value.tries, caught.value.final) == (2, False)
