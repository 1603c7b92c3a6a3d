"""Referrer shapes: cosign's and the tag schema's tag names, referrers lists and their pages,
what a manifest refers to, ``--referrers-type``, and merging into a tag-schema index."""

from __future__ import annotations

import json

import pytest
from support import cosignfactory, imagefactory

from bulkpull.digest import Digest
from bulkpull.errors import ContentError, InvalidReferenceError, UnsupportedMediaTypeError
from bulkpull.manifest import OCI_INDEX, OCI_MANIFEST, Descriptor, parse_manifest
from bulkpull.referrers import (
    COSIGN_SIMPLE_SIGNING,
    DSSE_ENVELOPE,
    CosignKind,
    ReferrerFilter,
    ReferrerLink,
    cosign_link,
    cosign_tag,
    is_referrers_list,
    merge_referrer,
    next_page,
    parse_referrers,
    referrer_entry,
    referrer_link,
    referrer_types,
    referrers_tag,
    subject_indexed,
)

WHAT = "registry.test/app"
HEX = "97fc222cee7991b5b061d4d4afdb5f3428fcb0c9054e1690313786befa1e4e36"
DIGEST = Digest(HEX)
IMAGE = imagefactory.make_image([imagefactory.make_layer({"a": b"b"})])
KEY = cosignfactory.ecdsa_key()
SIGNATURE = cosignfactory.make_signature(IMAGE.digest, KEY)
ATTESTATION = cosignfactory.make_sbom_attestation(IMAGE.digest, KEY)
SBOM = cosignfactory.make_oras_sbom(IMAGE)
PAGE = "https://registry.test/v2/app/referrers/sha256:" + HEX


def index_of(*entries: dict[str, object], **fields: object) -> bytes:
    return json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(entries), **fields}
    ).encode()


def entry_of(image: imagefactory.Image) -> Descriptor:
    return referrer_entry(image.manifest, image.media_type, WHAT)


# --- tag names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "tag"),
    [
        # SIGNATURE_SPEC's example digest -> tag mapping.
        (CosignKind.SIGNATURE, f"sha256-{HEX}.sig"),
        (CosignKind.ATTESTATION, f"sha256-{HEX}.att"),
        (CosignKind.SBOM, f"sha256-{HEX}.sbom"),
    ],
)
def test_cosign_tags_name_the_digest_and_kind(kind: CosignKind, tag: str) -> None:
    assert cosign_tag(DIGEST, kind) == tag
    assert cosign_link(tag) == ReferrerLink(DIGEST, tag, kind)


@pytest.mark.parametrize(
    "tag",
    [
        "latest",
        f"sha256-{HEX}",  # the referrers tag schema, not cosign
        f"sha256-{HEX}.SIG",
        f"sha256-{HEX[:-1]}.sig",
        f"sha256-{HEX}.sig.bak",
        f"sha512-{HEX}.sig",
        f"sha256-{HEX.upper()}.sig",
    ],
)
def test_other_tags_are_not_cosign_tags(tag: str) -> None:
    assert cosign_link(tag) is None


@pytest.mark.parametrize(
    ("digest", "tag"),
    [
        (f"sha256:{HEX}", f"sha256-{HEX}"),
        (DIGEST, f"sha256-{HEX}"),
        ("sha512:" + "ab" * 64, "sha512-" + "ab" * 32),  # encoded part cut to 64
        ("a" * 40 + ":abc", "a" * 32 + "-abc"),  # algorithm cut to 32
        (
            "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564=",
            "sha256-b64u-LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564-",
        ),
    ],
)
def test_referrers_tag_follows_the_tag_schema(digest: Digest | str, tag: str) -> None:
    assert referrers_tag(digest) == tag


def test_referrers_tag_needs_an_algorithm() -> None:
    with pytest.raises(InvalidReferenceError, match="no algorithm"):
        referrers_tag(HEX)


# --- what refers to what -------------------------------------------------------------------------


def test_an_oras_artifact_refers_by_subject() -> None:
    manifest = parse_manifest(SBOM.manifest, OCI_MANIFEST, WHAT)
    assert referrer_link(manifest) == ReferrerLink(Digest.parse(IMAGE.digest))
    assert referrer_link(manifest, f"sha256-{HEX}.sig") == ReferrerLink(Digest.parse(IMAGE.digest))


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        (f"sha256-{HEX}.sig", ReferrerLink(DIGEST, f"sha256-{HEX}.sig", CosignKind.SIGNATURE)),
        ("", None),
        ("v1.0", None),
    ],
)
def test_a_cosign_manifest_refers_by_its_tag(tag: str, expected: ReferrerLink | None) -> None:
    manifest = parse_manifest(SIGNATURE.manifest, OCI_MANIFEST, WHAT)
    assert referrer_link(manifest, tag) == expected


