"""How signatures, SBOMs and attestations refer to their images, as values.

Two schemes live side by side in registries, and bulkpull carries both:

- **OCI 1.1 referrers**: a manifest whose ``subject`` names the image. A registry with the
  Referrers API lists them (``GET /v2/<name>/referrers/<digest>``); against one without it
  (Debian's ``docker-registry``, GHCR) clients keep an index of them under the *referrers tag
  schema* tag ``sha256-<hex>``, merging each new referrer into it.
- **cosign's tags**: the manifest for image ``sha256:<hex>`` lives under the tag
  ``sha256-<hex>.sig`` (signatures), ``.att`` (attestations) or ``.sbom`` (SBOM attachments),
  with no ``subject``; only the tag name links it to the image.

This module names those tags, reads referrers lists, decides what a pushed manifest refers to,
merges a referrer into a tag-schema index, and filters by ``--referrers-type``. ``discovery``
turns it into the requests of a pull. Pure data: no I/O. Imports ``errors``, ``jsondoc``,
``digest`` and ``manifest``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final
from urllib.parse import urljoin, urlsplit

from bulkpull.digest import Digest
from bulkpull.errors import ContentError, InvalidReferenceError, printable
from bulkpull.jsondoc import load_object, required
from bulkpull.manifest import (
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    Descriptor,
    ImageIndex,
    ImageManifest,
    parse_manifest,
)

# Layer types of cosign's manifests, what ``--referrers-type`` names them by.
COSIGN_SIMPLE_SIGNING: Final = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE: Final = "application/vnd.dsse.envelope.v1+json"
# The distribution spec's limits for the two halves of a referrers tag, and the characters a
# tag may hold; the rest become "-".
_TAG_ALGORITHM_LENGTH: Final = 32
_TAG_ENCODED_LENGTH: Final = 64
_NOT_IN_TAG: Final = re.compile(r"[^a-zA-Z0-9._-]")
_COSIGN_TAG: Final = re.compile(r"sha256-([a-f0-9]{64})\.(sig|att|sbom)")
# One link of a ``Link`` header (RFC 8288): ``<target>`` and its parameters up to the next one.
_LINK: Final = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]*)*)")
_REL: Final = re.compile(r';\s*rel\s*=\s*(?:"([^"]*)"|([^\s;,]+))', re.IGNORECASE)


class CosignKind(StrEnum):
    """The suffix of a cosign tag, and what the manifest under it holds."""

    SIGNATURE = "sig"
    ATTESTATION = "att"
    SBOM = "sbom"


def cosign_tag(subject: Digest, kind: CosignKind) -> str:
    """The tag cosign keeps ``kind`` of ``subject`` under: ``sha256-<hex>.sig``."""
    return f"sha256-{subject.hex}.{kind.value}"


@dataclass(frozen=True, slots=True)
class ReferrerLink:
    """What a manifest refers to, and how that is written down: by its ``subject`` (``tag`` is
    ""), or by the cosign ``tag`` it sits under (``kind`` set)."""

    subject: Digest
    tag: str = ""
    kind: CosignKind | None = None


def cosign_link(tag: str) -> ReferrerLink | None:
    """The image a cosign tag belongs to, or None for any other tag."""
    found = _COSIGN_TAG.fullmatch(tag)
    if found is None:
        return None
    return ReferrerLink(Digest(found[1]), tag, CosignKind(found[2]))


def referrer_link(manifest: ImageManifest | ImageIndex, tag: str = "") -> ReferrerLink | None:
    """What ``manifest`` (tagged ``tag``, if it is) refers to, or None for an image.

    A ``subject`` wins over the tag: a manifest can be both, and then it travels as a referrer
    the target registry indexes (and under its tag as well).
    """
    if manifest.subject is not None:
        return ReferrerLink(manifest.subject.digest)
    return cosign_link(tag)


def referrers_tag(digest: Digest | str) -> str:
    """The referrers tag schema tag of ``digest``: ``<algorithm>-<encoded>``, each half cut to
    the spec's length and with characters a tag cannot hold made ``-``."""
    algorithm, sep, encoded = str(digest).partition(":")
    if not sep:
        raise InvalidReferenceError(str(digest), "digest has no algorithm")
    algorithm = _NOT_IN_TAG.sub("-", algorithm)[:_TAG_ALGORITHM_LENGTH]
    return f"{algorithm}-{_NOT_IN_TAG.sub('-', encoded)[:_TAG_ENCODED_LENGTH]}"


def referrer_entry(raw: bytes, content_type: str, what: str) -> Descriptor:
    """The entry that lists manifest ``raw`` among its subject's referrers, as the Referrers
    API writes it: ``artifactType`` the manifest's, else its config's media type (an index
    without one has none), and the manifest's annotations."""
    manifest = parse_manifest(raw, content_type, what)
    if manifest.subject is None:
        raise ContentError(f"{what}: has no subject, so it refers to nothing")
    artifact_type = manifest.artifact_type
    if not artifact_type and isinstance(manifest, ImageManifest):
        artifact_type = manifest.config.media_type
    return Descriptor(
        manifest.media_type,
        Digest.of(raw),
        len(raw),
        annotations=manifest.annotations,
        artifact_type=artifact_type,
    )


