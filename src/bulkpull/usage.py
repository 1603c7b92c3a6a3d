"""Registry pull limits as values: the ``RateLimit-*`` headers, and what a run saw per registry.

Docker Hub counts manifest GETs (HEAD is free) in a window of six hours and says where a client
stands in ``ratelimit-limit: 100;w=21600`` and ``ratelimit-remaining: 76;w=21600``. Hub has sent
empty numbers (``;w=21600``), so the headers are parsed defensively: what does not parse is
unknown, never an error. The report carries these values; ``registry.ratelimit`` acts on them.
Imports nothing from bulkpull.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

LIMIT_HEADER = "RateLimit-Limit"
REMAINING_HEADER = "RateLimit-Remaining"

# At most 18 digits: a larger number is nonsense, and int() of a huge one is slow or refused.
_QUOTA = re.compile(r"\s*(\d{1,18})\s*(?:;.*)?")
_WINDOW = re.compile(r";\s*w\s*=\s*(\d{1,18})\b")


@dataclass(frozen=True, slots=True)
class PullLimit:
    """Where a client stands against a registry's pull limit; None for what was not said."""

    limit: int | None
    remaining: int | None
    window: int | None
    """Seconds the limit counts over (21600 for Docker Hub's six hours)."""

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> PullLimit | None:
        """The limit a response announces, or None when it announces none (an unlimited pull).

        Only the first policy of each header counts (regclient reads them the same way).
        """
        limit_header = _first_policy(headers.get(LIMIT_HEADER, ""))
        remaining_header = _first_policy(headers.get(REMAINING_HEADER, ""))
        found = cls(
            _quota(limit_header),
            _quota(remaining_header),
            _window(limit_header) or _window(remaining_header),
        )
        return None if found.limit is None and found.remaining is None else found

    def __str__(self) -> str:
        """``100 per 6 h``, or as much of it as is known."""
        limit = "unknown" if self.limit is None else str(self.limit)
        return f"{limit} per {_duration(self.window)}" if self.window else limit

    def to_json(self) -> dict[str, int | None]:
        return {"limit": self.limit, "remaining": self.remaining, "window_seconds": self.window}


@dataclass(frozen=True, slots=True)
class RegistryUsage:
    """What one run asked of one registry, for the report: manifest requests (GETs count
    against Docker Hub's limit, HEADs do not), the last pull limit it announced, and whether
    the limit ran out."""

    registry: str
    manifest_gets: int = 0
    manifest_heads: int = 0
    pull_limit: PullLimit | None = None
    rate_limited: bool = False

    def to_json(self) -> dict[str, object]:
        """One ``registries`` record of the ``--report`` document."""
        return {
            "registry": self.registry,
            "manifest_gets": self.manifest_gets,
            "manifest_heads": self.manifest_heads,
            "pull_limit": self.pull_limit.to_json() if self.pull_limit else None,
            "rate_limited": self.rate_limited,
        }


def _first_policy(header: str) -> str:
    return header.split(",", 1)[0]


def _quota(policy: str) -> int | None:
    match = _QUOTA.fullmatch(policy)
    return int(match.group(1)) if match else None


def _window(policy: str) -> int | None:
    match = _WINDOW.search(policy)
    seconds = int(match.group(1)) if match else 0
    return seconds or None


def _duration(seconds: int) -> str:
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
