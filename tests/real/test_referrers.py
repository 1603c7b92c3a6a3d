"""Signatures, SBOMs and attestations pulled from Debian's ``docker-registry`` (distribution 2.8:
no Referrers API, so the tag schema and cosign's tags) by the CLI, carried byte for byte into
bundles and layouts, listed in the report, and checked with ``--verify-key`` at the registry
and offline by ``bulkpull verify``."""

from __future__ import annotations

import json
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import cosignfactory, imagefactory
from support.archives import normalize_tagged
from support.imagefactory import Image
from support.services import Registry, run
from support.testimages import PushedImages, push_over_api
from support.testreferrers import SignedImages, attach, cosign_tag

pytestmark = pytest.mark.real


@dataclass(frozen=True)
class Pull:
    argv: list[str]
    result: subprocess.CompletedProcess[bytes]
    report: dict[str, Any]

    @property
    def transcript(self) -> str:
        output = (self.result.stdout + self.result.stderr).decode(errors="replace")
        return f"$ {' '.join(self.argv)}\n{output}"


def pull(command: list[str], references: list[str], *flags: str, report: Path) -> Pull:
    argv = [*command, "--plain-http", "--report", str(report), *flags]
    for reference in references:
        argv += ["-i", reference]
    result = run(argv, check=False, timeout=300)
    recorded = json.loads(report.read_text()) if report.exists() else {}
    return Pull(argv, result, recorded)


def members(path: Path) -> dict[str, bytes]:
    """The files of a bundle or a layout directory, by path."""
    if path.is_dir():
        return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}
    with tarfile.open(path) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def blob(digest: str) -> str:
    return f"blobs/sha256/{digest.removeprefix('sha256:')}"


def carried(files: dict[str, bytes], referrer: Image) -> bool:
    """Whether the referrer's manifest and every blob it names are there byte for byte."""
    wanted = {referrer.digest: referrer.manifest, **referrer.blobs}
    return all(files.get(blob(digest)) == data for digest, data in wanted.items())


@pytest.mark.parametrize("output", ["--bundle", "--oci-layout"])
def test_a_bundle_or_layout_carries_every_referrer_and_reports_it(
    signed_images: SignedImages, bulkpull_command: list[str], tmp_path: Path, output: str
) -> None:
    references = list(signed_images.attached)
    target = tmp_path / ("offline.tar" if output == "--bundle" else "layout")

    done = pull(bulkpull_command, references, output, str(target), report=tmp_path / "report.json")

    assert done.result.returncode == 0, done.transcript
    files = members(target)
    for attached in signed_images.attached.values():
        for referrer in attached.all:
            assert carried(files, referrer), (referrer.digest, done.transcript)
    index = json.loads(files["index.json"])
    tags = {
        (entry["annotations"].get("vnd.bulkpull.referrer.of"), entry["digest"]): entry[
            "annotations"
        ].get("vnd.bulkpull.referrer.tag")
        for entry in index["manifests"]
    }
    for reference, attached in signed_images.attached.items():
        name = normalize_tagged(reference)
        assert tags[(name, attached.signature.digest)] == cosign_tag(attached.subject, "sig")
        assert tags[(name, attached.attestation.digest)] == cosign_tag(attached.subject, "att")
        assert tags[(name, attached.sbom.digest)] is None
        (record, *_) = [
            r for r in done.report["images"] if r["reference"] == normalize_tagged(reference)
        ]
        listed = {(r["type"], r["digest"]) for r in record["referrers"]}
        assert listed >= {
            (cosignfactory.SIMPLE_SIGNING, attached.signature.digest),
            (cosignfactory.DSSE_ENVELOPE, attached.attestation.digest),
            (cosignfactory.SPDX_JSON, attached.sbom.digest),
        }
        sources = {r["digest"]: r["source"] for r in record["referrers"]}
        assert sources[attached.sbom.digest] == "referrers tag schema"
    assert f"referrers carried with {len(references)} images" in done.result.stdout.decode()
    checked = run([*bulkpull_command, "verify", str(target)], check=False)
    assert checked.returncode == 0, checked.stdout.decode()


