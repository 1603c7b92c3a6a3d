"""Signatures, SBOMs and attestations pushed with their images into the fake registry from a
bundle (and, for index referrers, by a copy too): cosign's tags recreated, OCI referrers listed
by a target with the Referrers API (``OCI-Subject``) or in a tag-schema index bulkpull merges
into, with the source's digests throughout."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from support import cosignfactory as cf
from support import imagefactory as f
from support.commandline import run_cli
from support.fakeregistry import FakeRegistry, Start
from support.fakesigned import (
    REPO,
    TARGET_REPO,
    cosign_tag,
    listed,
    push_options,
    served,
    signed_trip,
    tag_schema,
    target,
)

import bulkpull
from bulkpull import (
    Destination,
    PullOptions,
    PushReport,
    PushStatus,
    ReferrerListing,
)


async def push(
    bundle: Path, host: str, tmp_path: Path, *, dry_run: bool = False, **fields: object
) -> PushReport:
    options = push_options(tmp_path, **fields)
    return await bulkpull.push_images([bundle], f"{host}/mirror", options, dry_run=dry_run)


@pytest.mark.parametrize(("api", "layout"), [(True, False), (False, False), (False, True)])
async def test_cosign_tags_and_the_sbom_arrive_with_the_source_digests(
    start: Start, options: PullOptions, tmp_path: Path, api: bool, layout: bool
) -> None:
    signed, bundle, uploads, host = await signed_trip(
        start, options, tmp_path, api=api, layout=layout
    )

    report = await push(bundle, host, tmp_path)

    assert report.ok, [str(r.error) for r in report.failed]
    assert served(uploads, cosign_tag(signed.image.digest, "sig")) == signed.signature.manifest
    assert served(uploads, cosign_tag(signed.image.digest, "att")) == signed.attestation.manifest
    assert served(uploads, signed.sbom.digest) == signed.sbom.manifest
    for referrer in signed.referrers:
        for digest in referrer.blobs:
            assert uploads.holds(TARGET_REPO, digest), digest
    (result,) = report.results
    pushed = {str(r.digest): r for r in result.referrers}
    assert set(pushed) == {r.digest for r in signed.referrers}
    assert pushed[signed.signature.digest].type == cf.SIMPLE_SIGNING
    assert pushed[signed.sbom.digest].type == cf.SPDX_JSON
    listing = ReferrerListing.REFERRERS_API if api else ReferrerListing.TAG_SCHEMA
    assert pushed[signed.sbom.digest].listed is listing


async def test_a_target_with_the_referrers_api_gets_no_tag_schema_index(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed, bundle, uploads, host = await signed_trip(start, options, tmp_path, api=True)

    report = await push(bundle, host, tmp_path)

    assert report.ok, [str(r.error) for r in report.failed]
    assert served(uploads, signed.sbom.digest) == signed.sbom.manifest
    assert served(uploads, tag_schema(signed)) is None
    assert not [s for s in uploads.registry.seen if s.path.endswith(f"/{tag_schema(signed)}")]


async def test_without_the_api_the_sbom_is_listed_in_a_tag_schema_index(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed, bundle, uploads, host = await signed_trip(start, options, tmp_path, api=False)

    assert (await push(bundle, host, tmp_path)).ok

    (entry,) = listed(uploads, signed)
    assert entry["digest"] == signed.sbom.digest
    assert entry["artifactType"] == cf.SPDX_JSON
    assert entry["size"] == len(signed.sbom.manifest)
    media_type = uploads.registry.manifests[(TARGET_REPO, tag_schema(signed))][1]
    assert media_type == f.OCI_INDEX


async def test_a_tag_schema_index_keeps_what_others_listed_and_lists_nothing_twice(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed, bundle, uploads, host = await signed_trip(start, options, tmp_path, api=False)
    other = {
        "mediaType": f.OCI_MANIFEST,
        "digest": "sha256:" + "f" * 64,
        "size": 321,
        "artifactType": "application/vnd.example.scan+json",
    }
    index = {"schemaVersion": 2, "mediaType": f.OCI_INDEX, "manifests": [other]}
    uploads.registry.put_manifest(
        TARGET_REPO, tag_schema(signed), json.dumps(index).encode(), f.OCI_INDEX
    )

    assert (await push(bundle, host, tmp_path)).ok
    assert (await push(bundle, host, tmp_path)).ok

    entries = listed(uploads, signed)
    assert [e["digest"] for e in entries] == sorted([signed.sbom.digest, str(other["digest"])])
    assert other in entries


async def test_a_tag_that_holds_an_image_is_not_overwritten_and_the_image_fails(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed, bundle, uploads, host = await signed_trip(start, options, tmp_path, api=False)
    squatter = f.make_image([f.random_layer(100)], label="squatter")
    uploads.registry.put_manifest(
        TARGET_REPO, tag_schema(signed), squatter.manifest, squatter.media_type
    )

    report = await push(bundle, host, tmp_path)

    (result,) = report.results
    assert result.status is PushStatus.FAILED
    assert "a referrers list must be an OCI index" in str(result.error)
    assert "left as it is" in str(result.error)
    assert served(uploads, tag_schema(signed)) == squatter.manifest
    assert served(uploads, "v1") == signed.image.manifest


async def test_each_referrer_is_pushed_after_its_image_is_tagged(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed, bundle, uploads, host = await signed_trip(start, options, tmp_path, api=False)

    assert (await push(bundle, host, tmp_path)).ok

    references = [ref for repo, ref, _ in uploads.pushed_manifests if repo == TARGET_REPO]
    tagged = references.index("v1")
    for referrer in (
        cosign_tag(signed.image.digest, "sig"),
        cosign_tag(signed.image.digest, "att"),
        signed.sbom.digest,
        tag_schema(signed),
    ):
        assert references.index(referrer) > tagged, references


@pytest.mark.parametrize("api", [True, False])
async def test_a_second_push_writes_nothing_and_says_the_referrers_were_there(
    start: Start, options: PullOptions, tmp_path: Path, api: bool
) -> None:
    signed, bundle, uploads, host = await signed_trip(start, options, tmp_path, api=api)
    assert (await push(bundle, host, tmp_path)).ok
    before = len(uploads.pushed_manifests)
    index = served(uploads, tag_schema(signed))

    again = await push(bundle, host, tmp_path)

    assert again.ok
    (result,) = again.results
    assert result.status is PushStatus.UP_TO_DATE
    assert {str(r.digest) for r in result.referrers if r.present} == {
        r.digest for r in signed.referrers
    }
    assert again.blobs.uploaded == 0
    assert uploads.pushed_manifests[before:] == []
    sbom = next(r for r in result.referrers if str(r.digest) == signed.sbom.digest)
    assert sbom.listed is (ReferrerListing.REFERRERS_API if api else ReferrerListing.TAG_SCHEMA)
    assert served(uploads, tag_schema(signed)) == index


async def test_a_newly_signed_image_already_in_the_target_gets_its_signature(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed, bundle, uploads, host = await signed_trip(start, options, tmp_path, api=True)
    assert (await push(bundle, host, tmp_path, referrers=False)).ok
    assert served(uploads, cosign_tag(signed.image.digest, "sig")) is None

    report = await push(bundle, host, tmp_path)

    (result,) = report.results
    assert result.status is PushStatus.UP_TO_DATE
    assert served(uploads, cosign_tag(signed.image.digest, "sig")) == signed.signature.manifest


async def test_no_referrers_and_referrers_type_choose_what_is_pushed(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed, bundle, uploads, host = await signed_trip(start, options, tmp_path, api=True)

    none = await push(bundle, host, tmp_path, referrers=False)
    assert none.ok
    assert [ref for repo, ref, _ in uploads.pushed_manifests if repo == TARGET_REPO] == ["v1"]
    assert none.results[0].referrers == ()

    only = await push(bundle, host, tmp_path, referrer_types=frozenset({cf.SIMPLE_SIGNING}))
    assert only.ok
    assert [str(r.digest) for r in only.results[0].referrers] == [signed.signature.digest]
    assert served(uploads, signed.sbom.digest) is None


async def test_a_dry_run_says_which_referrers_the_target_lacks_and_pushes_none(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed, bundle, uploads, host = await signed_trip(start, options, tmp_path, api=True)
    assert (await push(bundle, host, tmp_path, referrers=False)).ok

    report = await push(bundle, host, tmp_path, dry_run=True)

    (image,) = report.results
    assert image.status is PushStatus.UP_TO_DATE
    assert {r.status for r in image.referrers} == {PushStatus.MISSING}
    assert len(image.referrers) == 3
    assert all(r.missing for r in image.referrers)  # each carries a blob the target lacks
    assert served(uploads, cosign_tag(signed.image.digest, "sig")) is None
    assert (await push(bundle, host, tmp_path)).ok
    again = await push(bundle, host, tmp_path, dry_run=True)
    assert {r.status for r in again.results[0].referrers} == {PushStatus.UP_TO_DATE}


async def test_the_cli_dry_run_counts_the_referrers_missing_and_their_bytes(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    _, bundle, _, host = await signed_trip(start, options, tmp_path, api=False)
    assert (await push(bundle, host, tmp_path, referrers=False)).ok
    args = ["push", str(bundle), "--to", f"{host}/mirror", "--plain-http", "--dry-run"]
    report_file = tmp_path / "dry.json"

    code, out, err = await run_cli(*args, "--report", str(report_file))

    assert code == 0, err
    assert "3 referrers missing at the target with 1 image: " in out
    (image,) = json.loads(report_file.read_text())["images"]
    assert [r["status"] for r in image["referrers"]] == ["missing"] * 3
    missing = sum(r["bytes_missing"] for r in image["referrers"])
    assert missing > 0
    assert json.loads(report_file.read_text())["totals"]["bytes_missing"] == missing
    assert "of blobs missing" in out
    assert "dry run: 0 B of blobs missing" not in out


async def test_the_cli_pushes_referrers_says_so_and_reports_each(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed, bundle, _, host = await signed_trip(start, options, tmp_path, api=False)
    report_file = tmp_path / "push.json"
    args = ["push", str(bundle), "--to", f"{host}/mirror", "--plain-http"]
    args += ["--state-dir", str(tmp_path / "state"), "--report", str(report_file)]

    code, out, err = await run_cli(*args)

    assert code == 0, err
    assert (
        "3 referrers pushed with 1 image: 1 application/spdx+json, 1 attestation, 1 signature"
    ) in out
    (image,) = json.loads(report_file.read_text())["images"]
    records = {record["digest"]: record for record in image["referrers"]}
    assert records[signed.sbom.digest] == {
        "type": cf.SPDX_JSON,
        "digest": signed.sbom.digest,
        "size": len(signed.sbom.manifest) + sum(map(len, signed.sbom.blobs.values())),
        "subject": signed.image.digest,
        "tag": None,
        "listed": "referrers tag schema",
        "status": "pushed",
        "bytes_missing": 0,
    }
    assert records[signed.signature.digest]["tag"] == cosign_tag(signed.image.digest, "sig")
    assert records[signed.signature.digest]["listed"] is None
    again, out_again, _ = await run_cli(*args)
    assert again == 0
    assert "3 referrers already in the target" in out_again
    unsigned, out_unsigned, _ = await run_cli(*args, "--no-referrers")
    assert unsigned == 0
    assert "referrers pushed" not in out_unsigned
    assert "already in the target" not in out_unsigned


async def test_the_registry_is_checked_against_the_lock_with_the_signatures_it_holds(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed, bundle, _, host = await signed_trip(start, options, tmp_path, api=False)
    lock = tmp_path / "site.lock"
    lock.write_text(f"{signed.reference}@{signed.image.digest}\n")
    pushed = await push(bundle, host, tmp_path, referrers=False)
    assert pushed.ok
    verifying = push_options(tmp_path)
    right = bulkpull.load_public_key(signed.key.public_pem, "cosign.pub")
    other = bulkpull.load_public_key(cf.ecdsa_key().public_pem, "other.pub")

    unsigned = await bulkpull.verify_lock_in_registry(lock, f"{host}/mirror", verifying, key=right)
    assert (await push(bundle, host, tmp_path)).ok
    checked = await bulkpull.verify_lock_in_registry(lock, f"{host}/mirror", verifying, key=right)
    refused = await bulkpull.verify_lock_in_registry(lock, f"{host}/mirror", verifying, key=other)

    (problem,) = unsigned.problems
    assert "no signature found" in problem
    assert checked.ok, checked.problems
    (found,) = checked.found
    assert found.startswith(f"{host}/mirror/{REPO}:v1@{signed.image.digest} in {host}: ")
    (problem,) = refused.problems
    assert "signature does not verify with the ECDSA P-256 key" in problem


@pytest.mark.parametrize("how", ["push", "copy"])
async def test_an_index_referrer_arrives_after_its_manifests_and_a_signature_on_it_after_it(
    start: Start, options: PullOptions, tmp_path: Path, how: str
) -> None:
    source = FakeRegistry()
    source.referrers_api = False
    image = f.make_image([f.random_layer(5_000)], label="with-index-referrer")
    child = cf.make_signature(image.digest, cf.ecdsa_key())
    subject = {"mediaType": image.media_type, "digest": image.digest, "size": len(image.manifest)}
    entry = {"mediaType": child.media_type, "digest": child.digest, "size": len(child.manifest)}
    document = {"schemaVersion": 2, "mediaType": f.OCI_INDEX, "manifests": [entry]}
    document |= {"artifactType": "application/vnd.example.bundle", "subject": subject}
    referrer = json.dumps(document).encode()
    listing = {"mediaType": f.OCI_INDEX, "digest": f.sha256(referrer), "size": len(referrer)}
    listing["artifactType"] = "application/vnd.example.bundle"
    schema = {"schemaVersion": 2, "mediaType": f.OCI_INDEX, "manifests": [listing]}
    # A cosign signature of the index referrer: a referrer of a referrer.
    countersigned = cf.make_signature(f.sha256(referrer), cf.ecdsa_key())
    source.add(REPO, "v1", image)
    source.add(REPO, child.digest, child)
    source.put_manifest(REPO, f.sha256(referrer), referrer, f.OCI_INDEX)
    source.put_manifest(
        REPO, "sha256-" + image.digest[7:], json.dumps(schema).encode(), f.OCI_INDEX
    )
    source.add(REPO, cosign_tag(f.sha256(referrer), "sig"), countersigned)
    reference = f"{await start(source.app())}/{REPO}:v1"
    uploads, host = await target(start, tmp_path, api=False)

    if how == "push":
        to = Destination.bundle(tmp_path / "offline.tar")
        assert (await bulkpull.pull_images([reference], to, options)).ok
        report = await bulkpull.push_images([to.path], f"{host}/mirror", push_options(tmp_path))
    else:
        pulling = replace(options, cache_dir=tmp_path / "store")
        report = await bulkpull.copy_images(
            [reference], f"{host}/mirror", pulling, push=push_options(tmp_path)
        )

    assert report.ok, [str(r.error) for r in report.failed]
    references = [ref for repo, ref, _ in uploads.pushed_manifests if repo == TARGET_REPO]
    signature_tag = cosign_tag(f.sha256(referrer), "sig")
    assert references.index(child.digest) < references.index(f.sha256(referrer))
    assert references.index(f.sha256(referrer)) < references.index(signature_tag)
    assert served(uploads, f.sha256(referrer)) == referrer
    assert served(uploads, child.digest) == child.manifest
    assert served(uploads, signature_tag) == countersigned.manifest
    for digest in child.blobs:
        assert uploads.holds(TARGET_REPO, digest)
    indexed = uploads.registry.manifests[(TARGET_REPO, "sha256-" + image.digest[7:])][0]
    assert [e["digest"] for e in json.loads(indexed)["manifests"]] == [f.sha256(referrer)]
