"""The fault table of the upload path: what a hostile registry does to a push, and what bulkpull
makes of it.

Each row injects one fault into the fake registry's uploads and asserts the outcome (pushed
with the source's digest, or the exact error) and the bytes the registry received, against the
bytes of the image's blobs: a fault that is waited out or resumed costs nothing more; an
upload the registry dropped costs what it had been sent.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import imagefactory as f
from support.fakeregistry import FakeRegistry, Start
from support.fakeupload import FakeUploads, UploadFaults

import bulkpull
from bulkpull import DigestMismatchError, PushOptions, PushStatus, RetryPolicy

CHUNK = 128 * 1024
SHARED = f.random_layer(400_000)
FIRST = f.make_image([SHARED], label="first")
SECOND = f.make_image([SHARED], label="second")
LAYER = len(SHARED.compressed)
TOTAL = sum(len(blob) for blob in {**FIRST.blobs, **SECOND.blobs}.values())


@dataclass(frozen=True)
class Row:
    faults: UploadFaults
    extra: int = 0  # bytes received beyond one copy of every blob
    error: type[Exception] | None = None  # what the first image fails with
    message: str = ""


ROWS = {
    "503 on POST is retried": Row(UploadFaults(statuses={"POST": [503]})),
    "503 on PATCH is retried where the upload stands": Row(UploadFaults(statuses={"PATCH": [503]})),
    "503 on PUT is retried": Row(UploadFaults(statuses={"PUT": [503]})),
    "503 on a manifest PUT is retried": Row(UploadFaults(statuses={"PUT manifest": [503]})),
    "429 with Retry-After on POST waits": Row(
        UploadFaults(statuses={"POST": [429]}, retry_after="1")
    ),
    "429 with Retry-After on PATCH waits": Row(
        UploadFaults(statuses={"PATCH": [429]}, retry_after="1")
    ),
    "429 with Retry-After on PUT waits": Row(
        UploadFaults(statuses={"PUT": [429]}, retry_after="1")
    ),
    "a reset mid-PATCH resumes from what the registry holds": Row(
        UploadFaults(reset_patch_after=50_000)
    ),
    "an upload that vanishes starts over": Row(UploadFaults(vanish_after_patches=1), extra=CHUNK),
    "a wrong Docker-Content-Digest once is uploaded again": Row(
        UploadFaults(wrong_blob_digest={SHARED.digest: 1}), extra=LAYER
    ),
    # The second image, in another repository, then uploads the layer on its own.
    "a wrong Docker-Content-Digest twice fails the image": Row(
        UploadFaults(wrong_blob_digest={SHARED.digest: 2}),
        extra=2 * LAYER,
        error=DigestMismatchError,
        message=f"expected {SHARED.digest}, got sha256:0000",
    ),
    "a wrong manifest digest fails the image": Row(
        UploadFaults(wrong_manifest_digest=1),
        error=DigestMismatchError,
        message="(Docker-Content-Digest): digest mismatch",
    ),
    "a declined mount is uploaded instead": Row(UploadFaults(decline_mounts=True), extra=LAYER),
    "persistent 503 on PATCH gives up after the retries": Row(
        UploadFaults(statuses={"PATCH": [503] * 3}),
        error=bulkpull.RegistryError,
        message="503 UNAVAILABLE: injected 503",
    ),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
async def test_upload_fault(start: Start, tmp_path: Path, row: Row) -> None:
    uploads = FakeUploads(FakeRegistry(), tmp_path / "registry")
    uploads.faults = dataclasses.replace(row.faults, statuses=dict(row.faults.statuses))
    host = await start(uploads.app())
    source = tmp_path / "layout"
    f.write_oci_layout(source, {"docker.io/team/first:1": FIRST, "docker.io/team/second:1": SECOND})
    options = PushOptions(
        plain_http=True,
        retry=RetryPolicy(retries=2, delay=0.0),
        state_dir=tmp_path / "state",
        chunk_size=CHUNK,
        jobs=1,
    )

    report = await bulkpull.push_images([source], host, options)

    first, second = report.results
    if row.error is None:
        assert first.status is PushStatus.PUSHED, first.error
    else:
        assert isinstance(first.error, row.error)
        assert row.message in str(first.error)
    assert second.status is PushStatus.PUSHED, second.error
    for result, image in zip(report.results, (FIRST, SECOND), strict=True):
        if result.ok:
            repository = result.spec.target.path
            assert uploads.registry.manifests[(repository, "1")][0] == image.manifest
    assert uploads.received == TOTAL + row.extra
    assert report.bytes_sent >= uploads.received


async def test_a_blob_damaged_in_the_source_fails_naming_it_and_is_not_sent_again(
    start: Start, tmp_path: Path
) -> None:
    uploads = FakeUploads(FakeRegistry(), tmp_path / "registry")
    host = await start(uploads.app())
    source = tmp_path / "layout"
    f.write_oci_layout(source, {"docker.io/team/first:1": FIRST})
    damaged = source / "blobs" / "sha256" / SHARED.digest.removeprefix("sha256:")
    flipped = bytearray(damaged.read_bytes())
    flipped[1000] ^= 1
    damaged.write_bytes(bytes(flipped))
    options = PushOptions(
        plain_http=True, retry=RetryPolicy(retries=2, delay=0.0), state_dir=tmp_path / "state"
    )

    report = await bulkpull.push_images([source], host, options)

    [result] = report.results
    assert isinstance(result.error, DigestMismatchError)
    assert str(result.error).startswith(f"blob {SHARED.digest} as read from {damaged}: ")
    assert f"got {f.sha256(bytes(flipped))}" in str(result.error)
    assert uploads.received <= LAYER + len(FIRST.config)  # the damaged layer went once
