"""Pull limits as data: the RateLimit headers read defensively, and when a 429 means "spent".

Headers come as aiohttp hands them over, a case-insensitive ``CIMultiDict``.
"""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from bulkpull.errors import RegistryDiagnostic, RegistryError
from bulkpull.registry.ratelimit import limit_is_spent
from bulkpull.retry import MAX_RETRY_AFTER
from bulkpull.usage import PullLimit, RegistryUsage


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(
            {"RateLimit-Limit": "100;w=21600", "RateLimit-Remaining": "76;w=21600"},
            PullLimit(100, 76, 21600),
            id="docker-hub",
        ),
        pytest.param(
            {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "76;w=21600"},
            PullLimit(100, 76, 21600),
            id="lower-case-names",
        ),
        pytest.param(
            {"RateLimit-Limit": ";w=21600", "RateLimit-Remaining": "20;w=21600"},
            PullLimit(None, 20, 21600),
            id="empty-limit-as-hub-once-sent",
        ),
        pytest.param(
            {"RateLimit-Limit": "200", "RateLimit-Remaining": "199"},
            PullLimit(200, 199, None),
            id="no-window",
        ),
        pytest.param(
            {"RateLimit-Limit": "100;w=21600, 10;w=3600"},
            PullLimit(100, None, 21600),
            id="first-policy-counts",
        ),
        pytest.param(
            {"RateLimit-Limit": "lots;w=x", "RateLimit-Remaining": "-1"},
            None,
            id="nonsense-is-unknown",
        ),
        pytest.param({"RateLimit-Limit": "9" * 5000}, None, id="absurdly-long-number"),
        pytest.param({}, None, id="no-headers-means-not-limited"),
    ],
)
def test_pull_limit_headers_are_read_defensively(
    headers: dict[str, str], expected: PullLimit | None
) -> None:
    assert PullLimit.from_headers(CIMultiDict(headers)) == expected


@pytest.mark.parametrize(
    ("limit", "shown"),
    [
        (PullLimit(100, 76, 21600), "100 per 6 h"),
        (PullLimit(10, 3, 3600), "10 per 1 h"),
        (PullLimit(10, 3, 90), "10 per 90 s"),
        (PullLimit(10, 3, 120), "10 per 2 min"),
        (PullLimit(None, 3, 21600), "unknown per 6 h"),
        (PullLimit(200, None, None), "200"),
    ],
)
def test_a_pull_limit_reads_as_people_say_it(limit: PullLimit, shown: str) -> None:
    assert str(limit) == shown


def refusal(
    status: int, code: str | None = "TOOMANYREQUESTS", retry_after: float | None = None
) -> RegistryError:
    diagnostics = [RegistryDiagnostic(code, "limit")] if code else []
    return RegistryError(
        "GET", "https://r.example/v2/", status, diagnostics, retry_after=retry_after
    )


@pytest.mark.parametrize(
    ("error", "spent"),
    [
        pytest.param(refusal(429), True, id="toomanyrequests-without-retry-after"),
        pytest.param(refusal(429, retry_after=MAX_RETRY_AFTER + 1), True, id="long-retry-after"),
        pytest.param(refusal(429, retry_after=30.0), False, id="short-retry-after"),
        pytest.param(refusal(429, retry_after=0.0), False, id="retry-now"),
        pytest.param(refusal(429, code=None), False, id="bare-429-is-a-throttle"),
        pytest.param(refusal(503, code="UNAVAILABLE"), False, id="other-status"),
    ],
)
def test_a_429_means_the_limit_is_spent_only_when_no_wait_is_worth_it(
    error: RegistryError, spent: bool
) -> None:
    assert limit_is_spent(error) is spent


def test_registry_usage_renders_the_report_record() -> None:
    usage = RegistryUsage("docker.io", 6, 2, PullLimit(100, 94, 21600), rate_limited=True)

    assert usage.to_json() == {
        "registry": "docker.io",
        "manifest_gets": 6,
        "manifest_heads": 2,
        "pull_limit": {"limit": 100, "remaining": 94, "window_seconds": 21600},
        "rate_limited": True,
    }