def parse_referrers(raw: bytes, content_type: str, what: str) -> tuple[Descriptor, ...]:
    """The entries of a referrers list: an answer of the Referrers API or a tag-schema index.

    Both must be OCI indexes; anything else is a :class:`ContentError` (which the caller turns
    into "the registry has no Referrers API" or "no referrers", as the spec says).
    """
    index = _referrers_index(raw, content_type, what)
    return index.manifests


def _referrers_index(raw: bytes, content_type: str, what: str) -> ImageIndex:
    parsed = parse_manifest(raw, content_type, what)
    if not isinstance(parsed, ImageIndex) or parsed.media_type != OCI_INDEX:
        kind = parsed.media_type
        raise ContentError(f"{what}: a referrers list must be an OCI index, not {kind}")
    return parsed


def is_referrers_list(content_type: str) -> bool:
    """Whether an answer of the Referrers API is one: an OCI index by its ``Content-Type``.

    go-containerregistry and oras count anything else (a login page, a 303 to a rate-limited
    URL, Docker Hub's old HTML) as "no Referrers API here".
    """
    return content_type.partition(";")[0].strip().lower() == OCI_INDEX


def next_page(link: str, url: str) -> str | None:
    """The next page of a referrers list from the answer's ``Link`` header, absolute.

    ``url`` is the page that carried the header; a relative target is resolved against it.
    A target on another scheme, host or port is refused: following it would send the
    registry's credentials elsewhere.
    """
    for target, params in _LINK.findall(link):
        rels = {rel.lower() for m in _REL.finditer(params) for rel in (m[1] or m[2]).split()}
        if "next" in rels:
            return _same_origin(urljoin(url, target.strip()), url)
    return None


def _same_origin(target: str, url: str) -> str:
    here, there = urlsplit(url), urlsplit(target)
    if (here.scheme, here.netloc) != (there.scheme, there.netloc):
        raise ContentError(
            f"{url}: the next page of referrers is on another host ({printable(target)})"
        )
    return target


@dataclass(frozen=True, slots=True)
class ReferrerFilter:
    """``--referrers-type``: keep only referrers of these types (all when empty).

    A referrer's types are its ``artifactType``, its config's media type and its layers'
    media types: cosign's signatures are ``application/vnd.dev.cosign.simplesigning.v1+json``,
    its attestations ``application/vnd.dsse.envelope.v1+json``, an oras SBOM its artifactType
    (``application/spdx+json``). cosign's manifests have no artifactType, so the layers count.
    """

    types: frozenset[str] = frozenset()

    def keeps(self, manifest: ImageManifest | ImageIndex) -> bool:
        return not self.types or not self.types.isdisjoint(referrer_types(manifest))


def referrer_types(manifest: ImageManifest | ImageIndex) -> frozenset[str]:
    """The media types ``--referrers-type`` matches against (see :class:`ReferrerFilter`)."""
    found: set[str] = {manifest.artifact_type}
    if isinstance(manifest, ImageManifest):
        found.add(manifest.config.media_type)
        found.update(layer.media_type for layer in manifest.layers)
    return frozenset(found - {""})


def referrer_kind(manifest: ImageManifest | ImageIndex, artifact_type: str = "") -> str:
    """The type a report gives a referrer: its artifactType (``artifact_type``, what its
    referrers list entry says, falls back to the config's type), else what cosign's layers
    hold (cosign's manifests have no artifactType), else its own media type."""
    if artifact_type or manifest.artifact_type:
        return artifact_type or manifest.artifact_type
    if isinstance(manifest, ImageManifest):
        return manifest.layers[0].media_type if manifest.layers else manifest.config.media_type
    return manifest.media_type


def merge_referrer(existing: bytes | None, entry: Descriptor, what: str) -> bytes | None:
    """The tag-schema index with ``entry`` added, or None when it is listed already.

    ``existing`` is what the tag holds (None when it answered 404). Its other fields and
    entries are kept as they are; entries are ordered by digest, so the same referrers make
    the same index (and digest) whatever order they were pushed in. A tag holding something
    other than a referrers list (an image, an index with a subject of its own) is refused
    rather than overwritten.
    """
    if existing is None:
        body: dict[str, object] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    else:
        body = _tag_schema_body(existing, what)
    entries = [item for item in required(body, "manifests", list, what) if isinstance(item, dict)]
    if any(item.get("digest") == str(entry.digest) for item in entries):
        return None
    merged = sorted([*entries, entry.to_json()], key=lambda item: str(item.get("digest")))
    body["manifests"] = merged
    return json.dumps(body, separators=(",", ":")).encode()


def _tag_schema_body(raw: bytes, what: str) -> dict[str, object]:
    """The JSON of a tag-schema index, checked: an OCI index without a subject, every entry a
    valid descriptor. The tag is fetched by tag, so its body decides its type."""
    index = _referrers_index(raw, "", what)
    if index.subject is not None:
        raise ContentError(f"{what}: is an index with a subject, not a referrers list")
    return dict(load_object(raw, MAX_MANIFEST_BYTES, what))


def subject_indexed(oci_subject: str | None, subject: Digest) -> bool:
    """Whether the registry indexed a pushed referrer itself: its manifest PUT answered
    ``OCI-Subject: <subject>``. Otherwise the pusher keeps the tag-schema index (regclient's
    rule: an absent or different header means the registry did not)."""
    return oci_subject is not None and oci_subject.strip() == str(subject)
