"""Signatures, SBOMs and attestations a copy (``bulkpull LIST --to``) finds at the source and
carries into the target with its images, and ``--verify-key`` refusing what is not signed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from support import cosignfactory as cf
from support.fakeregistry import Start
from support.fakesigned import (
    cosign_tag,
    listed,
    push_options,
    served,
    signed_image,
    tag_schema,
    target,
)

import bulkpull
from bulkpull import PullOptions, PushStatus, SignatureError


@pytest.mark.parametrize("api", [True, False])
async def test_a_copy_carries_the_referrers_it_finds_at_the_source(
    start: Start, options: PullOptions, tmp_path: Path, api: bool
) -> None:
    signed = await signed_image(start, api=api)
    uploads, host = await target(start, tmp_path, api=api)
    pulling = replace(options, cache_dir=tmp_path / "store")

    report = await bulkpull.copy_images(
        [signed.reference], f"{host}/mirror", pulling, push=push_options(tmp_path)
    )

    assert report.ok, [str(r.error) for r in report.failed]
    assert served(uploads, "v1") == signed.image.manifest
    assert served(uploads, cosign_tag(signed.image.digest, "sig")) == signed.signature.manifest
    assert served(uploads, cosign_tag(signed.image.digest, "att")) == signed.attestation.manifest
    assert served(uploads, signed.sbom.digest) == signed.sbom.manifest
    if api:
        assert served(uploads, tag_schema(signed)) is None
    else:
        assert [e["digest"] for e in listed(uploads, signed)] == [signed.sbom.digest]
    assert {str(r.digest) for r in report.results[0].referrers} == {
        r.digest for r in signed.referrers
    }


async def test_a_copy_with_a_key_copies_only_an_image_whose_signature_verifies(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed = await signed_image(start)
    uploads, host = await target(start, tmp_path, api=True)
    other = bulkpull.load_public_key(cf.ecdsa_key().public_pem, "other.pub")
    pulling = replace(options, cache_dir=tmp_path / "store", verify_key=other)

    report = await bulkpull.copy_images(
        [signed.reference], f"{host}/mirror", pulling, push=push_options(tmp_path)
    )

    (result,) = report.failed
    assert isinstance(result.error, SignatureError)
    assert "signature does not verify with the ECDSA P-256 key" in str(result.error)
    assert served(uploads, "v1") is None
    assert uploads.pushed_manifests == []


async def test_a_copy_dry_run_says_which_referrers_the_target_lacks_and_writes_nothing(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed = await signed_image(start)
    uploads, host = await target(start, tmp_path, api=True)
    pulling = replace(options, cache_dir=tmp_path / "store")

    report = await bulkpull.copy_images(
        [signed.reference], f"{host}/mirror", pulling, push=push_options(tmp_path), dry_run=True
    )

    (result,) = report.results
    assert result.status is PushStatus.MISSING
    assert {str(r.digest): r.status for r in result.referrers} == {
        r.digest: PushStatus.MISSING for r in signed.referrers
    }
    assert report.bytes_missing > result.missing > 0
    assert uploads.pushed_manifests == []
    assert not [s for s in uploads.registry.seen if s.method in ("POST", "PATCH", "PUT")]
