"""The registry client on its own: manifests resolved and verified, blobs opened where they start,
foreign layers fetched from their URLs; against the in-process registry."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from support import imagefactory as f
from support.fakeregistry import FakeCDN, FakeRegistry, Faults, Start

from bulkpull import (
    ContentError,
    Descriptor,
    Digest,
    DigestMismatchError,
    NotFoundError,
    Platform,
    PlatformNotFoundError,
    RetryPolicy,
    TransportError,
    parse_reference,
)
from bulkpull.registry import KnownManifests, RegistryClient, SecurityPolicy, Transport

FOREIGN_TYPE = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
AMD64, ARM64 = Platform("linux", "amd64"), Platform("linux", "arm64")


@asynccontextmanager
async def client(known: KnownManifests | None = None) -> AsyncIterator[RegistryClient]:
    transport = Transport(retry=RetryPolicy(retries=0), security=SecurityPolicy(plain_http=True))
    async with transport:
        yield RegistryClient(transport, known)


def blob_of(layer: f.Layer, urls: tuple[str, ...] = ()) -> Descriptor:
    media_type = FOREIGN_TYPE if urls else f.DOCKER_LAYER_GZIP
    return Descriptor(media_type, Digest.parse(layer.digest), len(layer.compressed), urls=urls)


async def read_blob(registry: RegistryClient, reference: str, blob: Descriptor) -> bytes:
    async with registry.open_blob(parse_reference(reference), blob) as (start, chunks):
        assert start == 0
        return b"".join([chunk async for chunk in chunks])


async def test_a_tag_resolves_to_the_manifest_it_names_verified(start: Start) -> None:
    registry = FakeRegistry()
    image = f.make_image([f.random_layer(100)])
    registry.add("x/y", "1", image)
    host = await start(registry.app())

    async with client() as pulling:
        [resolved] = await pulling.resolve(parse_reference(f"{host}/x/y:1"), [AMD64])

    assert resolved.manifest.raw == image.manifest
    assert str(resolved.manifest.digest) == image.digest
    assert resolved.index is None
    assert [str(blob.digest) for blob in resolved.blobs] == [image.config_digest] + [
        layer.digest for layer in image.layers
    ]


async def test_an_index_resolves_to_one_manifest_per_platform_fetched_by_digest(
    start: Start,
) -> None:
    registry = FakeRegistry()
    images = [f.make_image([f.random_layer(100)], arch=arch) for arch in ("amd64", "arm64")]
    index = f.make_index(images)
    registry.add("x/y", "1", index)
    host = await start(registry.app())

    async with client() as pulling:
        resolved = await pulling.resolve(parse_reference(f"{host}/x/y:1"), [ARM64, AMD64])

    assert [item.manifest.raw for item in resolved] == [images[1].manifest, images[0].manifest]
    assert all(item.index is not None and item.index.raw == index.manifest for item in resolved)
    assert registry.count("GET", "/manifests/1") == 1
    assert registry.count("GET", f"/manifests/{images[1].digest}") == 1


async def test_a_platform_the_index_lacks_is_named_with_what_it_has(start: Start) -> None:
    registry = FakeRegistry()
    registry.add("x/y", "1", f.make_index([f.make_image([f.random_layer(100)])]))
    host = await start(registry.app())

    async with client() as pulling:
        with pytest.raises(PlatformNotFoundError, match="linux/amd64"):
            await pulling.resolve(parse_reference(f"{host}/x/y:1"), [Platform("linux", "s390x")])


async def test_a_manifest_that_differs_from_its_digest_header_is_refused_naming_its_tag(
    start: Start,
) -> None:
    registry = FakeRegistry()
    registry.add("x/y", "1", f.make_image([f.random_layer(100)]))
    registry.content_digest_override = "sha256:" + "0" * 64
    host = await start(registry.app())

    async with client() as pulling:
        with pytest.raises(DigestMismatchError) as caught:
            await pulling.resolve(parse_reference(f"{host}/x/y:1"), [AMD64])

    assert str(caught.value).startswith(f"manifest {host}/x/y:1 (Docker-Content-Digest): ")


async def test_a_known_manifest_is_read_from_disk_after_a_head(start: Start) -> None:
    registry = FakeRegistry()
    image = f.make_image([f.random_layer(100)])
    registry.add("x/y", "1", image)
    host = await start(registry.app())
    asked: list[Digest] = []

    async def known(digest: Digest) -> bytes | None:
        asked.append(digest)
        return image.manifest if str(digest) == image.digest else None

    async with client(known) as pulling:
        [resolved] = await pulling.resolve(parse_reference(f"{host}/x/y:1"), [AMD64])

    assert resolved.manifest.raw == image.manifest
    assert [str(digest) for digest in asked] == [image.digest]
    assert registry.count("HEAD", "/manifests/1") == 1
    assert registry.count("GET", "/manifests/1") == 0


async def test_a_blob_opened_past_its_start_begins_where_the_registry_says(start: Start) -> None:
    registry = FakeRegistry()
    layer = f.random_layer(1000)
    registry.add("x/y", "1", f.make_image([layer]))
    host = await start(registry.app())

    async with (
        client() as pulling,
        pulling.open_blob(parse_reference(f"{host}/x/y:1"), blob_of(layer), 100) as (at, chunks),
    ):
        body = b"".join([chunk async for chunk in chunks])

    assert (at, body) == (100, layer.compressed[100:])


async def test_a_blob_whose_range_is_ignored_begins_at_zero(start: Start) -> None:
    registry = FakeRegistry()
    layer = f.random_layer(1000)
    registry.add("x/y", "1", f.make_image([layer]))
    registry.faults[layer.digest] = Faults(ignore_range=True)
    host = await start(registry.app())

    async with (
        client() as pulling,
        pulling.open_blob(parse_reference(f"{host}/x/y:1"), blob_of(layer), 100) as (at, chunks),
    ):
        body = b"".join([chunk async for chunk in chunks])

    assert (at, body) == (0, layer.compressed)


async def foreign_layer_setup(
    start: Start, layer: f.Layer, faults: Faults | None = None
) -> tuple[str, FakeCDN, str]:
    """A registry without ``layer``, and a CDN that serves it; returns the reference, the CDN
    and the layer's URL there."""
    registry, elsewhere = FakeRegistry(), FakeRegistry()
    registry.add("x/y", "1", f.make_image([f.random_layer(100)]))
    elsewhere.blobs[layer.digest] = layer.compressed
    if faults is not None:
        elsewhere.faults[layer.digest] = faults
    cdn = FakeCDN(elsewhere)
    cdn_host, host = await start(cdn.app()), await start(registry.app())
    return f"{host}/x/y:1", cdn, f"http://{cdn_host}/cdn/{layer.digest}"


