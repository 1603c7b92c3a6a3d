"""What a push tells its caller: per image where it went and what that cost, and the totals.

A push reports progress with the pull's events where they mean the same (an image entering a
stage, a blob needed, a blob done, a retry) and with two of its own: :class:`BytesSent` as
upload bytes leave, :class:`PushDone` per finished image. The report renders to the JSON of
``bulkpull push --report``. Imports ``errors``, ``digest``, ``imagelist`` and ``report``; no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from bulkpull.digest import Digest
from bulkpull.errors import BulkpullError
from bulkpull.imagelist import ImageSpec
from bulkpull.report import Event, error_json, narrowed_json, referrer_json

PUSH_REPORT_VERSION = 1


class PushStatus(StrEnum):
    """What became of an image in a push or a copy: ``PushResult.status`` and the push
    report's ``status``; the values are the report's words."""

    PUSHED = "pushed"
    # The target's tag already names the digest: no blob was sent, no tag rewritten.
    UP_TO_DATE = "up-to-date"
    # A dry run: the target lacks the image (or some of its blobs); nothing was written.
    MISSING = "missing"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True)
class BlobCounts:
    """What became of an image's blobs at the target: ``uploaded`` (``bytes`` sent for them),
    ``mounted`` from another repository of the target, ``skipped`` because it had them."""

    uploaded: int = 0
    mounted: int = 0
    skipped: int = 0
    bytes: int = 0

    def __add__(self, other: BlobCounts) -> BlobCounts:
        return BlobCounts(
            self.uploaded + other.uploaded,
            self.mounted + other.mounted,
            self.skipped + other.skipped,
            self.bytes + other.bytes,
        )

    def to_json(self) -> dict[str, int]:
        return {
            "bytes_uploaded": self.bytes,
            "blobs_uploaded": self.uploaded,
            "blobs_mounted": self.mounted,
            "blobs_skipped": self.skipped,
        }


class ReferrerListing(StrEnum):
    """How the target lists a pushed OCI referrer among its subject's referrers."""

    # The registry indexed it itself: its manifest PUT answered OCI-Subject.
    REFERRERS_API = "referrers API"
    # bulkpull merged it into the referrers tag schema index (tag sha256-<hex>).
    TAG_SCHEMA = "referrers tag schema"


@dataclass(frozen=True, slots=True)
class PushedReferrer:
    """A signature, SBOM or attestation pushed after its image: what it refers to
    (``subject``), its manifest's digest (the source's), its type, its size with every blob it
    carries, the cosign ``tag`` it went under ("" for none), how the target lists it
    (``listed``: None for one known only by its tag), and whether it was there already
    (``present``: nothing of it was sent). In a dry run ``missing`` is how many bytes of its
    blobs the target lacks (and ``listed`` None: the listing is not looked at)."""

    subject: Digest
    digest: Digest
    type: str
    size: int
    tag: str = ""
    listed: ReferrerListing | None = None
    present: bool = False
    missing: int | None = None

    @property
    def status(self) -> PushStatus:
        if self.present:
            return PushStatus.UP_TO_DATE
        return PushStatus.PUSHED if self.missing is None else PushStatus.MISSING

    def to_json(self) -> dict[str, object]:
        return {
            **referrer_json(self.type, self.digest, self.size, self.subject, self.tag),
            "listed": self.listed.value if self.listed else None,
            "status": self.status.value,
            "bytes_missing": self.missing or 0,
        }


@dataclass(frozen=True, slots=True)
class PushResult:
    """One image of a push: ``spec`` is its name in the source (``source``: an archive or
    layout, or for a copy the registry reference) and the name it gets at the target
    (``target``); ``digest`` what the target's tag names (the source's own, byte for byte,
    unless ``narrowed``: an index bulkpull narrowed to the platforms chosen, as (entries
    kept, entries listed); for an image that failed, the one its source names), ``size``
    the bytes of its blobs and manifests; ``missing`` in a dry run the bytes the target
    lacks of it. ``pinned`` is the list line that copies the same image again, its source
    pinned to the digest it resolved to (for ``--lock``). ``referrers`` are the signatures,
    SBOMs and attestations pushed after it."""

    spec: ImageSpec
    status: PushStatus
    source: Path | str
    digest: Digest | None = None
    media_type: str = ""
    size: int = 0
    blobs: BlobCounts = BlobCounts()
    missing: int = 0
    error: BulkpullError | None = None
    narrowed: tuple[int, int] | None = None
    pinned: str | None = None
    referrers: tuple[PushedReferrer, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not PushStatus.INTERRUPTED

    def as_failed(self, error: BulkpullError) -> PushResult:
        return replace(self, status=PushStatus.FAILED, error=error)

    def to_json(self) -> dict[str, object]:
        """One ``images`` record of the ``--report`` document."""
        return {
            "name": str(self.spec.source),
            "target": str(self.spec.target),
            "source": str(self.source),
            "status": self.status.value,
            "digest": str(self.digest) if self.digest else None,
            "media_type": self.media_type or None,
            "size": self.size,
            **self.blobs.to_json(),
            "bytes_missing": self.missing,
            "narrowed": narrowed_json(self.narrowed),
            "error": error_json(self.error),
            "tries": self.error.tries if self.error else None,
            "referrers": [referrer.to_json() for referrer in self.referrers],
        }


@dataclass(frozen=True, slots=True)
class PushReport:
    """Every image, in the order of the sources, and the totals: blob counts over the run
    (each blob counted once per repository), ``bytes_sent`` all upload bytes that left
    (resends included), the target they went to."""

    target: str
    results: tuple[PushResult, ...]
    blobs: BlobCounts = BlobCounts()
    bytes_sent: int = 0
    seconds: float = 0.0
    started: str = ""
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)

    @property
    def failed(self) -> tuple[PushResult, ...]:
        return tuple(result for result in self.results if not result.ok)

    def count(self, status: PushStatus) -> int:
        return sum(result.status is status for result in self.results)

    @property
    def bytes_missing(self) -> int:
        """A dry run's answer: the bytes the target lacks of the images' blobs and of their
        referrers'."""
        return sum(
            result.missing + sum(referrer.missing or 0 for referrer in result.referrers)
            for result in self.results
        )

    def lock_lines(self) -> list[str]:
        """The list again, every image pinned to the digest its source resolved to; an image
        that failed stays unpinned, so the lock still lists it."""
        return [result.pinned or result.spec.pinned(None) for result in self.results]

    def to_json(self) -> dict[str, object]:
        """The ``bulkpull push --report`` document (its schema is in the README)."""
        return {
            "version": PUSH_REPORT_VERSION,
            "target": self.target,
            "started": self.started,
            "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
            "totals": {
                "images": len(self.results),
                **{status.value: self.count(status) for status in PushStatus},
                **self.blobs.to_json(),
                "bytes_sent": self.bytes_sent,
                "bytes_missing": self.bytes_missing,
            },
            "images": [result.to_json() for result in self.results],
        }


@dataclass(frozen=True, slots=True)
class BytesSent:
    """Bytes of a blob left for the target registry (a resumed or repeated upload counts)."""

    digest: Digest
    count: int


@dataclass(frozen=True, slots=True)
class PushDone:
    """An image of a push is finished, one way or another."""

    result: PushResult


PushEvent = Event | BytesSent | PushDone
PushEventCallback = Callable[[PushEvent], None]
