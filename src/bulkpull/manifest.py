"""Manifests, indexes and image configs as validated values, and choosing a platform's manifest.

This module decides what a registry's bytes are (by ``Content-Type``, or by the body when the
header says nothing useful), refuses what bulkpull cannot pull (Docker schema1, unknown types),
and turns everything a later step relies on (digests that become file names, sizes that bound
downloads) into checked values. Pure data: no I/O. Imports only ``errors``, ``jsondoc``,
``digest`` and ``platform``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bulkpull.digest import Digest
from bulkpull.errors import (
    ContentError,
    InvalidReferenceError,
    PlatformNotFoundError,
    UnsupportedMediaTypeError,
)
from bulkpull.jsondoc import JsonObject, load_object, optional_str, required
from bulkpull.platform import Platform

# Manifests and indexes.
DOCKER_MANIFEST_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"

# Configs.
DOCKER_CONFIG: Final = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"

# Layers. The compression is a property of the type, never sniffed from a name.
DOCKER_LAYER: Final = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP: Final = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD: Final = "application/vnd.docker.image.rootfs.diff.tar.zstd"  # containerd's name
DOCKER_FOREIGN_LAYER: Final = "application/vnd.docker.image.rootfs.foreign.diff.tar"
DOCKER_FOREIGN_LAYER_GZIP: Final = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_LAYER: Final = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP: Final = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD: Final = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_NONDISTRIBUTABLE_LAYER: Final = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_NONDISTRIBUTABLE_LAYER_GZIP: Final = (
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
)
OCI_NONDISTRIBUTABLE_LAYER_ZSTD: Final = (
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
)

# Other blobs that appear in images and attestations.
OCI_EMPTY: Final = "application/vnd.oci.empty.v1+json"
IN_TOTO: Final = "application/vnd.in-toto+json"

INDEX_TYPES: Final = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
IMAGE_CONFIG_TYPES: Final = frozenset({DOCKER_CONFIG, OCI_CONFIG})
IMAGE_MANIFEST_TYPES: Final = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
SCHEMA1_TYPES: Final = frozenset({DOCKER_SCHEMA1_MANIFEST, DOCKER_SCHEMA1_SIGNED_MANIFEST})

# Sent as Accept on every manifest GET. Listing only the four types we parse keeps a registry
# from answering with schema1; listing the index types keeps Docker-style registries from
# quietly replacing a multi-platform list with its linux/amd64 entry.
MANIFEST_ACCEPT: Final[str] = ", ".join(
    (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX)
)

# containers/image refuses manifests and configs above 4 MiB (iolimits.MaxManifestBodySize,
# MaxConfigBodySize); real ones are a few KiB, so anything larger is a broken or hostile server
# and is not worth holding in memory.
MAX_MANIFEST_BYTES: Final = 4 * 1024 * 1024
MAX_CONFIG_BYTES: Final = 4 * 1024 * 1024
MAX_BLOB_SIZE: Final = 2**53  # 8 PiB, what any JSON reader holds exactly: larger sizes are lies

# Content-Types that say nothing about which manifest this is: misconfigured registries, static
# file servers and aiohttp's default when the header is missing. The body decides instead.
_GENERIC_TYPES: Final = frozenset(
    {"", "application/json", "application/octet-stream", "binary/octet-stream", "text/plain"}
)
# containerd reads ``text/plain`` as schema1 (an old Red Hat registry sent it); we do the same
# when the body does not say otherwise.
_TEXT_PLAIN: Final = "text/plain"
# The fields that tell an index from a manifest; a body carrying the other kind's fields is
# ambiguous, and containerd refuses it for that reason (CVE-2021-41190).
_INDEX_ONLY_FIELDS: Final = ("manifests",)
_MANIFEST_ONLY_FIELDS: Final = ("config", "layers")
# BuildKit's annotation on attestation manifests and other non-runnable index entries.
REFERENCE_TYPE_ANNOTATION: Final = "vnd.docker.reference.type"

_SCHEMA1_HINT: Final = (
    "Docker schema1 manifests are deprecated and not supported; "
    "the image must be pushed again with a current client to get a schema2 or OCI manifest"
)


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A reference to content by type, digest and size, as in an index or manifest.

    ``annotations`` keeps the given order so that a descriptor written back out reads the same.
    ``artifact_type`` is set on the entries of a referrers list (OCI 1.1), "" elsewhere.
    """

    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    annotations: tuple[tuple[str, str], ...] = ()
    urls: tuple[str, ...] = ()
    artifact_type: str = ""

    def annotation(self, key: str) -> str | None:
        return next((value for name, value in self.annotations if name == key), None)

    @property
    def is_attestation(self) -> bool:
        """Whether this index entry is not a runnable image (BuildKit attestations).

        Docker treats an entry carrying ``vnd.docker.reference.type`` or the ``unknown/unknown``
        platform as a pseudo-image; such entries are never chosen and never archived as images.
        """
        if self.annotation(REFERENCE_TYPE_ANNOTATION) is not None:
            return True
        return self.platform is not None and self.platform.is_unknown

    def to_json(self) -> dict[str, object]:
        """The OCI descriptor object, with optional fields only when present (for writers)."""
        found: dict[str, object] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.urls:
            found["urls"] = list(self.urls)
        if self.annotations:
            found["annotations"] = dict(self.annotations)
        if self.platform is not None:
            found["platform"] = _platform_json(self.platform)
        if self.artifact_type:
            found["artifactType"] = self.artifact_type
        return found


