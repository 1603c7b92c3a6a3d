"""What a push will do, decided before any request: which images, under which names, and what
each consists of.

Every source is opened (``output.sources``) and every ``index.json`` entry named: by its
``io.containerd.image.name``, else its ``org.opencontainers.image.ref.name`` when that is a whole
reference (a bare tag such as ``latest`` names no repository). The target name follows the one
rule of ``targets``. The same image named twice (a bundle and a per-image archive of it) is
pushed once; two different images claiming one target name, an entry without a name or a source
that is no OCI archive or layout stop the push with :class:`SourceError` before any network
I/O; so does a split bundle with a volume missing or not hashing to its line in the sha256 list
(each such volume named, so that only it is carried again). An image's content is read from its
source when it is pushed: its manifests (children before the index that lists them) and the
blobs they name; then, the same way, each signature, SBOM or attestation a pull carried with it
(an entry marked ``REFERRER_OF`` its name). Imports ``output``, ``targets``, ``manifest``,
``referrers`` and the value modules.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from bulkpull.digest import Digest
from bulkpull.errors import ContentError, InvalidReferenceError, SourceError
from bulkpull.imagelist import ImageSpec
from bulkpull.manifest import MAX_MANIFEST_BYTES, Descriptor, ImageIndex, parse_manifest
from bulkpull.output import (
    REFERRER_OF,
    REFERRER_TAG,
    BlobPlace,
    ExpectedBlob,
    Source,
    SourceEntry,
    read_source,
)
from bulkpull.reference import Reference, parse_reference
from bulkpull.referrers import ReferrerFilter, cosign_link, referrer_kind, referrer_link
from bulkpull.targets import PushTarget

# Indexes of indexes exist (a few tools nest them), but not deeper than this.
_MAX_DEPTH = 4


@dataclass(frozen=True)
class PlannedImage:
    """One image to push: its names (``spec.source`` in the source, ``spec.target`` at the
    target), the source it is read from, what its ``index.json`` entry points at, and the
    entries of the referrers carried with it."""

    spec: ImageSpec
    source: Source
    descriptor: Descriptor
    referrers: tuple[SourceEntry, ...] = ()


@dataclass(frozen=True)
class PushPlan:
    """The images of a push, in the order of the sources and their ``index.json``: each as
    its name in the source (``source``) and the name it gets at ``target`` (``target``)."""

    target: PushTarget
    images: tuple[ImageSpec, ...]
    _planned: tuple[PlannedImage, ...] = field(default=(), repr=False, compare=False)
    _sources: tuple[Source, ...] = field(default=(), repr=False, compare=False)

    def source_of(self, image: ImageSpec) -> Path:
        """The archive or layout ``image`` is pushed from."""
        return next(planned.source.path for planned in self._planned if planned.spec == image)


BlobSource = BlobPlace | Callable[[], Awaitable[BlobPlace]]
"""Where a blob's bytes are, or how to get them there (a download into the store), asked only
when the blob must be uploaded."""


@dataclass(frozen=True, slots=True)
class PushContent:
    """An image's manifests as they are pushed (children before the index listing them,
    each with the media type it is stored under), and the blobs they name, each once, with
    where its bytes are."""

    manifests: tuple[tuple[str, Digest, bytes], ...]
    blobs: tuple[tuple[Descriptor, BlobSource], ...]
    expected: tuple[ExpectedBlob, ...] = ()
    """What a delta left out: blobs the target must hold already."""

    @property
    def size(self) -> int:
        manifests = sum(len(raw) for _, _, raw in self.manifests)
        return manifests + sum(blob.size for blob, _ in self.blobs)


@dataclass(frozen=True, slots=True)
class ReferrerPush:
    """A signature, SBOM or attestation to push after what it refers to (``subject``): its
    manifests and blobs (``content``, the referrer's own manifest last), the cosign ``tag`` it
    goes under ("" for none), whether its manifest names the subject itself (``indexed``: the
    target's referrers list must show it), and its type as the report gives it."""

    content: PushContent
    subject: Digest
    kind: str
    tag: str = ""
    indexed: bool = False

    @property
    def digest(self) -> Digest:
        return self.content.manifests[-1][1]


def plan_push(sources: Iterable[Path | str], to: PushTarget | str) -> PushPlan:
    """Open every source and name every image in it (see the module); raises
    :class:`SourceError` listing every problem, before anything is sent anywhere."""
    if isinstance(sources, str | bytes):
        raise TypeError(f"sources must be a list of paths, not one string: [{sources!r}]")
    target = to if isinstance(to, PushTarget) else PushTarget.parse(to)
    opened: dict[Path, Source] = {}
    for path in map(Path, sources):
        opened.setdefault(path.resolve(), read_source(path))
    problems = [
        f"{source.path}: {problem}"
        for source in opened.values()
        if source.volumes is not None
        for problem in source.volumes.problems()
    ]
    claimed: dict[str, PlannedImage] = {}
    for source in opened.values():
        carried = _referrer_entries(source)
        for entry in source.entries:
            planned = _planned(source, entry, target, problems)
            if planned is not None:
                planned = replace(planned, referrers=carried.get(entry.name or "", ()))
                _claim(planned, claimed, problems)
    if problems:
        raise SourceError("\n".join(problems))
    if not claimed:
        raise SourceError(f"{', '.join(str(s.path) for s in opened.values())}: no images in it")
    images = tuple(claimed.values())
    return PushPlan(target, tuple(image.spec for image in images), images, tuple(opened.values()))


def _planned(
    source: Source, entry: SourceEntry, target: PushTarget, problems: list[str]
) -> PlannedImage | None:
    where = f"{source.path}: index.json entry {entry.position}"
    if entry.descriptor.annotation(REFERRER_OF) is not None:
        # A signature, SBOM or attestation a pull carried with an image: not an image of its
        # own, but pushed with its image (``_referrer_entries``).
        return None
    if entry.name is None:
        problems.append(
            f"{where} ({entry.descriptor.digest}) has no name (no io.containerd.image.name or "
            "org.opencontainers.image.ref.name annotation): a push needs one to name the image"
        )
        return None
    try:
        name = _reference(entry.name)
        spec = ImageSpec(name, target.name_for(name), origin=where)
    except InvalidReferenceError as exc:
        problems.append(f"{where}: {exc}")
        return None
    return PlannedImage(spec, source, entry.descriptor)


def _referrer_entries(source: Source) -> dict[str, tuple[SourceEntry, ...]]:
    """The referrer entries of ``source`` by the name of the image they travel with."""
    found: dict[str, list[SourceEntry]] = {}
    for entry in source.entries:
        image = entry.descriptor.annotation(REFERRER_OF)
        if image is not None:
            found.setdefault(image, []).append(entry)
    return {image: tuple(entries) for image, entries in found.items()}


def _reference(name: str) -> Reference:
    """The image an entry's name names. A bare word is a tag (skopeo's ``oci:DIR:latest``),
    which names no repository to push to."""
    if not any(mark in name for mark in "/:@"):
        raise InvalidReferenceError(name, "names only a tag, not the image's repository")
    return parse_reference(name)


def _claim(planned: PlannedImage, claimed: dict[str, PlannedImage], problems: list[str]) -> None:
    """Keep one image per target name: the same digest twice is one image; another digest
    under a name already claimed is a conflict."""
    name = str(planned.spec.target)
    first = claimed.setdefault(name, planned)
    if first is planned or first.descriptor.digest == planned.descriptor.digest:
        return
    problems.append(
        f"{planned.spec.origin}: {planned.spec.source} ({planned.descriptor.digest}) would "
        f"go to {name}, which {first.spec.origin} ({first.descriptor.digest}) already claims; "
        "push them separately, or pull the platforms into one bundle or layout"
    )


def planned_images(plan: PushPlan) -> tuple[PlannedImage, ...]:
    """The images of ``plan`` with the sources they are read from."""
    return plan._planned


def read_content(image: PlannedImage, plan: PushPlan) -> PushContent:
    """Read the image's manifests from its source, checked against their digests and sizes,
    and find the blobs they name: in the image's own source, else in any of the push's; a
    blob a delta left out, which the target must hold, is ``expected``. Runs in a worker
    thread."""
    delta = image.source.delta
    left_out = delta.expected(str(image.spec.source), image.descriptor.digest) if delta else ()
    return _content(image.source, image.descriptor, str(image.spec.source), plan, left_out)


def read_referrers(
    image: PlannedImage, plan: PushPlan, keep: ReferrerFilter
) -> tuple[ReferrerPush, ...]:
    """Read the referrers carried with the image (those ``keep`` keeps) as :func:`read_content`
    reads the image: what each refers to is its manifest's ``subject``, else its cosign tag."""
    found = []
    for entry in image.referrers:
        what = f"{image.spec.source}: referrer {entry.descriptor.digest}"
        content = _content(image.source, entry.descriptor, what, plan)
        media_type, _, raw = content.manifests[-1]
        manifest = parse_manifest(raw, media_type, what)
        if not keep.keeps(manifest):
            continue
        named = entry.descriptor.annotation(REFERRER_TAG) or ""
        tag = named if cosign_link(named) is not None else ""
        link = referrer_link(manifest, tag)
        if link is None:
            raise ContentError(f"{what}: has no subject and no cosign tag, so it refers to nothing")
        kind = referrer_kind(manifest, entry.descriptor.artifact_type)
        found.append(ReferrerPush(content, link.subject, kind, tag, manifest.subject is not None))
    return tuple(found)


def _content(
    source: Source,
    descriptor: Descriptor,
    what: str,
    plan: PushPlan,
    left_out: Sequence[ExpectedBlob] = (),
) -> PushContent:
    """The manifests under ``descriptor`` in ``source`` and the blobs they name, found in
    ``source`` else in any of the push's sources; those of ``left_out`` (what a delta expects
    at the target) that are in none are ``expected``."""
    manifests: dict[Digest, tuple[str, Digest, bytes]] = {}
    blobs: dict[Digest, Descriptor] = {}
    _collect(source, descriptor, what, 0, manifests, blobs)
    expected = {blob.digest: blob for blob in left_out}
    placed, absent = [], []
    for blob in blobs.values():
        where = _place(blob.digest, (source, *plan._sources))
        if where is None:
            if blob.digest in expected:
                absent.append(expected[blob.digest])
            elif not blob.urls:  # a foreign layer may stay out: registries allow it
                raise ContentError(f"{what}: blob {blob.digest} is not in the sources")
            continue
        if where.size != blob.size:
            raise ContentError(
                f"{what}: blob {blob.digest} is {where.size} bytes in {where.path}, not {blob.size}"
            )
        placed.append((blob, where))
    return PushContent(tuple(manifests.values()), tuple(placed), tuple(absent))


def _place(digest: Digest, sources: tuple[Source, ...]) -> BlobPlace | None:
    for source in sources:
        found = source.place(digest)
        if found is not None:
            return found
    return None


def _collect(
    source: Source,
    descriptor: Descriptor,
    what: str,
    depth: int,
    manifests: dict[Digest, tuple[str, Digest, bytes]],
    blobs: dict[Digest, Descriptor],
) -> None:
    """Add a manifest after everything it lists (depth first), and its blobs."""
    digest = descriptor.digest
    if digest in manifests:
        return
    if depth > _MAX_DEPTH:
        raise ContentError(f"{what}: indexes nested more than {_MAX_DEPTH} deep")
    raw = source.read(digest, MAX_MANIFEST_BYTES)
    if raw is None:
        raise ContentError(f"{what}: manifest {digest} is not in {source.path}")
    if len(raw) != descriptor.size:
        raise ContentError(f"{what}: manifest {digest} is {len(raw)} bytes, not {descriptor.size}")
    content = parse_manifest(raw, descriptor.media_type, f"{what} ({digest})")
    if isinstance(content, ImageIndex):
        absent = [child for child in content.manifests if source.place(child.digest) is None]
        if absent:
            raise ContentError(
                f"{what}: index {digest} lists {len(content.manifests)} manifests, and "
                f"{len(absent)} of them ({absent[0].digest}, …) are not in {source.path}: a "
                "registry refuses an index without them (pull with --platform all to carry "
                "every one, or push a single platform's manifest)"
            )
        for child in content.manifests:
            _collect(source, child, what, depth + 1, manifests, blobs)
    else:
        for blob in (content.config, *content.layers):
            blobs.setdefault(blob.digest, blob)
    manifests[digest] = (content.media_type, digest, raw)