def test_referrer_entry_is_what_the_referrers_api_lists() -> None:
    entry = entry_of(SBOM)

    assert entry.to_json() == {
        "mediaType": OCI_MANIFEST,
        "digest": SBOM.digest,
        "size": len(SBOM.manifest),
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
        "artifactType": "application/spdx+json",
    }


def test_referrer_entry_falls_back_to_the_config_media_type() -> None:
    body = json.loads(SIGNATURE.manifest)
    body["subject"] = {"mediaType": OCI_MANIFEST, "digest": IMAGE.digest, "size": 1}
    raw = json.dumps(body).encode()

    entry = referrer_entry(raw, OCI_MANIFEST, WHAT)

    assert entry.artifact_type == "application/vnd.oci.image.config.v1+json"
    assert entry.digest == Digest.of(raw)


def test_an_index_referrer_without_artifact_type_is_listed_without_one() -> None:
    subject = {"mediaType": OCI_MANIFEST, "digest": IMAGE.digest, "size": 1}
    raw = index_of(subject=subject)

    assert "artifactType" not in referrer_entry(raw, OCI_INDEX, WHAT).to_json()


def test_a_manifest_without_subject_has_no_referrer_entry() -> None:
    with pytest.raises(ContentError, match="has no subject"):
        entry_of(SIGNATURE)


# --- referrers lists -----------------------------------------------------------------------------


def test_a_referrers_list_gives_its_entries_with_artifact_types() -> None:
    raw = index_of(entry_of(SBOM).to_json())

    (entry,) = parse_referrers(raw, OCI_INDEX, WHAT)

    assert (str(entry.digest), entry.artifact_type) == (SBOM.digest, "application/spdx+json")
    assert entry.annotation("org.opencontainers.image.created") == "2024-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("raw", "content_type", "error", "message"),
    [
        (SIGNATURE.manifest, OCI_MANIFEST, ContentError, "must be an OCI index, not"),
        (
            imagefactory.make_index([IMAGE], docker_types=True).manifest,
            "",
            ContentError,
            "must be an OCI index, not application/vnd.docker",
        ),
        (b"<html>", "text/html", UnsupportedMediaTypeError, "text/html"),
    ],
)
def test_a_referrers_list_must_be_an_oci_index(
    raw: bytes, content_type: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        parse_referrers(raw, content_type, WHAT)


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (OCI_INDEX, True),
        ("Application/VND.oci.image.index.v1+json; charset=utf-8", True),
        ("application/json", False),
        ("text/html", False),
        ("", False),
        (OCI_MANIFEST, False),
    ],
)
def test_only_an_oci_index_answer_is_a_referrers_list(content_type: str, expected: bool) -> None:
    assert is_referrers_list(content_type) is expected


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("", None),
        (
            '</v2/app/referrers/sha256:x?last=b>; rel="next"',
            "https://registry.test/v2/app/referrers/sha256:x?last=b",
        ),
        ("<?n=2&last=b>; rel=next", PAGE + "?n=2&last=b"),
        ('<https://registry.test/p2>; type="x"; REL="next"', "https://registry.test/p2"),
        ('</first>; rel="prev", </second>; rel="next"', "https://registry.test/second"),
        ('</p>; rel="next last"', "https://registry.test/p"),
        ('</p>; rel="prev"', None),
        ("not a link", None),
    ],
)
def test_next_page_reads_the_link_header(link: str, expected: str | None) -> None:
    assert next_page(link, PAGE) == expected


@pytest.mark.parametrize(
    "link",
    [
        '<https://elsewhere.test/v2/app/referrers/x>; rel="next"',
        '<http://registry.test/v2/app/referrers/x>; rel="next"',
        '<https://registry.test:8443/v2/app/referrers/x>; rel="next"',
        '<//elsewhere.test/x>; rel="next"',
    ],
)
def test_next_page_on_another_host_is_refused(link: str) -> None:
    with pytest.raises(ContentError, match="another host"):
        next_page(link, PAGE)