def test_no_referrers_leaves_them_out(
    signed_images: SignedImages, bulkpull_command: list[str], tmp_path: Path
) -> None:
    references = list(signed_images.attached)
    target = tmp_path / "offline.tar"

    done = pull(
        bulkpull_command, references, "--bundle", str(target), "--no-referrers",
        report=tmp_path / "report.json",
    )  # fmt: skip

    assert done.result.returncode == 0, done.transcript
    files = members(target)
    for attached in signed_images.attached.values():
        for referrer in attached.all:
            assert blob(referrer.digest) not in files
    assert all(record["referrers"] == [] for record in done.report["images"])


# --------------------------------------------------------------------------------------------
# --verify-key


@dataclass(frozen=True)
class BadlySigned:
    """Images in the registry whose signature fails one way each, by how."""

    key: cosignfactory.KeyPair
    references: dict[str, str]


@pytest.fixture(scope="module")
def badly_signed(pushed_images: PushedImages) -> BadlySigned:
    registry: Registry = pushed_images.registry
    key = cosignfactory.ecdsa_key()
    references = {}
    for case in ("wrong-key", "tampered", "other-digest"):
        image = imagefactory.make_image([imagefactory.random_layer(4096)], label=case)
        reference = push_over_api(registry, f"sigs/{case}", "1", image)
        signature = {
            "wrong-key": cosignfactory.make_signature(image.digest, cosignfactory.ecdsa_key()),
            "tampered": cosignfactory.make_signature(
                image.digest,
                key,
                payload=cosignfactory.simple_signing(image.digest) + b" ",
                logged=True,
            ),
            "other-digest": cosignfactory.make_signature(pushed_images.busybox.image.digest, key),
        }[case]
        attach(registry, f"sigs/{case}", image, key, signature=signature)
        references[case] = reference
    return BadlySigned(key, references)


def key_file(tmp_path: Path, key: cosignfactory.KeyPair, name: str = "cosign.pub") -> Path:
    path = tmp_path / name
    path.write_bytes(key.public_pem)
    return path


def test_an_image_signed_with_the_key_is_pulled_and_verified_offline(
    signed_images: SignedImages, bulkpull_command: list[str], tmp_path: Path
) -> None:
    references = list(signed_images.attached)
    target = tmp_path / "layout"
    key = key_file(tmp_path, signed_images.key)

    done = pull(
        bulkpull_command, references, "--oci-layout", str(target), "--verify-key", str(key),
        report=tmp_path / "report.json",
    )  # fmt: skip

    assert done.result.returncode == 0, done.transcript
    assert [r["signature"]["outcome"] for r in done.report["images"]] == ["verified"] * len(
        done.report["images"]
    )
    checked = run([*bulkpull_command, "verify", str(target), "--verify-key", str(key)])
    text = checked.stdout.decode()
    assert text.count("signed ") == len(references), text
    other = key_file(tmp_path, cosignfactory.ecdsa_key(), "other.pub")
    refused = run(
        [*bulkpull_command, "verify", str(target), "--verify-key", str(other)], check=False
    )
    assert refused.returncode == 1
    assert "signature does not verify with the ECDSA P-256 key" in refused.stdout.decode()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong-key", "signature does not verify with the ECDSA P-256 key"),
        ("tampered", "was altered after signing"),
        ("other-digest", "payload names sha256:"),
    ],
)
def test_an_image_whose_signature_fails_is_not_pulled_and_says_why_here_and_offline(
    badly_signed: BadlySigned,
    bulkpull_command: list[str],
    tmp_path: Path,
    case: str,
    message: str,
) -> None:
    reference = badly_signed.references[case]
    key = key_file(tmp_path, badly_signed.key)

    done = pull(
        bulkpull_command, [reference], "--bundle", str(tmp_path / "signed.tar"),
        "--verify-key", str(key), report=tmp_path / "report.json",
    )  # fmt: skip

    assert done.result.returncode == 1, done.transcript
    (record,) = done.report["images"]
    assert record["error"]["type"] == "SignatureError"
    assert message in record["error"]["message"]
    assert message in done.transcript
    # Carried without a key, the same signature fails the same way offline.
    bundle = tmp_path / "unchecked.tar"
    unchecked = pull(
        bulkpull_command, [reference], "--bundle", str(bundle),
        report=tmp_path / "unchecked.json",
    )  # fmt: skip
    assert unchecked.result.returncode == 0, unchecked.transcript
    checked = run([*bulkpull_command, "verify", str(bundle), "--verify-key", str(key)], check=False)
    text = checked.stdout.decode()
    assert checked.returncode == 1, text
    assert f"FAILED  {bundle}: {normalize_tagged(reference)}: " in text
    assert message in text
