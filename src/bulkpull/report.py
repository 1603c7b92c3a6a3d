"""What a pull tells its caller: progress events while it runs, results and totals after.

Events are small frozen values passed to one callback, so a progress display (the CLI's, or a
library user's) needs no knowledge of how the pull is organised. The report renders to the
documented JSON of ``--report`` and to lock-file lines. Imports ``errors``, ``digest``,
``platform``, ``manifest``, ``signatures``, ``usage`` and ``imagelist``; no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path

from bulkpull.digest import Digest
from bulkpull.errors import BulkpullError, RegistryError
from bulkpull.imagelist import ImageSpec
from bulkpull.manifest import Descriptor
from bulkpull.platform import Platform
from bulkpull.retry import RetryListener, RetryNotice
from bulkpull.signatures import SignatureCheck
from bulkpull.usage import RegistryUsage

REPORT_VERSION = 1


class Status(StrEnum):
    """What became of an image in a pull: ``ImageResult.status`` and the report's
    ``status``; the values are the report's words."""

    PULLED = "pulled"
    UP_TO_DATE = "up-to-date"
    RESOLVED = "resolved"  # a dry run: nothing downloaded or written
    FAILED = "failed"
    # The run was stopped (Ctrl-C, SIGTERM) before this image was finished: nothing of it was
    # written, and what it had downloaded stays in the store for the next run.
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True)
class CarriedReferrer:
    """A signature, SBOM or attestation carried with an image: what it refers to (``subject``),
    its manifest's digest, its type (artifactType, else what its layers hold, such as
    cosign's simple-signing payloads), its size with every blob it carries, where it was
    found, and the cosign tag it is kept under ("" for an OCI referrer)."""

    subject: Digest
    digest: Digest
    type: str
    size: int
    source: str
    tag: str = ""

    def to_json(self) -> dict[str, object]:
        found = referrer_json(self.type, self.digest, self.size, self.subject, self.tag)
        tag = found.pop("tag")  # after the source, where the report has always had it
        return {**found, "source": self.source, "tag": tag}


def referrer_json(
    kind: str, digest: Digest, size: int, subject: Digest, tag: str
) -> dict[str, object]:
    """What a report says of any referrer: ``type``, ``digest``, ``size``, ``subject``,
    ``tag`` (cosign's, or null)."""
    return {
        "type": kind,
        "digest": str(digest),
        "size": size,
        "subject": str(subject),
        "tag": tag or None,
    }


@dataclass(frozen=True, slots=True)
class SkippedReferrer:
    """A referrer the registry lists that is not carried, and why (gone, or of a type that
    cannot be carried)."""

    subject: Digest
    digest: Digest
    reason: str

    def to_json(self) -> dict[str, object]:
        return {"digest": str(self.digest), "subject": str(self.subject), "reason": self.reason}


@dataclass(frozen=True, slots=True)
class ImageResult:
    """The outcome for one image and platform: what was written, or why not.

    ``source_digest`` is what the reference pointed at (an index for multi-platform images);
    ``manifest_digest`` is the platform's manifest; ``written_digest`` is what the output's
    ``index.json`` names the image by: the manifest, the registry's index (every platform
    kept), or an index bulkpull narrowed to the platforms pulled, the one digest it makes.
    ``narrowed`` is then (entries kept, entries the registry's index lists).
    ``all_platforms`` says the image was pulled with every platform. ``archive`` is the image's
    own archive, the bundle, or the OCI layout directory.
    """

    spec: ImageSpec
    status: Status = Status.PULLED
    manifest_digest: Digest | None = None
    source_digest: Digest | None = None
    config_digest: Digest | None = None
    platform: Platform | None = None
    size: int = 0
    layers: tuple[Descriptor, ...] = ()
    archive: Path | None = None
    error: BulkpullError | None = None
    written_digest: Digest | None = None
    narrowed: tuple[int, int] | None = None
    all_platforms: bool = False
    referrers: tuple[CarriedReferrer, ...] = ()
    skipped_referrers: tuple[SkippedReferrer, ...] = ()
    signature: SignatureCheck | None = None

    @property
    def ok(self) -> bool:
        """Whether the image was finished without an error."""
        return self.error is None and self.status is not Status.INTERRUPTED

    @property
    def up_to_date(self) -> bool:
        return self.status is Status.UP_TO_DATE

    def as_failed(self, error: BulkpullError) -> ImageResult:
        """This result once its output could not be written: nothing of it was written."""
        return replace(
            self,
            status=Status.FAILED,
            error=error,
            written_digest=None,
            narrowed=None,
            referrers=(),
        )

    def to_json(self) -> dict[str, object]:
        """One ``images`` record of the ``--report`` document."""
        return {
            "reference": str(self.spec.source),
            "name": str(self.spec.target),
            "origin": self.spec.origin or None,
            "status": self.status.value,
            "manifest_digest": _text(self.manifest_digest),
            "source_digest": _text(self.source_digest),
            "written_digest": _text(self.written_digest),
            "narrowed": narrowed_json(self.narrowed),
            "config_digest": _text(self.config_digest),
            "platform": _text(self.platform),
            "size": self.size,
            "layers": [
                {"digest": str(layer.digest), "size": layer.size, "media_type": layer.media_type}
                for layer in self.layers
            ],
            "archive": _text(self.archive),
            "error": error_json(self.error),
            "tries": self.error.tries if self.error else None,
            "referrers": [referrer.to_json() for referrer in self.referrers],
            "skipped_referrers": [skipped.to_json() for skipped in self.skipped_referrers],
            "signature": self.signature.to_json() if self.signature else None,
        }