@dataclass(frozen=True, slots=True)
class ImageManifest:
    """One platform's image: its config and its layers in order (Docker v2 or OCI).

    ``artifact_type``, ``subject`` and the manifest's own ``annotations`` are what OCI 1.1
    artifacts (signatures, SBOMs) carry: a manifest with a ``subject`` refers to that image.
    """

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    artifact_type: str = ""
    subject: Descriptor | None = None
    annotations: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ImageIndex:
    """A multi-platform index or Docker manifest list; entries keep the index's order.

    An OCI index may be an artifact too, with ``artifact_type``, ``subject`` and annotations.
    """

    media_type: str
    manifests: tuple[Descriptor, ...]
    artifact_type: str = ""
    subject: Descriptor | None = None
    annotations: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The parts of an image config that archive writers and loaders check."""

    os: str
    architecture: str
    variant: str
    diff_ids: tuple[str, ...]

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.architecture, self.variant)


def parse_manifest(raw: bytes, content_type: str, what: str) -> ImageManifest | ImageIndex:
    """Parse a manifest or index fetched with ``Content-Type: content_type``.

    The header decides the type (its parameters ignored, as the distribution spec asks); when
    it is missing or generic the body's ``mediaType`` or shape decides. A body whose
    ``mediaType`` contradicts a specific header is refused rather than guessed at.
    """
    declared = content_type.partition(";")[0].strip().lower()
    if declared not in _GENERIC_TYPES:
        _require_supported(declared, what)
    body = load_object(raw, MAX_MANIFEST_BYTES, what)
    media_type = _decide_type(declared, body, what)
    _require_supported(media_type, what)
    _require_consistent(media_type, body, what)
    artifact_type = optional_str(body, "artifactType", what)
    subject = _subject(body.get("subject"), what)
    annotations = _annotations(body.get("annotations"), "annotations", what)
    if media_type in INDEX_TYPES:
        entries = _descriptors(body, "manifests", what)
        return ImageIndex(media_type, entries, artifact_type, subject, annotations)
    config = parse_descriptor(required(body, "config", dict, what), "config", what)
    layers = _descriptors(body, "layers", what)
    return ImageManifest(media_type, config, layers, artifact_type, subject, annotations)


def choose_platform(index: ImageIndex, wanted: Platform, what: str) -> Descriptor:
    """The index entry containerd would pull for ``wanted``: best match rank, then index order.

    Attestations, entries without a platform and entries that are not image manifests are
    never candidates.
    """
    candidates = _candidates(index)
    ranked = [
        (rank, position, entry)
        for position, entry in enumerate(candidates)
        if entry.platform is not None and (rank := wanted.match_rank(entry.platform)) is not None
    ]
    if ranked:
        return min(ranked, key=lambda item: item[:2])[2]
    available = sorted({str(entry.platform.normalized()) for entry in candidates if entry.platform})
    raise PlatformNotFoundError(what, str(wanted), available)


def parse_config(raw: bytes, what: str) -> ImageConfig:
    """Parse an image config; ``rootfs.diff_ids`` is required because ``docker load`` checks
    every layer against it and refuses a config without it."""
    body = load_object(raw, MAX_CONFIG_BYTES, what)
    rootfs = required(body, "rootfs", dict, what)
    diff_ids = required(rootfs, "diff_ids", list, what, "rootfs.diff_ids")
    return ImageConfig(
        os=optional_str(body, "os", what),
        architecture=optional_str(body, "architecture", what),
        variant=optional_str(body, "variant", what),
        diff_ids=tuple(
            str(_digest(item, f"rootfs.diff_ids[{i}]", what)) for i, item in enumerate(diff_ids)
        ),
    )


def _candidates(index: ImageIndex) -> list[Descriptor]:
    """Entries that could be the image to pull: real platforms, manifest types we parse."""
    return [
        entry
        for entry in index.manifests
        if entry.media_type in IMAGE_MANIFEST_TYPES
        and entry.platform is not None
        and not entry.is_attestation
    ]


def _decide_type(declared: str, body: JsonObject, what: str) -> str:
    """The manifest's media type: the specific header, else what the body says it is."""
    body_type = body.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise ContentError(f"{what}: mediaType is not a string")
    if _schema_version(body) == 1:
        return DOCKER_SCHEMA1_SIGNED_MANIFEST if "signatures" in body else DOCKER_SCHEMA1_MANIFEST
    if declared not in _GENERIC_TYPES:
        if body_type is not None and body_type != declared:
            raise ContentError(
                f"{what}: Content-Type {declared!r} but the body says mediaType {body_type!r}"
            )
        return declared
    sniffed = body_type or _type_by_shape(body)
    if sniffed:
        return sniffed
    if declared == _TEXT_PLAIN:
        return DOCKER_SCHEMA1_MANIFEST
    shown = declared or "none"
    raise ContentError(
        f"{what}: cannot tell the manifest type (Content-Type {shown}, no mediaType)"
    )