# --- --referrers-type ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "types"),
    [
        (SIGNATURE, {"application/vnd.oci.image.config.v1+json", COSIGN_SIMPLE_SIGNING}),
        (ATTESTATION, {"application/vnd.oci.image.config.v1+json", DSSE_ENVELOPE}),
        (SBOM, {"application/spdx+json", "application/vnd.oci.empty.v1+json"}),
    ],
    ids=["signature", "attestation", "oras-sbom"],
)
def test_referrer_types_are_artifact_config_and_layer_types(
    image: imagefactory.Image, types: set[str]
) -> None:
    assert referrer_types(parse_manifest(image.manifest, OCI_MANIFEST, WHAT)) == types


@pytest.mark.parametrize(
    ("types", "kept"),
    [
        (set(), ["signature", "attestation", "oras-sbom"]),
        ({COSIGN_SIMPLE_SIGNING}, ["signature"]),
        ({DSSE_ENVELOPE, "application/spdx+json"}, ["attestation", "oras-sbom"]),
        ({"application/vnd.cyclonedx+json"}, []),
    ],
)
def test_referrers_type_keeps_only_the_types_named(types: set[str], kept: list[str]) -> None:
    keep = ReferrerFilter(frozenset(types))
    named = {"signature": SIGNATURE, "attestation": ATTESTATION, "oras-sbom": SBOM}

    found = [
        name
        for name, image in named.items()
        if keep.keeps(parse_manifest(image.manifest, OCI_MANIFEST, WHAT))
    ]

    assert found == kept


# --- the tag schema index on a registry without the API ----------------------------------------


def test_merging_into_a_missing_tag_starts_an_index() -> None:
    merged = merge_referrer(None, entry_of(SBOM), WHAT)

    assert merged is not None
    assert json.loads(merged) == {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [entry_of(SBOM).to_json()],
    }
    assert parse_referrers(merged, OCI_INDEX, WHAT) == (entry_of(SBOM),)


def test_merging_a_listed_referrer_changes_nothing() -> None:
    merged = merge_referrer(None, entry_of(SBOM), WHAT)
    assert merged is not None

    assert merge_referrer(merged, entry_of(SBOM), WHAT) is None


def test_merging_keeps_what_others_wrote_and_orders_by_digest() -> None:
    theirs = {
        "mediaType": OCI_MANIFEST,
        "digest": "sha256:" + "f" * 64,
        "size": 10,
        "artifactType": "application/vnd.example+json",
        "annotations": {"org.example": "kept"},
        "x-unknown-field": [1, 2],
    }
    existing = index_of(theirs, annotations={"org.example.index": "kept too"})

    merged = merge_referrer(existing, entry_of(SBOM), WHAT)

    assert merged is not None
    body = json.loads(merged)
    assert body["manifests"] == sorted(
        [theirs, entry_of(SBOM).to_json()], key=lambda item: str(item["digest"])
    )
    assert body["annotations"] == {"org.example.index": "kept too"}


def test_the_same_referrers_make_the_same_index_in_any_order() -> None:
    other = cosignfactory.make_oras_sbom(IMAGE, created="2025-06-01T00:00:00Z")
    first = merge_referrer(merge_referrer(None, entry_of(SBOM), WHAT), entry_of(other), WHAT)
    second = merge_referrer(merge_referrer(None, entry_of(other), WHAT), entry_of(SBOM), WHAT)

    assert first is not None
    assert first == second


@pytest.mark.parametrize(
    ("existing", "message"),
    [
        (IMAGE.manifest, "must be an OCI index, not application/vnd.oci.image.manifest"),
        (
            imagefactory.make_index([IMAGE], docker_types=True).manifest,
            "must be an OCI index, not application/vnd.docker",
        ),
        (
            index_of(subject={"mediaType": OCI_MANIFEST, "digest": IMAGE.digest, "size": 1}),
            "an index with a subject",
        ),
        (b"not json", "not valid JSON"),
        (index_of({"mediaType": OCI_MANIFEST, "digest": "sha256:bad", "size": 1}), "digest"),
    ],
    ids=["image", "docker-list", "artifact-index", "garbage", "bad-entry"],
)
def test_a_tag_holding_something_else_is_not_overwritten(existing: bytes, message: str) -> None:
    with pytest.raises(ContentError, match=message):
        merge_referrer(existing, entry_of(SBOM), WHAT)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (IMAGE.digest, True),
        (f" {IMAGE.digest} ", True),
        (None, False),
        ("", False),
        ("sha256:" + "0" * 64, False),
    ],
)
def test_subject_indexed_only_when_the_registry_names_the_subject(
    header: str | None, expected: bool
) -> None:
    assert subject_indexed(header, Digest.parse(IMAGE.digest)) is expected
