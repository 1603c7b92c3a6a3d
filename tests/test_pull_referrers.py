"""Signatures, SBOMs and attestations pulled with their images from the fake registry: found
through the Referrers API or the tag schema and cosign's tags, carried byte for byte into
bundles and layouts, listed in the report; and ``verify_key`` checking cosign signatures
before an image is fetched, and offline in what was written."""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from support import cosignfactory as cf
from support import imagefactory as f
from support.commandline import run_cli
from support.fakeregistry import FakeRegistry, Start
from support.fakesigned import REPO, cosign_tag, signed_image
from support.fakeupload import FakeUploads

import bulkpull
from bulkpull import Destination, Outcome, PullOptions, SignatureError


def tar_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def layout_members(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def blob(digest: str) -> str:
    return f"blobs/sha256/{digest.removeprefix('sha256:')}"


def assert_carried(members: dict[str, bytes], referrer: f.Image) -> None:
    """The referrer's manifest and every blob it names, byte for byte."""
    assert members[blob(referrer.digest)] == referrer.manifest
    for digest, data in referrer.blobs.items():
        assert members[blob(digest)] == data


def referrer_entries(members: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    index = json.loads(members["index.json"])
    return {
        entry["digest"]: entry
        for entry in index["manifests"]
        if "vnd.bulkpull.referrer.of" in entry.get("annotations", {})
    }


@pytest.mark.parametrize("kind", ["bundle", "layout"])
async def test_a_bundle_or_layout_carries_every_referrer_byte_for_byte(
    start: Start, options: PullOptions, tmp_path: Path, kind: str
) -> None:
    signed = await signed_image(start)
    if kind == "bundle":
        to = Destination.bundle(tmp_path / "offline.tar")
    else:
        to = Destination.oci_layout(tmp_path / "layout")

    report = await bulkpull.pull_images([signed.reference], to, options)

    assert report.ok, report.failed
    members = tar_members(to.path) if kind == "bundle" else layout_members(to.path)
    for referrer in signed.referrers:
        assert_carried(members, referrer)
    entries = referrer_entries(members)
    assert set(entries) == {r.digest for r in signed.referrers}
    name = f"{signed.host}/{REPO}"
    sig_annotations = entries[signed.signature.digest]["annotations"]
    assert sig_annotations == {
        "vnd.bulkpull.referrer.of": f"{name}:v1",
        "vnd.bulkpull.referrer.tag": cosign_tag(signed.image.digest, "sig"),
    }
    sbom_entry = entries[signed.sbom.digest]
    assert sbom_entry["artifactType"] == cf.SPDX_JSON
    assert sbom_entry["annotations"] == {
        "org.opencontainers.image.created": "2024-01-01T00:00:00Z",
        "vnd.bulkpull.referrer.of": f"{name}:v1",
    }
    (result,) = report.results
    carried = {r.digest: r for r in result.referrers}
    assert set(map(str, carried)) == {r.digest for r in signed.referrers}
    assert carried[bulkpull.Digest.parse(signed.signature.digest)].type == cf.SIMPLE_SIGNING
    assert carried[bulkpull.Digest.parse(signed.attestation.digest)].type == cf.DSSE_ENVELOPE
    assert carried[bulkpull.Digest.parse(signed.sbom.digest)].type == cf.SPDX_JSON
    sizes = {str(r.digest): r.size for r in result.referrers}
    expected = len(signed.sbom.manifest) + sum(len(b) for b in signed.sbom.blobs.values())
    assert sizes[signed.sbom.digest] == expected
    recorded = result.to_json()["referrers"]
    assert isinstance(recorded, list)
    assert len(recorded) == 3
    check = bulkpull.verify_archive(to.path)
    assert check.ok, check.problems
    assert check.names == (f"{name}:v1",)


async def test_a_rerun_into_a_layout_is_up_to_date_and_lists_each_referrer_once(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed = await signed_image(start)
    to = Destination.oci_layout(tmp_path / "layout")
    await bulkpull.pull_images([signed.reference], to, options)

    again = await bulkpull.pull_images([signed.reference], to, options)

    assert [r.status for r in again.results] == [bulkpull.Status.UP_TO_DATE]
    index = json.loads((to.path / "index.json").read_bytes())
    digests = [entry["digest"] for entry in index["manifests"]]
    assert sorted(digests) == sorted({signed.image.digest, *(r.digest for r in signed.referrers)})


async def test_a_bundle_is_rewritten_when_a_new_referrer_appears(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed = await signed_image(start)
    to = Destination.bundle(tmp_path / "offline.tar")
    await bulkpull.pull_images([signed.reference], options=options, destination=to)
    newer = cf.make_oras_sbom(signed.image, created="2025-01-01T00:00:00Z")
    signed.registry.add(REPO, newer.digest, newer)

    again = await bulkpull.pull_images([signed.reference], to, options)

    assert [r.status for r in again.results] == [bulkpull.Status.PULLED]
    assert_carried(tar_members(to.path), newer)


async def test_without_the_referrers_api_the_tag_schema_index_is_read(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed = await signed_image(start, api=False)
    to = Destination.bundle(tmp_path / "offline.tar")

    report = await bulkpull.pull_images([signed.reference], to, options)

    assert report.ok, report.failed
    members = tar_members(to.path)
    for referrer in signed.referrers:
        assert_carried(members, referrer)
    sources = {str(r.digest): r.source for r in report.results[0].referrers}
    assert sources[signed.sbom.digest] == "referrers tag schema"
    assert sources[signed.signature.digest] == "cosign tag"


async def test_a_repository_without_the_referrers_api_is_asked_once(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed = await signed_image(start, api=False)
    other = f.make_image([f.random_layer(5_000)], label="other")
    signed.registry.add(REPO, "v2", other)
    to = Destination.bundle(tmp_path / "offline.tar")

    report = await bulkpull.pull_images(
        [signed.reference, f"{signed.host}/{REPO}:v2"], to, replace(options, jobs=1)
    )

    assert report.ok, report.failed
    asked = [s for s in signed.registry.seen if "/referrers/" in s.path]
    assert len(asked) == 1


async def test_no_referrers_leaves_them_out(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed = await signed_image(start)
    to = Destination.bundle(tmp_path / "offline.tar")

    report = await bulkpull.pull_images([signed.reference], to, replace(options, referrers=False))

    assert report.ok
    members = tar_members(to.path)
    assert all(blob(r.digest) not in members for r in signed.referrers)
    assert referrer_entries(members) == {}
    assert report.results[0].referrers == ()
    assert not [s for s in signed.registry.seen if "/referrers/" in s.path]


async def test_a_referrers_type_keeps_only_referrers_of_that_type(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed = await signed_image(start)
    to = Destination.bundle(tmp_path / "offline.tar")
    only = replace(options, referrer_types=frozenset({cf.SIMPLE_SIGNING}))

    report = await bulkpull.pull_images([signed.reference], to, only)

    members = tar_members(to.path)
    assert set(referrer_entries(members)) == {signed.signature.digest}
    assert blob(signed.sbom.digest) not in members
    assert [str(r.digest) for r in report.results[0].referrers] == [signed.signature.digest]


async def test_per_image_archives_carry_no_referrers(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed = await signed_image(start)

    report = await bulkpull.pull_images([signed.reference], tmp_path, options)

    (result,) = report.results
    assert result.archive is not None
    members = tar_members(result.archive)
    assert len(json.loads(members["index.json"])["manifests"]) == 1
    assert result.referrers == ()


async def test_referrers_of_every_platform_and_of_the_index_travel_with_it(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    key = cf.ecdsa_key()
    amd64 = f.make_image([f.random_layer(5_000)], arch="amd64", label="amd64")
    arm64 = f.make_image([f.random_layer(5_000)], arch="arm64", label="arm64")
    index = f.make_index([amd64, arm64], attestation=False)
    registry.add(REPO, "multi", index)
    on_index = cf.make_signature(index.digest, key)
    on_child = cf.make_oras_sbom(amd64)
    registry.add(REPO, cosign_tag(index.digest, "sig"), on_index)
    registry.add(REPO, on_child.digest, on_child)
    host = await start(registry.app())
    to = Destination.bundle(tmp_path / "offline.tar")
    key_options = replace(options, verify_key=load(key))

    report = await bulkpull.pull_images([f"{host}/{REPO}:multi"], to, key_options)

    assert report.ok, report.failed
    members = tar_members(to.path)
    assert_carried(members, on_index)
    assert_carried(members, on_child)
    signature = report.results[0].signature
    assert signature is not None
    assert signature.verified
    (checked,) = bulkpull.verify_signatures(bulkpull.verify_archive(to.path), load(key))
    assert checked[1].verified


# --------------------------------------------------------------------------------------------
# --verify-key


def load(key: cf.KeyPair) -> bulkpull.PublicKey:
    return bulkpull.load_public_key(key.public_pem, "cosign.pub")


async def test_an_image_signed_with_the_key_is_pulled_and_its_check_reported(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed = await signed_image(start)
    to = Destination.bundle(tmp_path / "offline.tar")

    report = await bulkpull.pull_images(
        [signed.reference], to, replace(options, verify_key=load(signed.key))
    )

    assert report.ok, report.failed
    (result,) = report.results
    assert result.signature is not None
    assert result.signature.outcome is Outcome.VERIFIED
    recorded = result.to_json()["signature"]
    assert isinstance(recorded, dict)
    assert recorded["outcome"] == "verified"
    (verdict,) = bulkpull.verify_signatures(bulkpull.verify_archive(to.path), load(signed.key))
    assert verdict[1].verified


# How a signature can fail, and the message each failure must give.
FAILURES = [
    ("wrong key", "signature does not verify with the ECDSA P-256 key"),
    ("tampered payload", "was altered after signing"),
    ("other digest", "payload names sha256:"),
]


@dataclass(frozen=True)
class BadlySigned:
    host: str
    registry: FakeRegistry
    image: f.Image
    key: cf.KeyPair

    @property
    def reference(self) -> str:
        return f"{self.host}/{REPO}:v1"


async def badly_signed(start: Start, case: str) -> BadlySigned:
    """An image whose signature fails the way ``case`` says ("no signature": it has none)."""
    key, other_key = cf.ecdsa_key(), cf.ecdsa_key()
    image = f.make_image([f.random_layer(20_000)], label="signed")
    # The stored payload differs from the signed one; the Rekor entry records the signed one.
    altered = cf.simple_signing(image.digest) + b" "
    signature = {
        "wrong key": cf.make_signature(image.digest, other_key),
        "tampered payload": cf.make_signature(image.digest, key, payload=altered, logged=True),
        "other digest": cf.make_signature(f.make_image([f.random_layer(10)]).digest, key),
        "no signature": None,
    }[case]
    registry = FakeRegistry()
    registry.add(REPO, "v1", image)
    if signature is not None:
        registry.add(REPO, cosign_tag(image.digest, "sig"), signature)
    return BadlySigned(await start(registry.app()), registry, image, key)


@pytest.mark.parametrize(
    ("case", "message"), [*FAILURES, ("no signature", "no signature found (no sha256-")]
)
async def test_an_image_whose_signature_fails_is_not_fetched_and_says_why(
    start: Start, options: PullOptions, tmp_path: Path, case: str, message: str
) -> None:
    bad = await badly_signed(start, case)
    to = Destination.bundle(tmp_path / "offline.tar")

    report = await bulkpull.pull_images(
        [bad.reference], to, replace(options, verify_key=load(bad.key))
    )

    (result,) = report.failed
    assert isinstance(result.error, SignatureError)
    assert message in str(result.error)
    assert str(result.error).startswith(f"{bad.reference}: ")
    layer = bad.image.layers[0].digest
    assert bad.registry.count("GET", f"/blobs/{layer}") == 0
    assert not to.path.exists()


@pytest.mark.parametrize(
    ("case", "message"), [*FAILURES, ("no signature", "no signature found (no sha256-")]
)
async def test_a_dry_run_with_a_key_fails_an_image_whose_signature_fails(
    start: Start, options: PullOptions, case: str, message: str
) -> None:
    bad = await badly_signed(start, case)

    report = await bulkpull.resolve_images(
        [bad.reference], replace(options, verify_key=load(bad.key))
    )

    (result,) = report.failed
    assert isinstance(result.error, SignatureError)
    assert message in str(result.error)
    assert bad.registry.count("GET", f"/blobs/{bad.image.layers[0].digest}") == 0


async def test_a_dry_run_with_a_key_reports_the_verified_signature(
    start: Start, options: PullOptions
) -> None:
    signed = await signed_image(start)

    report = await bulkpull.resolve_images(
        [signed.reference], replace(options, verify_key=load(signed.key))
    )

    assert report.ok, report.failed
    (result,) = report.results
    assert result.signature is not None
    assert result.signature.outcome is Outcome.VERIFIED
    assert result.referrers == ()
    assert signed.registry.count("GET", f"/referrers/{signed.image.digest}") == 0


@pytest.mark.parametrize(("case", "message"), FAILURES)
async def test_verify_checks_carried_signatures_offline_and_says_why(
    start: Start, options: PullOptions, tmp_path: Path, case: str, message: str
) -> None:
    bad = await badly_signed(start, case)
    to = Destination.oci_layout(tmp_path / "layout")
    assert (await bulkpull.pull_images([bad.reference], to, options)).ok

    (verdict,) = bulkpull.verify_signatures(bulkpull.verify_archive(to.path), load(bad.key))

    name, checked = verdict
    assert name == bad.reference
    assert not checked.verified
    assert message in checked.message


async def test_an_archive_without_signatures_has_none_to_verify(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed = await signed_image(start)
    report = await bulkpull.pull_images([signed.reference], tmp_path, options)
    assert report.results[0].archive is not None

    check = bulkpull.verify_archive(report.results[0].archive)
    ((_, verdict),) = bulkpull.verify_signatures(check, load(signed.key))

    assert verdict.outcome is Outcome.NO_SIGNATURE


async def test_the_cli_pulls_signed_images_and_verify_checks_them_offline(
    start: Start, tmp_path: Path
) -> None:
    signed = await signed_image(start)
    key_file = tmp_path / "cosign.pub"
    key_file.write_bytes(signed.key.public_pem)
    other_file = tmp_path / "other.pub"
    other_file.write_bytes(cf.ecdsa_key().public_pem)
    bundle = tmp_path / "offline.tar"

    code, out, err = await run_cli(
        "-i", signed.reference, "--bundle", str(bundle), "--plain-http",
        "--verify-key", str(key_file),
    )  # fmt: skip

    assert code == 0, err
    assert "3 referrers" in out
    code, out, _ = await run_cli("verify", str(bundle), "--verify-key", str(key_file))
    assert code == 0, out
    assert f"signed  {bundle}: {signed.reference}: signed:" in out
    code, out, _ = await run_cli("verify", str(bundle), "--verify-key", str(other_file))
    assert code == 1
    assert "signature does not verify" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a key\n", "not a PEM file"),
        (cf.ecdsa_key().private_pem, "holds a private key"),
    ],
)
async def test_a_key_file_that_cannot_be_used_stops_the_run_before_any_request(
    start: Start, tmp_path: Path, content: bytes, message: str
) -> None:
    signed = await signed_image(start)
    key_file = tmp_path / "cosign.pub"
    key_file.write_bytes(content)

    code, _, err = await run_cli(
        "-i", signed.reference, "--bundle", str(tmp_path / "b.tar"), "--plain-http",
        "--verify-key", str(key_file),
    )  # fmt: skip

    assert code == 2
    assert message in err
    assert signed.registry.seen == []


async def test_an_index_referrer_travels_with_its_manifests_and_their_blobs(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    image = f.make_image([f.random_layer(5_000)], label="with-index-referrer")
    child = cf.make_signature(image.digest, cf.ecdsa_key())
    index_referrer = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": f.OCI_INDEX,
            "artifactType": "application/vnd.example.bundle",
            "manifests": [
                {"mediaType": child.media_type, "digest": child.digest, "size": len(child.manifest)}
            ],
            "subject": {
                "mediaType": image.media_type,
                "digest": image.digest,
                "size": len(image.manifest),
            },
        }
    ).encode()
    registry.add(REPO, "v1", image)
    registry.add(REPO, child.digest, child)
    registry.put_manifest(REPO, f.sha256(index_referrer), index_referrer, f.OCI_INDEX)
    host = await start(registry.app())
    to = Destination.bundle(tmp_path / "offline.tar")

    report = await bulkpull.pull_images([f"{host}/{REPO}:v1"], to, options)

    assert report.ok, report.failed
    members = tar_members(to.path)
    assert members[blob(f.sha256(index_referrer))] == index_referrer
    assert_carried(members, child)
    (carried,) = report.results[0].referrers
    assert carried.type == "application/vnd.example.bundle"
    assert carried.size == len(index_referrer) + len(child.manifest) + sum(
        len(data) for data in child.blobs.values()
    )
    assert bulkpull.verify_archive(to.path).ok


async def test_missing_cosign_tags_are_learnt_with_head_and_cost_no_get(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed = await signed_image(start)
    to = Destination.bundle(tmp_path / "offline.tar")

    report = await bulkpull.pull_images([signed.reference], to, options)

    assert report.ok, report.failed
    hex_ = signed.image.digest.removeprefix("sha256:")
    seen = signed.registry.paths()
    manifests = f"/v2/{REPO}/manifests"
    assert seen[f"GET {manifests}/sha256-{hex_}.sbom"] == 0
    assert seen[f"HEAD {manifests}/sha256-{hex_}.sbom"] == 1
    assert seen[f"GET {manifests}/sha256-{hex_}.sig"] == 1
    # The referrers of the referrers have no cosign tags either.
    for referrer in signed.referrers:
        for kind in ("sig", "att", "sbom"):
            assert seen[f"GET {manifests}/{cosign_tag(referrer.digest, kind)}"] == 0


async def test_a_new_signature_replaces_the_old_one_in_a_layout(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed = await signed_image(start)
    to = Destination.oci_layout(tmp_path / "layout")
    await bulkpull.pull_images([signed.reference], to, options)
    resigned = cf.make_signature(signed.image.digest, cf.ecdsa_key())
    signed.registry.add(REPO, cosign_tag(signed.image.digest, "sig"), resigned)

    again = await bulkpull.pull_images([signed.reference], to, options)

    entries = referrer_entries(layout_members(to.path))
    assert resigned.digest in entries
    assert signed.signature.digest not in entries
    (gone,) = again.replaced
    assert gone.name == f"{signed.host}/{REPO}:v1 referrer {signed.signature.digest}"


async def test_a_referrers_list_is_read_page_by_page(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed = await signed_image(start)
    sboms = [cf.make_oras_sbom(signed.image, created=f"2025-01-0{day}T00:00:00Z") for day in "12"]
    for sbom in sboms:
        signed.registry.add(REPO, sbom.digest, sbom)
    signed.registry.referrers_page = 1
    to = Destination.bundle(tmp_path / "offline.tar")

    report = await bulkpull.pull_images([signed.reference], to, options)

    assert report.ok, report.failed
    members = tar_members(to.path)
    for referrer in [signed.sbom, *sboms]:
        assert_carried(members, referrer)
    pages = [s for s in signed.registry.seen if f"/referrers/{signed.image.digest}" in s.path]
    assert [s.query.get("from") for s in pages] == [None, ["1"], ["2"]]


async def test_a_bundle_carrying_referrers_pushes_its_images(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    signed = await signed_image(start)
    to = Destination.bundle(tmp_path / "offline.tar")
    assert (await bulkpull.pull_images([signed.reference], to, options)).ok
    uploads = FakeUploads(FakeRegistry(), tmp_path / "registry")
    host = await start(uploads.app())
    push = bulkpull.PushOptions(
        plain_http=True, retry=bulkpull.RetryPolicy(retries=0), state_dir=tmp_path / "state"
    )

    report = await bulkpull.push_images([to.path], f"{host}/mirror", push)

    assert report.ok, [str(r.error) for r in report.failed]
    assert [str(r.spec.target) for r in report.results] == [f"{host}/mirror/{REPO}:v1"]
    assert uploads.registry.manifests[(f"mirror/{REPO}", "v1")][0] == signed.image.manifest