def _type_by_shape(body: JsonObject) -> str | None:
    """OCI allows omitting ``mediaType``; a schemaVersion 2 body is then an OCI index or
    manifest, told apart by its fields."""
    if _schema_version(body) != 2:
        return None
    if "manifests" in body:
        return OCI_INDEX
    if "config" in body:
        return OCI_MANIFEST
    return None


def _require_supported(media_type: str, what: str) -> None:
    if media_type in SCHEMA1_TYPES:
        raise UnsupportedMediaTypeError(what, media_type, _SCHEMA1_HINT)
    if media_type not in INDEX_TYPES | IMAGE_MANIFEST_TYPES:
        raise UnsupportedMediaTypeError(what, media_type)


def _require_consistent(media_type: str, body: JsonObject, what: str) -> None:
    """Refuse an index with manifest fields or a manifest with index fields, so that the same
    bytes cannot mean different images to different clients; and any schemaVersion but 2."""
    wrong = _MANIFEST_ONLY_FIELDS if media_type in INDEX_TYPES else _INDEX_ONLY_FIELDS
    for name in wrong:
        if name in body:
            raise ContentError(f"{what}: {media_type} must not have {name!r}")
    if "schemaVersion" in body and _schema_version(body) != 2:
        raise ContentError(f"{what}: schemaVersion must be 2, got {body['schemaVersion']!r}")


def _schema_version(body: JsonObject) -> int | None:
    """``schemaVersion`` when it is a real integer (JSON ``true`` and ``1.0`` are not)."""
    version = body.get("schemaVersion")
    return version if type(version) is int else None


def _descriptors(body: JsonObject, name: str, what: str) -> tuple[Descriptor, ...]:
    items = required(body, name, list, what)
    return tuple(parse_descriptor(item, f"{name}[{i}]", what) for i, item in enumerate(items))


def parse_descriptor(item: object, where: str, what: str) -> Descriptor:
    """One descriptor from parsed JSON (``where`` names it in messages, as ``what``'s part);
    unknown media types are kept, since callers decide what to skip."""
    if not isinstance(item, dict):
        raise ContentError(f"{what}: {where} is not an object")
    size = item.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_BLOB_SIZE:
        shown = repr(size) if len(repr(size)) <= 20 else f"a {len(repr(size))}-character number"
        raise ContentError(f"{what}: {where}.size must be an integer from 0 to 2**53, got {shown}")
    return Descriptor(
        media_type=required(item, "mediaType", str, what, f"{where}.mediaType"),
        digest=_digest(item.get("digest"), f"{where}.digest", what),
        size=size,
        platform=_platform(item.get("platform"), f"{where}.platform", what),
        annotations=_annotations(item.get("annotations"), f"{where}.annotations", what),
        urls=_urls(item.get("urls"), f"{where}.urls", what),
        artifact_type=optional_str(item, "artifactType", what, f"{where}.artifactType"),
    )


def _subject(value: object, what: str) -> Descriptor | None:
    return None if value is None else parse_descriptor(value, "subject", what)


def _digest(value: object, where: str, what: str) -> Digest:
    """A digest that is safe to use as a file name; anything else is bad content."""
    if not isinstance(value, str):
        raise ContentError(f"{what}: {where} must be a string, got {value!r}")
    try:
        return Digest.parse(value)
    except InvalidReferenceError as exc:
        raise ContentError(f"{what}: {where}: {exc}") from exc


def _platform(value: object, where: str, what: str) -> Platform | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ContentError(f"{what}: {where} is not an object")
    return Platform(
        required(value, "os", str, what, f"{where}.os"),
        required(value, "architecture", str, what, f"{where}.architecture"),
        optional_str(value, "variant", what, f"{where}.variant"),
    )


def _platform_json(platform: Platform) -> dict[str, str]:
    found = {"architecture": platform.architecture, "os": platform.os}
    if platform.variant:
        found["variant"] = platform.variant
    return found


def _annotations(value: object, where: str, what: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ContentError(f"{what}: {where} must map strings to strings")
    return tuple(value.items())


def _urls(value: object, where: str, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(url, str) for url in value):
        raise ContentError(f"{what}: {where} must be a list of strings")
    return tuple(value)
