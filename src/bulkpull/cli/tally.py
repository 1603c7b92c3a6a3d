"""A run as its progress events tell it: bytes, images, retries, and what each image is doing.

Both renderings in ``display`` read the same tally; nothing here draws or looks at a clock
(the time is passed in), so every number and every row can be tested as plain values.

A blob is one download however many images need it, and the pull says which image started it:
that row is ``downloading`` it, and the others say they are waiting for another image's
download. A row's bytes count a blob in full only once it is verified, so its byte
count and its blob count always tell the same story. Imports the public ``bulkpull`` API and
``text``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from bulkpull import (
    BlobDone,
    BlobNeeded,
    BytesReceived,
    BytesSent,
    Digest,
    ImageDone,
    ImageResult,
    ImageSpec,
    ImageStage,
    PushDone,
    PushEvent,
    PushResult,
    Retrying,
    Stage,
)
from bulkpull.cli.text import (
    count_text,
    duration_text,
    reason_text,
    retry_text,
    size_text,
    sizes_text,
)

# Rows shown first when more images are in flight than the screen holds: the busiest.
_STAGE_ORDER = {
    Stage.WRITING: 0,
    Stage.DOWNLOADING: 1,
    Stage.UPLOADING: 1,
    Stage.RESOLVING: 2,
    Stage.CHECKING: 2,
}
DOWNLOADING = "downloading"
# Every blob the image still needs is one another image asked for first and is downloading.
WAITING = "waiting for another image's download"
# The same words for a push: (moving, waiting, every blob moved).
_NOTES = {
    Stage.DOWNLOADING: (DOWNLOADING, WAITING, "downloaded"),
    Stage.UPLOADING: ("uploading", "waiting for another image's upload", "uploaded"),
}
_MOVING = frozenset(notes[0] for notes in _NOTES.values())
# A finished image of a pull or of a push.
Finished = ImageResult | PushResult


@dataclass
class RateMeter:
    """Bytes per second over about the last ``window`` seconds: recent enough to show a
    stall, long enough not to flicker."""

    window: float
    samples: deque[tuple[float, int]] = field(default_factory=deque)

    def rate(self, now: float, received: int) -> float:
        self.samples.append((now, received))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()
        then, before = self.samples[0]
        return (received - before) / (now - then) if now > then else 0.0


@dataclass(frozen=True)
class Row:
    """One image in flight, in words and numbers; ``bytes_total`` is None until its blobs
    are known (while resolving)."""

    stage: ImageStage
    note: str
    blobs_done: int = 0
    blobs: int = 0
    bytes_done: int = 0
    bytes_total: int | None = None

    @property
    def counts(self) -> str:
        """``2/3 blobs  1.2/3.0 MiB``, or nothing before the blobs are known."""
        if self.bytes_total is None:
            return ""
        blobs = f"{self.blobs_done}/{count_text(self.blobs, 'blob')}"
        return f"{blobs}  {sizes_text(self.bytes_done, self.bytes_total)}"


@dataclass
class Tally:
    """The run so far, from its events (``apply`` takes each with the time it arrived).

    Bytes count each blob once however many images share it, and never more than its size
    (a download repeated after a reset sends some bytes twice); ``received`` is what actually
    came over the network, for the rate; ``reused`` the sizes of blobs already stored. A
    push is told the same way: bytes sent, blobs the target already has (or will by a mount).
    """

    images: int
    sizes: dict[Digest, int] = field(default_factory=dict)
    missing: set[Digest] = field(default_factory=set)
    got: dict[Digest, int] = field(default_factory=dict)
    done: set[Digest] = field(default_factory=set)
    received: int = 0
    # Of those, the bytes that left for a target registry: a copy also downloads.
    sent: int = 0
    reused: int = 0
    in_flight: dict[ImageSpec, ImageStage] = field(default_factory=dict)
    # The image whose need started each blob's download: its task is downloading it.
    owners: dict[Digest, ImageSpec] = field(default_factory=dict)
    # The latest retry of an image's request or a blob's download, and when its wait ends.
    retries: dict[ImageSpec | Digest, tuple[Retrying, float]] = field(default_factory=dict)
    results: dict[ImageSpec, list[Finished]] = field(default_factory=dict)

    def apply(self, event: PushEvent, now: float) -> None:
        if isinstance(event, ImageStage):
            self.in_flight[event.spec] = event
        elif isinstance(event, BlobNeeded):
            if event.spec is not None:
                self.owners[event.digest] = event.spec
            self.sizes[event.digest] = event.size
            if event.present:
                self.reused += event.size
            else:
                self.missing.add(event.digest)
        elif isinstance(event, BytesReceived | BytesSent):
            self.got[event.digest] = self.got.get(event.digest, 0) + event.count
            self.received += event.count
            if isinstance(event, BytesSent):
                self.sent += event.count
        elif isinstance(event, BlobDone):
            self.done.add(event.digest)
        elif isinstance(event, Retrying):
            subject = event.spec or event.digest
            if subject is not None:
                self.retries[subject] = (event, now + event.delay)
        elif isinstance(event, ImageDone | PushDone):
            self.in_flight.pop(event.result.spec, None)
            self.results.setdefault(event.result.spec, []).append(event.result)

    @property
    def finished(self) -> int:
        """Images finished, one way or another (every platform of them)."""
        return len(self.results)

    @property
    def failed(self) -> int:
        return sum(not all(result.ok for result in results) for results in self.results.values())

    @property
    def pulled(self) -> int:
        """Images finished without an error."""
        return self.finished - self.failed

    def _bytes(self, digest: Digest) -> int:
        """What a blob has of its size: all of it once verified, and until then never all,
        so bytes and blob counts agree."""
        size = self.sizes.get(digest, 0)
        return size if digest in self.done else min(self.got.get(digest, 0), max(size - 1, 0))

    @property
    def bytes_total(self) -> int:
        """Bytes to download: every blob needed that was not already in the store."""
        return sum(self.sizes[digest] for digest in self.missing)

    @property
    def bytes_done(self) -> int:
        return sum(self._bytes(digest) for digest in self.missing)

    def overall_fields(self, rate: float, *, dry_run: bool) -> list[str]:
        """Where the run is: images finished (and failed); bytes, rate and time left while
        downloading. Most telling first: a narrow line drops fields from the end."""
        fields = [f"{self.finished} of {count_text(self.images, 'image')}"]
        if self.failed:
            fields[0] += f" ({self.failed} failed)"
        if dry_run or not self.bytes_total:
            return fields
        fields.append(f"{size_text(self.bytes_done)} / {size_text(self.bytes_total)}")
        if self.in_flight and rate > 0:
            eta = duration_text((self.bytes_total - self.bytes_done) / rate)
            fields += [f"{size_text(rate)}/s", f"eta {eta}"]
        return fields

    def rows(self, now: float) -> list[Row]:
        """Images in flight, busiest first, then in the order they started."""
        rows = [self.row(stage, now) for stage in self.in_flight.values()]
        return sorted(
            rows, key=lambda row: (_STAGE_ORDER[row.stage.stage], row.note not in _MOVING)
        )

    def row(self, stage: ImageStage, now: float) -> Row:
        if stage.stage in (Stage.RESOLVING, Stage.CHECKING):
            return Row(stage, self._retrying(stage, [], now) or stage.stage.value)
        pending = [digest for digest in stage.blobs if digest not in self.done]
        done = sum(self._bytes(digest) for digest in stage.blobs)
        total = sum(self.sizes.get(digest, 0) for digest in stage.blobs)
        counts = (len(stage.blobs) - len(pending), len(stage.blobs), done, total)
        if stage.stage is Stage.WRITING:
            return Row(stage, "writing", *counts)
        moving, waiting, moved = _NOTES[stage.stage]
        note = self._retrying(stage, pending, now)
        if note is None and not pending:
            note = moved
        elif note is None and all(self.owners.get(digest) != stage.spec for digest in pending):
            note = waiting
        return Row(stage, note or moving, *counts)

    def _retrying(self, stage: ImageStage, pending: Sequence[Digest], now: float) -> str | None:
        """``retrying in …`` while a retry of the image's own requests, or of one of the blob
        downloads it waits for, is waiting out its delay."""
        waits = [self.retries[key] for key in (stage.spec, *pending) if key in self.retries]
        current = [(event, until) for event, until in waits if until > now]
        if not current:
            return None
        event, until = max(current, key=lambda wait: wait[1])
        return "retrying " + retry_text(event, until - now, reason_text(event.error))