@dataclass(frozen=True, slots=True)
class ReplacedImage:
    """An image an output held before and holds no longer (a moved tag; left out of a bundle)."""

    name: str
    digest: Digest
    archive: Path

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "digest": str(self.digest), "archive": str(self.archive)}


@dataclass(frozen=True, slots=True)
class DeltaTotals:
    """What a delta (``--have``) left out: the blobs of the images written that the far side
    holds already (in ``have_images`` images), each once, and their bytes."""

    have_images: int
    blobs_left_out: int
    bytes_left_out: int


@dataclass(frozen=True, slots=True)
class PullReport:
    """Every result, in the order of the list (platforms in the order asked for), and totals.

    ``bytes_downloaded`` counts blob bytes received from registries, ``bytes_reused`` the sizes
    of blobs already in the store when first needed; ``registries`` what the run asked of each
    registry and mirror, with the limits they announced; ``replaced`` what the outputs held and
    hold no longer; ``volumes`` a split bundle's volumes and list; ``delta`` is set for a delta.
    """

    results: tuple[ImageResult, ...]
    bytes_downloaded: int = 0
    bytes_reused: int = 0
    seconds: float = 0.0
    started: str = ""
    registries: tuple[RegistryUsage, ...] = ()
    replaced: tuple[ReplacedImage, ...] = ()
    delta: DeltaTotals | None = None
    volumes: tuple[Path, ...] = ()

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)

    @property
    def failed(self) -> tuple[ImageResult, ...]:
        return tuple(result for result in self.results if not result.ok)

    def count(self, status: Status) -> int:
        return sum(result.status is status for result in self.results)

    def to_json(self) -> dict[str, object]:
        """The ``--report`` document (its schema is in the README)."""
        return {
            "version": REPORT_VERSION,
            "started": self.started,
            "seconds": round(self.seconds, 3),
            "totals": {
                "images": len(self.results),
                **{status.value: self.count(status) for status in Status},
                "bytes_downloaded": self.bytes_downloaded,
                "bytes_reused": self.bytes_reused,
            },
            "images": [result.to_json() for result in self.results],
            "registries": [usage.to_json() for usage in self.registries],
            "replaced": [image.to_json() for image in self.replaced],
            "delta": asdict(self.delta) if self.delta is not None else None,
            "volumes": [str(volume) for volume in self.volumes],
        }

    def lock_lines(self) -> list[str]:
        """The list again with every source pinned to the digest it resolved to.

        A lock file is itself an image list: pulling it later gives the same bytes even when
        tags have moved. An index pinned for a line without ``platform=`` gets the platforms
        the run chose from it (``all`` when it kept every one), so a later pull with other
        ``--platform`` defaults picks the same manifests. Failed images are kept unpinned, so the
        lock still lists them.
        """
        digests: dict[ImageSpec, Digest | None] = {}
        chosen: dict[ImageSpec, ImageSpec] = {}
        for result in self.results:
            spec = result.spec
            digests.setdefault(spec, result.source_digest)
            from_index = result.source_digest != result.manifest_digest
            if not from_index or spec.platforms or spec.all_platforms:
                continue
            if result.all_platforms:
                chosen[spec] = replace(spec, all_platforms=True)
            elif result.platform:
                platforms = chosen.get(spec, spec).platforms
                chosen[spec] = replace(spec, platforms=(*platforms, result.platform))
        return [chosen.get(spec, spec).pinned(digest) for spec, digest in digests.items()]


