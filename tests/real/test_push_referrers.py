"""Signatures, SBOMs and attestations across two real registries (Debian's ``docker-registry``,
distribution 2.8: no Referrers API): pulled from A into a bundle, pushed into B by
``bulkpull push``, and copied from A into B by ``bulkpull LIST --to``. B must then serve
cosign's ``.sig`` and ``.att`` tags and the referrers tag-schema index with A's digests, and a
pull from B must find them all again, byte for byte, the signatures verifying with the key."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.archives import Archive, blob_path, normalize_tagged
from support.imagefactory import Image
from support.services import Registry, child_env, run, start_registry
from support.testreferrers import Attached, SignedImages, cosign_tag

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def registry_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Registry B, plain HTTP, empty."""
    with start_registry(tmp_path_factory.mktemp("b")) as running:
        yield running


def cli(
    command: list[str], *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return run([*command, *args], env=env, check=False, timeout=300)


def transcript(result: subprocess.CompletedProcess[bytes]) -> str:
    return (result.stdout + result.stderr).decode(errors="replace")


def images_args(references: list[str]) -> list[str]:
    # platform=all: a multi-platform image keeps the index its signature was made for.
    return [arg for reference in references for arg in ("-i", reference)] + ["--platform", "all"]


def served(reference: str) -> bytes:
    """The manifest ``reference`` names, exactly as the registry serves it."""
    return run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reference}"]).stdout


def key_file(signed_images: SignedImages, tmp_path: Path) -> Path:
    path = tmp_path / "cosign.pub"
    path.write_bytes(signed_images.key.public_pem)
    return path


def in_b(registry_b: Registry, namespace: str, reference: str) -> str:
    """Where the push's naming rule puts an image of A in B: NAMESPACE/<its path>:<its tag>."""
    return f"{registry_b.host}/{namespace}/{reference.partition('/')[2]}"


def assert_referrers_in_b(registry_b: Registry, namespace: str, signed: SignedImages) -> None:
    """B serves every referrer under A's digest: cosign's tags, the SBOM by digest, and the
    SBOM listed in the subject's tag-schema index."""
    for reference, attached in signed.attached.items():
        repository = in_b(registry_b, namespace, reference).rpartition(":")[0]
        sig = f"{repository}:{cosign_tag(attached.subject, 'sig')}"
        att = f"{repository}:{cosign_tag(attached.subject, 'att')}"
        assert served(sig) == attached.signature.manifest, sig
        assert served(att) == attached.attestation.manifest, att
        assert served(f"{repository}@{attached.sbom.digest}") == attached.sbom.manifest
        schema = json.loads(served(f"{repository}:sha256-{attached.subject[7:]}"))
        assert attached.sbom.digest in [entry["digest"] for entry in schema["manifests"]]


def carried(files: dict[str, bytes], referrer: Image) -> bool:
    wanted = {referrer.digest: referrer.manifest, **referrer.blobs}
    return all(files.get(blob_path(digest)) == data for digest, data in wanted.items())


def pull_back_verified(
    command: list[str], references: list[str], key: Path, tmp_path: Path, every: list[Attached]
) -> None:
    """Pull ``references`` into a bundle with ``--verify-key``: every signature verifies and
    every referrer of ``every`` is there byte for byte; ``bulkpull verify`` agrees offline."""
    bundle, report = tmp_path / "from-b.tar", tmp_path / "from-b.json"
    pulled = cli(
        command, *images_args(references), "--plain-http", "--bundle", str(bundle),
        "--verify-key", str(key), "--report", str(report),
    )  # fmt: skip
    assert pulled.returncode == 0, transcript(pulled)
    records = json.loads(report.read_text())["images"]
    assert {r["signature"]["outcome"] for r in records} == {"verified"}, records
    files = Archive.read(bundle).files
    for attached in every:
        for referrer in attached.all:
            assert carried(files, referrer), referrer.digest
    checked = cli(command, "verify", str(bundle), "--verify-key", str(key))
    assert checked.returncode == 0, transcript(checked)


def test_a_pushed_bundle_brings_its_signatures_into_b_and_they_verify_there(
    signed_images: SignedImages, registry_b: Registry, bulkpull_command: list[str], tmp_path: Path
) -> None:
    references = list(signed_images.attached)
    bundle, key = tmp_path / "offline.tar", key_file(signed_images, tmp_path)
    pulled = cli(
        bulkpull_command, *images_args(references), "--plain-http", "--bundle", str(bundle),
        "--verify-key", str(key),
    )  # fmt: skip
    assert pulled.returncode == 0, transcript(pulled)
    report = tmp_path / "push.json"

    pushed = cli(
        bulkpull_command, "push", str(bundle), "--to", f"{registry_b.host}/site",
        "--plain-http", "--state-dir", str(tmp_path / "state"), "--report", str(report),
    )  # fmt: skip

    assert pushed.returncode == 0, transcript(pushed)
    assert f"{3 * len(references)} referrers pushed with {len(references)} images" in (
        transcript(pushed)
    )
    for record in json.loads(report.read_text())["images"]:
        listed = {r["listed"] for r in record["referrers"]}
        assert listed == {None, "referrers tag schema"}, record
    assert_referrers_in_b(registry_b, "site", signed_images)
    since = registry_b.log_offset()
    again = cli(
        bulkpull_command, "push", str(bundle), "--to", f"{registry_b.host}/site",
        "--plain-http", "--state-dir", str(tmp_path / "state"),
    )  # fmt: skip
    assert again.returncode == 0, transcript(again)
    assert f"{3 * len(references)} referrers already in the target" in transcript(again)
    time.sleep(0.3)  # the registry logs a request just after answering it
    writes = [r for r in registry_b.requests(since) if r.method in ("POST", "PATCH", "PUT")]
    assert writes == []
    in_site = [in_b(registry_b, "site", normalize_tagged(r)) for r in references]
    every = list(signed_images.attached.values())
    pull_back_verified(bulkpull_command, in_site, key, tmp_path, every)


def test_a_copy_from_a_to_b_carries_the_signatures_and_they_verify_there(
    signed_images: SignedImages, registry_b: Registry, bulkpull_command: list[str], tmp_path: Path
) -> None:
    references = list(signed_images.attached)
    key = key_file(signed_images, tmp_path)

    copied = cli(
        bulkpull_command, *images_args(references), "--to", f"{registry_b.host}/copied",
        "--plain-http", "--cache", str(tmp_path / "store"), "--verify-key", str(key),
        env=child_env(XDG_STATE_HOME=str(tmp_path / "state")),
    )  # fmt: skip

    assert copied.returncode == 0, transcript(copied)
    assert_referrers_in_b(registry_b, "copied", signed_images)
    in_copied = [in_b(registry_b, "copied", normalize_tagged(r)) for r in references]
    every = list(signed_images.attached.values())
    pull_back_verified(bulkpull_command, in_copied, key, tmp_path, every)