async def test_a_foreign_layer_comes_from_the_first_of_its_urls_that_answers(
    start: Start,
) -> None:
    layer = f.random_layer(1000)
    reference, cdn, url = await foreign_layer_setup(start, layer)
    missing = absent_blob_url(reference)

    async with client() as pulling:
        body = await read_blob(pulling, reference, blob_of(layer, (missing, url)))

    assert body == layer.compressed
    assert [seen.path for seen in cdn.seen] == [f"/cdn/{layer.digest}"]


def absent_blob_url(reference: str) -> str:
    """A URL on the registry of ``reference`` that answers 404."""
    return f"http://{reference.split('/')[0]}/v2/x/y/blobs/sha256:{'2' * 64}"


async def test_a_foreign_layer_no_url_serves_is_the_registrys_404_with_what_each_said(
    start: Start,
) -> None:
    layer = f.random_layer(1000)
    reference, _, _ = await foreign_layer_setup(start, layer)
    gone = absent_blob_url(reference)

    async with client() as pulling:
        with pytest.raises(NotFoundError) as caught:
            await read_blob(pulling, reference, blob_of(layer, (gone, "file:///etc/passwd")))

    error = caught.value
    assert error.status == 404
    assert error.url.endswith(f"/v2/x/y/blobs/{layer.digest}")
    assert error.codes == {"BLOB_UNKNOWN"}
    assert f"its urls failed too: GET {gone}: 404" in str(error)
    assert "only http(s) URLs are fetched" in str(error)


async def test_a_foreign_layer_body_that_breaks_off_is_a_transport_error(start: Start) -> None:
    layer = f.random_layer(100_000)
    reference, _, url = await foreign_layer_setup(start, layer, Faults(reset_after=10_000))

    async with client() as pulling:
        with pytest.raises(TransportError):
            await read_blob(pulling, reference, blob_of(layer, (url,)))


async def test_an_index_entry_that_is_itself_an_index_is_refused(start: Start) -> None:
    registry = FakeRegistry()
    inner = f.make_index([f.make_image([f.random_layer(100)])])
    outer = json.loads(f.make_index([f.make_image([f.random_layer(100)])]).manifest)
    outer["manifests"][0].update(
        digest=inner.digest, size=len(inner.manifest), mediaType=inner.media_type
    )
    raw = json.dumps(outer).encode()
    registry.put_manifest("x/y", "1", raw, inner.media_type)
    registry.put_manifest("x/y", inner.digest, inner.manifest, inner.media_type)
    host = await start(registry.app())

    async with client() as pulling:
        with pytest.raises(ContentError, match="is itself an index"):
            await pulling.resolve(parse_reference(f"{host}/x/y:1"), [AMD64], every=True)
