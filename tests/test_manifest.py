"""Deciding a manifest's type, refusing what cannot be pulled, validating descriptors, choosing a
platform from an index, and reading the config fields archives depend on."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from support import cosignfactory, imagefactory

from bulkpull.digest import Digest
from bulkpull.errors import (
    ContentError,
    InvalidReferenceError,
    PlatformNotFoundError,
    UnsupportedMediaTypeError,
)
from bulkpull.manifest import (
    DOCKER_FOREIGN_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1_MANIFEST,
    DOCKER_SCHEMA1_SIGNED_MANIFEST,
    IMAGE_MANIFEST_TYPES,
    INDEX_TYPES,
    MANIFEST_ACCEPT,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    choose_platform,
    parse_config,
    parse_manifest,
)
from bulkpull.platform import DEFAULT_PLATFORM, Platform

WHAT = "registry.test/app:1"
HEX = "a" * 64
OTHER_HEX = "b" * 64

LAYER = imagefactory.make_layer({"hello.txt": b"hello"})
OCI_IMAGE = imagefactory.make_image([LAYER])
DOCKER_IMAGE = imagefactory.make_image([LAYER], docker_types=True)
PLATFORMS = [("linux", "amd64", ""), ("linux", "arm64", "v8"), ("linux", "arm", "v7")]
IMAGES = [
    imagefactory.make_image([LAYER], os_name=o, arch=a, variant=v, label=f"{o}/{a}/{v}")
    for o, a, v in PLATFORMS
]
OCI_IMAGE_INDEX = imagefactory.make_index(IMAGES, attestation=True)
DOCKER_LIST = imagefactory.make_index(
    [
        imagefactory.make_image([LAYER], docker_types=True, arch=a, variant=v)
        for _, a, v in PLATFORMS
    ],
    docker_types=True,
)


def edited(raw: bytes, change: Callable[[dict[str, Any]], object]) -> bytes:
    """``raw`` with its JSON object changed in place by ``change``."""
    body = json.loads(raw)
    change(body)
    return json.dumps(body).encode()


def without(key: str) -> Callable[[dict[str, Any]], object]:
    return lambda body: body.pop(key)


def setting(key: str, value: object) -> Callable[[dict[str, Any]], object]:
    return lambda body: body.__setitem__(key, value)


def entry(
    arch: str,
    variant: str = "",
    *,
    os_name: str = "linux",
    media_type: str = OCI_MANIFEST,
    annotations: dict[str, str] | None = None,
    digest_hex: str = HEX,
) -> Descriptor:
    return Descriptor(
        media_type,
        Digest(digest_hex),
        100,
        Platform(os_name, arch, variant),
        tuple((annotations or {}).items()),
    )


# --- accepted types ------------------------------------------------------------------------------


def test_accept_lists_exactly_the_four_pullable_types() -> None:
    assert MANIFEST_ACCEPT.split(", ") == [
        DOCKER_MANIFEST,
        DOCKER_MANIFEST_LIST,
        OCI_MANIFEST,
        OCI_INDEX,
    ]
    assert set(MANIFEST_ACCEPT.split(", ")) == INDEX_TYPES | IMAGE_MANIFEST_TYPES


@pytest.mark.parametrize("image", [OCI_IMAGE, DOCKER_IMAGE], ids=["oci", "docker"])
def test_parse_manifest_reads_config_and_layers(image: imagefactory.Image) -> None:
    parsed = parse_manifest(image.manifest, image.media_type, WHAT)
    assert isinstance(parsed, ImageManifest)
    assert parsed.media_type == image.media_type
    assert str(parsed.config.digest) == image.config_digest
    assert parsed.config.size == len(image.config)
    assert [(str(layer.digest), layer.size) for layer in parsed.layers] == [
        (LAYER.digest, len(LAYER.compressed))
    ]


@pytest.mark.parametrize("index", [OCI_IMAGE_INDEX, DOCKER_LIST], ids=["oci", "docker"])
def test_parse_manifest_reads_index_entries_in_order(index: imagefactory.Index) -> None:
    parsed = parse_manifest(index.manifest, index.media_type, WHAT)
    assert isinstance(parsed, ImageIndex)
    assert parsed.media_type == index.media_type
    children = [(str(d.digest), d.size, d.platform) for d in parsed.manifests]
    expected = [(c.digest, len(c.manifest), Platform(*c.platform)) for c in index.children]
    assert children == expected


def test_parse_manifest_keeps_attestation_annotations() -> None:
    parsed = parse_manifest(OCI_IMAGE_INDEX.manifest, OCI_INDEX, WHAT)
    assert isinstance(parsed, ImageIndex)
    images, attestations = parsed.manifests[: len(IMAGES)], parsed.manifests[len(IMAGES) :]
    assert all(attestation.is_attestation for attestation in attestations)
    assert [a.annotation("vnd.docker.reference.type") for a in attestations] == [
        "attestation-manifest"
    ] * len(IMAGES)
    assert [a.annotation("vnd.docker.reference.digest") for a in attestations] == [
        image.digest for image in IMAGES
    ]
    assert not any(d.is_attestation for d in images)


# --- deciding the type ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        f"{OCI_MANIFEST}; charset=utf-8",
        f"  {OCI_MANIFEST.upper()} ;q=1",
        "",
        "application/octet-stream",
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "binary/octet-stream",
    ],
)
def test_content_type_params_and_generic_types_fall_back_to_the_body(content_type: str) -> None:
    parsed = parse_manifest(OCI_IMAGE.manifest, content_type, WHAT)
    assert isinstance(parsed, ImageManifest)
    assert parsed.media_type == OCI_MANIFEST


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (edited(OCI_IMAGE.manifest, without("mediaType")), OCI_MANIFEST),
        (edited(OCI_IMAGE_INDEX.manifest, without("mediaType")), OCI_INDEX),
        (DOCKER_LIST.manifest, DOCKER_MANIFEST_LIST),
    ],
    ids=["oci-manifest-shape", "oci-index-shape", "docker-list-mediatype"],
)
@pytest.mark.parametrize("content_type", ["", "application/json", "text/plain"])
def test_body_decides_when_content_type_is_generic(
    raw: bytes, expected: str, content_type: str
) -> None:
    assert parse_manifest(raw, content_type, WHAT).media_type == expected


def test_specific_content_type_wins_over_a_body_without_media_type() -> None:
    raw = edited(OCI_IMAGE.manifest, without("mediaType"))
    assert parse_manifest(raw, OCI_MANIFEST, WHAT).media_type == OCI_MANIFEST


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (DOCKER_IMAGE.manifest, OCI_MANIFEST),
        (OCI_IMAGE.manifest, DOCKER_MANIFEST),
        (OCI_IMAGE_INDEX.manifest, DOCKER_MANIFEST_LIST),
        (OCI_IMAGE.manifest, OCI_INDEX),
    ],
)
def test_body_media_type_contradicting_content_type_is_refused(
    raw: bytes, content_type: str
) -> None:
    with pytest.raises(ContentError, match=f"^{WHAT}: Content-Type .* but the body says") as caught:
        parse_manifest(raw, content_type, WHAT)
    assert not isinstance(caught.value, UnsupportedMediaTypeError)


SCHEMA1_BODY = json.dumps(
    {
        "schemaVersion": 1,
        "name": "library/app",
        "tag": "1",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": f"sha256:{HEX}"}],
        "history": [{"v1Compatibility": "{}"}],
    }
).encode()
SIGNED_SCHEMA1_BODY = edited(SCHEMA1_BODY, setting("signatures", [{"signature": "x"}]))


@pytest.mark.parametrize(
    ("raw", "content_type", "media_type"),
    [
        (SCHEMA1_BODY, DOCKER_SCHEMA1_MANIFEST, DOCKER_SCHEMA1_MANIFEST),
        (SIGNED_SCHEMA1_BODY, DOCKER_SCHEMA1_SIGNED_MANIFEST, DOCKER_SCHEMA1_SIGNED_MANIFEST),
        (
            SIGNED_SCHEMA1_BODY,
            f"{DOCKER_SCHEMA1_SIGNED_MANIFEST}; charset=utf-8",
            DOCKER_SCHEMA1_SIGNED_MANIFEST,
        ),
        (b"not even json", DOCKER_SCHEMA1_SIGNED_MANIFEST, DOCKER_SCHEMA1_SIGNED_MANIFEST),
        (SCHEMA1_BODY, "", DOCKER_SCHEMA1_MANIFEST),
        (SIGNED_SCHEMA1_BODY, "application/json", DOCKER_SCHEMA1_SIGNED_MANIFEST),
        (SIGNED_SCHEMA1_BODY, "text/plain", DOCKER_SCHEMA1_SIGNED_MANIFEST),
        (SCHEMA1_BODY, OCI_MANIFEST, DOCKER_SCHEMA1_MANIFEST),
        (b"{}", "text/plain", DOCKER_SCHEMA1_MANIFEST),
    ],
    ids=[
        "v1+json",
        "prettyjws",
        "prettyjws-params",
        "type-before-body",
        "body-no-type",
        "body-json",
        "body-text-plain",
        "body-despite-header",
        "text-plain-means-schema1",
    ],
)
def test_schema1_is_refused_as_deprecated(raw: bytes, content_type: str, media_type: str) -> None:
    with pytest.raises(UnsupportedMediaTypeError) as caught:
        parse_manifest(raw, content_type, WHAT)
    assert caught.value.media_type == media_type
    message = str(caught.value)
    assert message.startswith(f"{WHAT}: unsupported media type {media_type!r}")
    assert "schema1" in message
    assert "deprecated" in message
    assert "not supported" in message


@pytest.mark.parametrize(
    ("raw", "content_type", "media_type"),
    [
        (
            OCI_IMAGE.manifest,
            "application/vnd.oci.artifact.manifest.v1+json",
            "application/vnd.oci.artifact.manifest.v1+json",
        ),
        (b"<html></html>", "text/html; charset=utf-8", "text/html"),
        (
            edited(OCI_IMAGE.manifest, setting("mediaType", "application/vnd.example+json")),
            "",
            "application/vnd.example+json",
        ),
        (
            edited(OCI_IMAGE.manifest, setting("mediaType", "application/vnd.example+json")),
            "application/json",
            "application/vnd.example+json",
        ),
    ],
    ids=["artifact-header", "html-header", "body-type-no-header", "body-type-json-header"],
)
def test_unknown_types_are_unsupported(raw: bytes, content_type: str, media_type: str) -> None:
    with pytest.raises(UnsupportedMediaTypeError) as caught:
        parse_manifest(raw, content_type, WHAT)
    assert caught.value.media_type == media_type
    assert "schema1" not in str(caught.value)


@pytest.mark.parametrize("content_type", ["", "application/json", "application/octet-stream"])
def test_generic_type_and_shapeless_body_cannot_be_told(content_type: str) -> None:
    raw = json.dumps({"schemaVersion": 2}).encode()
    with pytest.raises(ContentError, match="cannot tell the manifest type") as caught:
        parse_manifest(raw, content_type, WHAT)
    assert not isinstance(caught.value, UnsupportedMediaTypeError)


# --- content that is not usable ------------------------------------------------------------------


def _set_config_digest(value: object) -> Callable[[dict[str, Any]], object]:
    return lambda body: body["config"].__setitem__("digest", value)


def _set_layer(key: str, value: object) -> Callable[[dict[str, Any]], object]:
    return lambda body: body["layers"][0].__setitem__(key, value)


def _drop_layer_key(key: str) -> Callable[[dict[str, Any]], object]:
    return lambda body: body["layers"][0].pop(key)


BAD_DIGESTS = [
    f"sha256:{HEX.upper()}",
    "sha256:../../../etc/passwd",
    f"sha256:{HEX}/../x",
    f"sha512:{'a' * 128}",
    f"SHA256:{HEX}",
    f"sha256:{HEX[:-1]}",
    HEX,
    "",
    None,
    42,
]


@pytest.mark.parametrize("digest", BAD_DIGESTS)
@pytest.mark.parametrize("where", ["config", "layer"])
def test_bad_descriptor_digests_are_content_errors(digest: object, where: str) -> None:
    change = _set_config_digest(digest) if where == "config" else _set_layer("digest", digest)
    raw = edited(OCI_IMAGE.manifest, change)
    with pytest.raises(ContentError, match=f"^{WHAT}: .*digest") as caught:
        parse_manifest(raw, OCI_MANIFEST, WHAT)
    assert not isinstance(caught.value, InvalidReferenceError)


@pytest.mark.parametrize("digest", BAD_DIGESTS[:4])
def test_bad_index_entry_digest_is_a_content_error(digest: str) -> None:
    raw = edited(
        OCI_IMAGE_INDEX.manifest, lambda body: body["manifests"][1].__setitem__("digest", digest)
    )
    with pytest.raises(ContentError, match=r"manifests\[1\]\.digest"):
        parse_manifest(raw, OCI_INDEX, WHAT)


@pytest.mark.parametrize("size", [-1, 1.5, "12", True, None, [1], 2**53 + 1, 10**399])
def test_size_must_be_an_integer_a_registry_can_hold(size: object) -> None:
    raw = edited(OCI_IMAGE.manifest, _set_layer("size", size))
    with pytest.raises(
        ContentError, match=r"layers\[0\]\.size must be an integer from 0 to 2\*\*53"
    ):
        parse_manifest(raw, OCI_MANIFEST, WHAT)


def test_a_huge_size_is_not_repeated_in_the_error() -> None:
    raw = edited(OCI_IMAGE.manifest, _set_layer("size", 10**399))
    with pytest.raises(ContentError, match="a 400-character number") as caught:
        parse_manifest(raw, OCI_MANIFEST, WHAT)
    assert "0000000000" not in str(caught.value)


def test_the_largest_size_a_registry_can_hold_is_allowed() -> None:
    parsed = parse_manifest(
        edited(OCI_IMAGE.manifest, _set_layer("size", 2**53)), OCI_MANIFEST, WHAT
    )
    assert isinstance(parsed, ImageManifest)
    assert parsed.layers[0].size == 2**53


def test_zero_size_is_allowed() -> None:
    parsed = parse_manifest(edited(OCI_IMAGE.manifest, _set_layer("size", 0)), OCI_MANIFEST, WHAT)
    assert isinstance(parsed, ImageManifest)
    assert parsed.layers[0].size == 0


@pytest.mark.parametrize(
    ("raw", "content_type", "message"),
    [
        (b"{not json", OCI_MANIFEST, "not valid JSON"),
        (b"\xff\xfe\x00garbage", OCI_MANIFEST, "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "", "not valid JSON"),
        (b"[]", OCI_MANIFEST, "expected a JSON object, got list"),
        (b"null", OCI_INDEX, "expected a JSON object, got NoneType"),
        (edited(OCI_IMAGE.manifest, without("config")), OCI_MANIFEST, "config is missing"),
        (
            edited(OCI_IMAGE.manifest, setting("config", [])),
            OCI_MANIFEST,
            "config is not an object",
        ),
        (edited(OCI_IMAGE.manifest, without("layers")), OCI_MANIFEST, "layers is missing"),
        (edited(OCI_IMAGE.manifest, setting("layers", {})), OCI_MANIFEST, "layers is not a list"),
        (
            edited(OCI_IMAGE.manifest, setting("layers", [7])),
            OCI_MANIFEST,
            r"layers\[0\] is not an object",
        ),
        (
            edited(OCI_IMAGE.manifest, _drop_layer_key("mediaType")),
            OCI_MANIFEST,
            r"layers\[0\]\.mediaType is missing",
        ),
        (
            edited(OCI_IMAGE.manifest, _set_layer("urls", "http://x")),
            OCI_MANIFEST,
            r"layers\[0\]\.urls must be a list of strings",
        ),
        (
            edited(OCI_IMAGE.manifest, _set_layer("annotations", {"a": 1})),
            OCI_MANIFEST,
            r"layers\[0\]\.annotations must map strings to strings",
        ),
        (
            edited(OCI_IMAGE.manifest, setting("mediaType", 5)),
            "",
            "mediaType is not a string",
        ),
        (edited(OCI_IMAGE_INDEX.manifest, without("manifests")), OCI_INDEX, "manifests is missing"),
        (
            edited(
                OCI_IMAGE_INDEX.manifest,
                lambda body: body["manifests"][0]["platform"].pop("architecture"),
            ),
            OCI_INDEX,
            r"manifests\[0\]\.platform\.architecture is missing",
        ),
        (
            edited(
                OCI_IMAGE_INDEX.manifest,
                lambda body: body["manifests"][0].__setitem__("platform", "linux/amd64"),
            ),
            OCI_INDEX,
            r"manifests\[0\]\.platform is not an object",
        ),
        (
            edited(
                OCI_IMAGE_INDEX.manifest,
                lambda body: body["manifests"][0]["platform"].__setitem__("os", "linux\x1b[2J"),
            ),
            OCI_INDEX,
            r"manifests\[0\]\.platform\.os is not a printable string",
        ),
        (
            edited(OCI_IMAGE_INDEX.manifest, setting("layers", [])),
            OCI_INDEX,
            "must not have 'layers'",
        ),
        (
            edited(OCI_IMAGE.manifest, setting("manifests", [])),
            OCI_MANIFEST,
            "must not have 'manifests'",
        ),
        (
            edited(OCI_IMAGE.manifest, setting("schemaVersion", 3)),
            OCI_MANIFEST,
            "schemaVersion must be 2, got 3",
        ),
        (
            edited(OCI_IMAGE.manifest, setting("schemaVersion", "2")),
            OCI_MANIFEST,
            "schemaVersion must be 2, got '2'",
        ),
        (
            edited(OCI_IMAGE.manifest, setting("schemaVersion", True)),
            OCI_MANIFEST,
            "schemaVersion must be 2, got True",
        ),
        (
            edited(OCI_IMAGE.manifest, setting("schemaVersion", 1.0)),
            OCI_MANIFEST,
            "schemaVersion must be 2, got 1.0",
        ),
    ],
)
def test_unusable_content_is_a_content_error_naming_the_image(
    raw: bytes, content_type: str, message: str
) -> None:
    with pytest.raises(ContentError, match=f"^{WHAT}: .*{message}") as caught:
        parse_manifest(raw, content_type, WHAT)
    assert not isinstance(caught.value, UnsupportedMediaTypeError)


def test_oversized_manifest_is_refused_before_parsing() -> None:
    raw = b" " * MAX_MANIFEST_BYTES + OCI_IMAGE.manifest
    with pytest.raises(ContentError, match="more than the 4194304-byte limit"):
        parse_manifest(raw, OCI_MANIFEST, WHAT)


# --- kept as given -------------------------------------------------------------------------------


def test_unknown_index_entry_types_are_kept_for_later_skipping() -> None:
    helm_type = "application/vnd.cncf.helm.config.v1+json"
    helm = {
        "mediaType": helm_type,
        "digest": f"sha256:{HEX}",
        "size": 3,
    }
    raw = edited(OCI_IMAGE_INDEX.manifest, lambda body: body["manifests"].append(helm))
    parsed = parse_manifest(raw, OCI_INDEX, WHAT)
    assert isinstance(parsed, ImageIndex)
    assert parsed.manifests[-1] == Descriptor(helm_type, Digest(HEX), 3)


def test_layer_types_urls_and_annotations_are_kept_as_given() -> None:
    foreign = {
        "mediaType": DOCKER_FOREIGN_LAYER_GZIP,
        "digest": f"sha256:{HEX}",
        "size": 9,
        "urls": ["https://mcr.microsoft.com/blob"],
        "annotations": {"z": "1", "a": "2"},
    }
    zstd = {"mediaType": OCI_LAYER_ZSTD, "digest": f"sha256:{OTHER_HEX}", "size": 5}
    raw = edited(OCI_IMAGE.manifest, setting("layers", [foreign, zstd]))
    parsed = parse_manifest(raw, OCI_MANIFEST, WHAT)
    assert isinstance(parsed, ImageManifest)
    assert [layer.media_type for layer in parsed.layers] == [
        DOCKER_FOREIGN_LAYER_GZIP,
        OCI_LAYER_ZSTD,
    ]
    assert parsed.layers[0].urls == ("https://mcr.microsoft.com/blob",)
    assert parsed.layers[0].annotations == (("z", "1"), ("a", "2"))
    assert [layer.to_json() for layer in parsed.layers] == [foreign, zstd]


def test_platform_is_kept_as_written_and_round_trips() -> None:
    raw = edited(
        OCI_IMAGE_INDEX.manifest,
        lambda body: body["manifests"][0].__setitem__(
            "platform", {"architecture": "aarch64", "os": "linux", "variant": "v8"}
        ),
    )
    parsed = parse_manifest(raw, OCI_INDEX, WHAT)
    assert isinstance(parsed, ImageIndex)
    first = parsed.manifests[0]
    assert first.platform == Platform("linux", "aarch64", "v8")
    assert first.to_json()["platform"] == {
        "architecture": "aarch64",
        "os": "linux",
        "variant": "v8",
    }


@pytest.mark.parametrize("index", [OCI_IMAGE_INDEX, DOCKER_LIST], ids=["oci", "docker"])
def test_descriptor_to_json_reproduces_index_entries(index: imagefactory.Index) -> None:
    parsed = parse_manifest(index.manifest, index.media_type, WHAT)
    assert isinstance(parsed, ImageIndex)
    assert [d.to_json() for d in parsed.manifests] == json.loads(index.manifest)["manifests"]


def test_artifacts_keep_subject_artifact_type_and_annotations() -> None:
    sbom = cosignfactory.make_oras_sbom(OCI_IMAGE)

    parsed = parse_manifest(sbom.manifest, OCI_MANIFEST, WHAT)

    assert isinstance(parsed, ImageManifest)
    assert parsed.artifact_type == "application/spdx+json"
    assert parsed.subject == Descriptor(
        OCI_MANIFEST, Digest.parse(OCI_IMAGE.digest), len(OCI_IMAGE.manifest)
    )
    assert parsed.annotations == (("org.opencontainers.image.created", "2024-01-01T00:00:00Z"),)
    assert parsed.config.media_type == "application/vnd.oci.empty.v1+json"


def test_an_index_can_be_an_artifact_with_a_subject() -> None:
    subject = {
        "mediaType": OCI_MANIFEST,
        "digest": OCI_IMAGE.digest,
        "size": len(OCI_IMAGE.manifest),
    }
    raw = edited(
        OCI_IMAGE_INDEX.manifest, lambda body: body.update(subject=subject, artifactType="x/y")
    )

    parsed = parse_manifest(raw, OCI_INDEX, WHAT)

    assert isinstance(parsed, ImageIndex)
    assert (parsed.artifact_type, parsed.subject, parsed.annotations) == (
        "x/y",
        Descriptor(OCI_MANIFEST, Digest.parse(OCI_IMAGE.digest), len(OCI_IMAGE.manifest)),
        (),
    )


def test_images_have_no_subject_or_artifact_type() -> None:
    parsed = parse_manifest(OCI_IMAGE.manifest, OCI_MANIFEST, WHAT)
    assert isinstance(parsed, ImageManifest)
    assert (parsed.artifact_type, parsed.subject, parsed.annotations) == ("", None, ())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (setting("subject", "sha256:" + HEX), "subject is not an object"),
        (setting("subject", {"mediaType": OCI_MANIFEST, "size": 1}), "subject.digest must be"),
        (setting("artifactType", 7), "artifactType is not a printable string"),
        (setting("annotations", {"a": 1}), "annotations must map strings to strings"),
    ],
    ids=["subject-string", "subject-without-digest", "artifact-type-number", "annotations"],
)
def test_bad_artifact_fields_are_content_errors(
    change: Callable[[dict[str, Any]], object], message: str
) -> None:
    with pytest.raises(ContentError, match=message):
        parse_manifest(edited(OCI_IMAGE.manifest, change), OCI_MANIFEST, WHAT)


def test_referrer_list_entries_keep_their_artifact_type() -> None:
    listed = {
        "mediaType": OCI_MANIFEST,
        "digest": f"sha256:{HEX}",
        "size": 9,
        "artifactType": "a/b",
    }
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [listed]}).encode()

    parsed = parse_manifest(raw, OCI_INDEX, WHAT)

    assert isinstance(parsed, ImageIndex)
    assert parsed.manifests[0].artifact_type == "a/b"
    assert parsed.manifests[0].to_json() == listed


def test_descriptor_to_json_omits_absent_optional_fields() -> None:
    descriptor = Descriptor(OCI_MANIFEST, Digest(HEX), 7)
    assert descriptor.to_json() == {"mediaType": OCI_MANIFEST, "digest": f"sha256:{HEX}", "size": 7}
    assert descriptor.annotation("anything") is None
    assert not descriptor.is_attestation


@pytest.mark.parametrize(
    ("descriptor", "expected"),
    [
        (entry("amd64"), False),
        (entry("unknown", os_name="unknown"), True),
        (entry("amd64", annotations={"vnd.docker.reference.type": "attestation-manifest"}), True),
        (entry("amd64", annotations={"org.opencontainers.image.ref.name": "1"}), False),
    ],
)
def test_is_attestation(descriptor: Descriptor, expected: bool) -> None:
    assert descriptor.is_attestation is expected


# --- choosing a platform -------------------------------------------------------------------------


def _index(*entries: Descriptor) -> ImageIndex:
    return ImageIndex(OCI_INDEX, entries)


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ("linux/amd64", IMAGES[0].digest),
        ("linux/arm64", IMAGES[1].digest),
        ("linux/arm64/v8", IMAGES[1].digest),
        ("linux/aarch64", IMAGES[1].digest),
        ("linux/arm", IMAGES[2].digest),
        ("linux/arm/v6", None),
        ("linux/amd64/v2", IMAGES[0].digest),
    ],
)
def test_choose_platform_from_a_real_index(wanted: str, expected: str | None) -> None:
    parsed = parse_manifest(OCI_IMAGE_INDEX.manifest, OCI_INDEX, WHAT)
    assert isinstance(parsed, ImageIndex)
    if expected is None:
        with pytest.raises(PlatformNotFoundError):
            choose_platform(parsed, Platform.parse(wanted), WHAT)
        return
    assert str(choose_platform(parsed, Platform.parse(wanted), WHAT).digest) == expected


@pytest.mark.parametrize(
    ("wanted", "entries", "chosen"),
    [
        ("linux/amd64", [entry("arm64"), entry("386", digest_hex=OTHER_HEX)], "386"),
        ("linux/amd64", [entry("386"), entry("amd64", digest_hex=OTHER_HEX)], "amd64"),
        (
            "linux/arm64",
            [entry("arm", "v5"), entry("arm", "v7", digest_hex=OTHER_HEX), entry("arm", "v6")],
            "arm/v7",
        ),
        (
            "linux/arm64",
            [entry("arm", "v7"), entry("arm64", "v8", digest_hex=OTHER_HEX)],
            "arm64/v8",
        ),
        ("linux/arm/v7", [entry("arm", "v8"), entry("arm", "v6", digest_hex=OTHER_HEX)], "arm/v6"),
        (
            "linux/amd64/v2",
            [entry("386"), entry("amd64", "v3"), entry("amd64", digest_hex=OTHER_HEX)],
            "amd64",
        ),
    ],
)
def test_choose_platform_takes_the_best_fallback(
    wanted: str, entries: list[Descriptor], chosen: str
) -> None:
    picked = choose_platform(_index(*entries), Platform.parse(wanted), WHAT)
    assert picked.platform is not None
    assert str(picked.platform).removeprefix("linux/") == chosen
    assert picked.digest == Digest(OTHER_HEX)


def test_choose_platform_takes_the_first_of_equal_matches() -> None:
    first = entry("arm64", "v8", digest_hex=OTHER_HEX)
    second = entry("aarch64")
    assert choose_platform(_index(first, second), Platform.parse("linux/arm64"), WHAT) is first


@pytest.mark.parametrize(
    "skipped",
    [
        entry("amd64", annotations={"vnd.docker.reference.type": "attestation-manifest"}),
        entry("amd64", media_type="application/vnd.example.unknown+json"),
        entry("amd64", media_type=OCI_INDEX),
        entry("amd64", media_type=DOCKER_SCHEMA1_SIGNED_MANIFEST),
        Descriptor(OCI_MANIFEST, Digest(HEX), 100),
    ],
    ids=["attestation", "unknown-type", "nested-index", "schema1", "no-platform"],
)
def test_choose_platform_skips_entries_that_are_not_pullable_images(skipped: Descriptor) -> None:
    fallback = entry("386", digest_hex=OTHER_HEX)
    assert choose_platform(_index(skipped, fallback), DEFAULT_PLATFORM, WHAT) is fallback


def test_platform_not_found_lists_the_real_platforms() -> None:
    index = _index(
        entry("s390x"),
        entry("arm64", "v8"),
        entry("aarch64"),
        entry("arm"),
        entry("unknown", os_name="unknown"),
        entry("ppc64le", annotations={"vnd.docker.reference.type": "attestation-manifest"}),
        entry("riscv64", media_type="application/vnd.example.unknown+json"),
    )
    with pytest.raises(PlatformNotFoundError) as caught:
        choose_platform(index, DEFAULT_PLATFORM, WHAT)
    assert caught.value.wanted == "linux/amd64"
    assert caught.value.available == ("linux/arm/v7", "linux/arm64", "linux/s390x")
    assert str(caught.value) == (
        f"{WHAT}: no manifest for platform linux/amd64; "
        "available: linux/arm/v7, linux/arm64, linux/s390x"
    )


def test_platform_not_found_in_an_attestation_only_index_says_none() -> None:
    index = _index(entry("unknown", os_name="unknown"))
    with pytest.raises(PlatformNotFoundError, match=r"available: none$"):
        choose_platform(index, DEFAULT_PLATFORM, WHAT)


# --- configs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("os_name", "arch", "variant"), [*PLATFORMS, ("windows", "amd64", "")])
def test_parse_config_reads_platform_and_diff_ids(os_name: str, arch: str, variant: str) -> None:
    image = imagefactory.make_image(
        [LAYER, imagefactory.make_layer({"b": b"2"})], os_name=os_name, arch=arch, variant=variant
    )
    config = parse_config(image.config, WHAT)
    assert config == ImageConfig(
        os_name, arch, variant, tuple(layer.diff_id for layer in image.layers)
    )
    assert config.platform == Platform(os_name, arch, variant)


def test_parse_config_allows_missing_platform_fields() -> None:
    raw = json.dumps({"rootfs": {"type": "layers", "diff_ids": []}}).encode()
    assert parse_config(raw, WHAT) == ImageConfig("", "", "", ())


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "not valid JSON"),
        (b"[1]", "expected a JSON object"),
        (edited(OCI_IMAGE.config, without("rootfs")), "rootfs is missing"),
        (edited(OCI_IMAGE.config, setting("rootfs", [])), "rootfs is not an object"),
        (
            edited(OCI_IMAGE.config, lambda body: body["rootfs"].pop("diff_ids")),
            "rootfs.diff_ids is missing",
        ),
        (
            edited(OCI_IMAGE.config, lambda body: body["rootfs"].__setitem__("diff_ids", "x")),
            "rootfs.diff_ids is not a list",
        ),
        (
            edited(OCI_IMAGE.config, lambda body: body["rootfs"].__setitem__("diff_ids", ["../x"])),
            r"rootfs\.diff_ids\[0\]",
        ),
        (
            edited(OCI_IMAGE.config, lambda body: body["rootfs"].__setitem__("diff_ids", [None])),
            r"rootfs\.diff_ids\[0\] must be a string",
        ),
        (edited(OCI_IMAGE.config, setting("os", None)), "os is not a printable string"),
        (
            edited(OCI_IMAGE.config, setting("architecture", 64)),
            "architecture is not a printable string",
        ),
        (
            edited(OCI_IMAGE.config, setting("variant", "v8\npulled  x")),
            "variant is not a printable string",
        ),
        (b" " * (4 * 1024 * 1024 + 1), "byte limit"),
    ],
)
def test_parse_config_refuses_what_docker_load_cannot_use(raw: bytes, message: str) -> None:
    with pytest.raises(ContentError, match=f"^{WHAT}: .*{message}"):
        parse_config(raw, WHAT)