class Stage(StrEnum):
    """What an image is doing, as ``ImageStage`` events tell it: a pull resolves, downloads
    and writes; a push checks, uploads and writes."""

    RESOLVING = "resolving"
    DOWNLOADING = "downloading"
    WRITING = "writing"
    # A push: what the target has is asked; blobs go up; manifests and tags are written.
    CHECKING = "checking"
    UPLOADING = "uploading"


@dataclass(frozen=True, slots=True)
class ImageStage:
    """An image entered a stage; when downloading, ``blobs`` are the digests it waits for.

    ``platforms`` are those the stage is for, once known: a multi-platform image pulled into
    per-image archives downloads each platform on its own, and these tell its stages apart.
    Empty while resolving, and for an image that is not multi-platform. An archive of its own
    is written as its blobs download, so such an image goes from downloading to done; writing
    is the stage of an image waiting for the bundle or layout that collects it.
    """

    spec: ImageSpec
    stage: Stage
    blobs: tuple[Digest, ...] = ()
    platforms: tuple[Platform, ...] = ()


@dataclass(frozen=True, slots=True)
class BlobNeeded:
    """A blob the run needs, reported once per run however many images share it.

    ``spec`` is the image whose need started its download: the others that need it wait for
    that one (None where no image is known).
    """

    digest: Digest
    size: int
    present: bool
    spec: ImageSpec | None = None


@dataclass(frozen=True, slots=True)
class BytesReceived:
    """Bytes of a blob arrived from the network (a resumed or repeated download counts too)."""

    digest: Digest
    count: int


@dataclass(frozen=True, slots=True)
class BlobDone:
    """A blob is verified and in the store."""

    digest: Digest


@dataclass(frozen=True, slots=True)
class ImageDone:
    """An image (and platform) is finished, one way or another."""

    result: ImageResult


@dataclass(frozen=True, slots=True)
class Retrying:
    """A request failed for a temporary reason and is repeated after ``delay`` seconds: try
    ``attempt`` of at most ``attempts`` ended with ``error``.

    ``spec`` is the image the request was for. A blob download is shared by every image that
    needs the blob, so its retries name the blob (``digest``) and no image.
    """

    error: BulkpullError
    attempt: int
    attempts: int
    delay: float
    spec: ImageSpec | None = None
    digest: Digest | None = None


Event = ImageStage | BlobNeeded | BytesReceived | BlobDone | ImageDone | Retrying
EventCallback = Callable[[Event], None]

# What the running task works for: an image, or a blob download (which images share). A pull
# runs each in a task of its own, and tasks a task starts inherit this, so a retry deep in the
# transport (a ping, a token, a manifest, a blob) is reported against what it delays.
_working_for: ContextVar[ImageSpec | Digest | None] = ContextVar("working_for", default=None)


def working_for(subject: ImageSpec | Digest) -> None:
    """Mark the running task, and the tasks it starts, as working for ``subject``."""
    _working_for.set(subject)


def image_worked_for() -> ImageSpec | None:
    """The image the running task works for, if it works for one."""
    subject = _working_for.get()
    return subject if isinstance(subject, ImageSpec) else None


def retry_events(on_event: EventCallback) -> RetryListener:
    """A retry listener (for the transport and the downloads) that reports each retry as a
    :class:`Retrying` event naming the image or blob the retrying task works for."""

    def retrying(notice: RetryNotice) -> None:
        subject = _working_for.get()
        digest = subject if isinstance(subject, Digest) else None
        tried = (notice.error, notice.attempt, notice.attempts, notice.delay)
        on_event(Retrying(*tried, image_worked_for(), digest))

    return retrying


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def narrowed_json(narrowed: tuple[int, int] | None) -> dict[str, int] | None:
    """A narrowed index in a report: entries kept, of the entries the registry listed."""
    return None if narrowed is None else {"kept": narrowed[0], "listed": narrowed[1]}


def error_json(error: BulkpullError | None) -> dict[str, object] | None:
    """An error as reports record it: its type, the registry's code and status, the message."""
    if error is None:
        return None
    registry = error if isinstance(error, RegistryError) else None
    return {
        "type": type(error).__name__,
        "code": sorted(registry.codes)[0] if registry and registry.codes else None,
        "status": registry.status if registry else None,
        "message": str(error),
    }
