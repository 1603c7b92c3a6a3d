"""Every digest survives the trip, against the real registry, skopeo, containerd and Docker.

An OCI index and a Docker manifest list of three platforms, each platform with the attestation
manifest BuildKit adds, are pushed byte for byte and pulled with ``--platform all`` into each
output form; everything they list must arrive under the registry's digests, travel on to a
second registry with them, and load into containerd and Docker. One platform out of an index
must arrive as that platform's manifest; an image of another platform than asked for must be
refused. ``bulkpull verify`` must pass what other tools write (skopeo's docker-archive, the
engine's ``docker save``), name a flipped byte, and check a lock file against the outputs.
"""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import imagefactory
from support.archives import blob_path, read_member, sha256
from support.imagefactory import Image, Index
from support.loaders import SNAPSHOTTER, Containerd, chain_ids, tool_version
from support.services import DockerEngine, Registry, run, start_registry
from support.testimages import PushedImages, host_arch, push_over_api

pytestmark = pytest.mark.real

PLATFORMS = (("amd64", ""), ("arm64", ""), ("arm", "v7"))
KINDS = ("oci", "docker")
OUTPUTS = ("archive", "bundle", "layout")


@dataclass(frozen=True)
class MultiApp:
    """A three-platform index with attestations, as the registry serves it."""

    reference: str
    index: Index

    def child(self, arch: str, variant: str = "") -> Image:
        (image,) = [i for i in self.index.images if i.platform[1:] == (arch, variant)]
        return image


def archive_name(reference: str) -> str:
    """The per-image archive of ``reference`` (a loopback registry's, so nothing shortens)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", reference) + ".tar"


def served_digest(reference: str) -> str:
    """The digest of what the registry serves for ``reference``, as skopeo reads it."""
    raw = run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reference}"])
    return sha256(raw.stdout)


def entry_for(target: Path, name: str) -> dict[str, str]:
    """The index.json entry of ``target`` named ``name``."""
    index = json.loads(read_member(target, "index.json"))
    (entry,) = [
        e for e in index["manifests"] if e["annotations"]["io.containerd.image.name"] == name
    ]
    return {key: value for key, value in entry.items() if isinstance(value, str)}


def bulkpull(command: list[str], *args: str, check: bool = True) -> str:
    """Run the CLI; its standard output and error together."""
    result = run([*command, *args], check=check, timeout=300)
    return (result.stdout + result.stderr).decode(errors="replace")


@pytest.fixture(scope="module")
def multi_apps(registry: Registry) -> dict[str, MultiApp]:
    base = imagefactory.random_layer(64 * 1024, name="base.bin")
    apps = {}
    for kind in KINDS:
        images = [
            imagefactory.make_image(
                [base, imagefactory.random_layer(16 * 1024, name=f"{arch}{variant}.bin")],
                arch=arch,
                variant=variant,
                docker_types=kind == "docker",
                label=f"{kind}-{arch}{variant}",
            )
            for arch, variant in PLATFORMS
        ]
        index = imagefactory.make_index(images, docker_types=kind == "docker", attestation=True)
        apps[kind] = MultiApp(push_over_api(registry, f"multi/app-{kind}", "1.0", index), index)
    return apps


@pytest.fixture(scope="module")
def second_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with start_registry(tmp_path_factory.mktemp("second-registry")) as running:
        yield running


@pytest.fixture(scope="module")
def every_platform(
    multi_apps: dict[str, MultiApp],
    bulkpull_command: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    """Both indexes pulled with ``--platform all`` into each output form."""
    workdir = tmp_path_factory.mktemp("every-platform")
    listing = workdir / "images.txt"
    listing.write_text("".join(f"{app.reference}\n" for app in multi_apps.values()))
    targets = {
        "archive": ("--out-dir", workdir / "archives"),
        "bundle": ("--bundle", workdir / "bundle" / "all.tar"),
        "layout": ("--oci-layout", workdir / "layout"),
    }
    for flag, target in targets.values():
        args = [str(listing), "--plain-http", "--platform", "all", flag, str(target)]
        bulkpull(bulkpull_command, *args)
    return {output: target for output, (_, target) in targets.items()}


def target_of(every_platform: dict[str, Path], output: str, app: MultiApp) -> Path:
    target = every_platform[output]
    return target / archive_name(app.reference) if output == "archive" else target


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("output", OUTPUTS)
def test_every_platform_arrives_under_the_registry_digests(
    every_platform: dict[str, Path],
    multi_apps: dict[str, MultiApp],
    bulkpull_command: list[str],
    output: str,
    kind: str,
) -> None:
    app = multi_apps[kind]
    target = target_of(every_platform, output, app)

    entry = entry_for(target, app.reference)

    assert entry["digest"] == served_digest(app.reference) == app.index.digest
    assert entry["mediaType"] == app.index.media_type
    assert sha256(read_member(target, blob_path(app.index.digest))) == app.index.digest
    for child in app.index.children:  # the attestations too
        raw = read_member(target, blob_path(child.digest))
        assert sha256(raw) == child.digest
        manifest = json.loads(raw)
        for descriptor in [manifest["config"], *manifest["layers"]]:
            data = read_member(target, blob_path(descriptor["digest"]))
            assert (sha256(data), len(data)) == (descriptor["digest"], descriptor["size"])
    assert f"ok      {target}:" in bulkpull(bulkpull_command, "verify", str(target))


@pytest.mark.parametrize("kind", KINDS)
def test_skopeo_carries_every_platform_to_another_registry_under_the_same_digest(
    every_platform: dict[str, Path],
    multi_apps: dict[str, MultiApp],
    second_registry: Registry,
    kind: str,
) -> None:
    app = multi_apps[kind]
    source = f"oci:{every_platform['layout']}:{app.reference}"
    old_skopeo = tool_version("skopeo", "--version") < (1, 19)
    if app.index.media_type != imagefactory.OCI_INDEX and old_skopeo:
        # skopeo before 1.19 cannot pick a Docker-typed entry by ref name (README, known
        # loader limitation); the per-image archive holds one entry and needs no ref.
        source = f"oci-archive:{target_of(every_platform, 'archive', app)}"
    copied = f"{second_registry.host}/copied/app-{kind}:1.0"

    run(
        [
            "skopeo", "--insecure-policy", "copy", "--quiet", "--all", "--preserve-digests",
            "--dest-tls-verify=false", source, f"docker://{copied}",
        ]
    )  # fmt: skip

    assert served_digest(copied) == app.index.digest
    repository = copied.rpartition(":")[0]
    for child in app.index.children:
        assert served_digest(f"{repository}@{child.digest}") == child.digest


def test_ctr_imports_the_bundle_of_every_platform(
    every_platform: dict[str, Path], multi_apps: dict[str, MultiApp], containerd: Containerd
) -> None:
    bundle = every_platform["bundle"]
    host = host_arch()

    for namespace, flags in (("every-all", ["--all-platforms"]), ("every-host", [])):
        containerd.ctr(
            namespace, "images", "import", "--snapshotter", SNAPSHOTTER, *flags, str(bundle)
        )
        images = containerd.images(namespace)
        for app in multi_apps.values():
            assert images[app.reference].digest == app.index.digest
            # Unpacked, so every layer of the host's platform was checked against its diff_id.
            child = app.child(host)
            diff_ids = [layer.diff_id for layer in child.layers]
            assert all(containerd.has_snapshot(namespace, key) for key in chain_ids(diff_ids))
    for app in multi_apps.values():
        for child in app.index.children:
            assert containerd.content("every-all", child.digest) is not None


@pytest.mark.parametrize("kind", KINDS)
def test_docker_loads_the_archive_of_every_platform_as_linux_amd64(
    every_platform: dict[str, Path],
    multi_apps: dict[str, MultiApp],
    dockerd: DockerEngine,
    kind: str,
) -> None:
    app = multi_apps[kind]
    dockerd.remove_all_images()

    dockerd.docker("load", "--input", str(target_of(every_platform, "archive", app)))

    inspected = dockerd.docker("image", "inspect", app.reference).stdout
    (image,) = json.loads(inspected)
    assert (image["Id"], image["Architecture"]) == (app.child("amd64").config_digest, "amd64")


@pytest.mark.parametrize("output", ["bundle", "layout"])
def test_one_platform_of_an_index_arrives_as_that_platforms_manifest(
    multi_apps: dict[str, MultiApp], bulkpull_command: list[str], tmp_path: Path, output: str
) -> None:
    listing = tmp_path / "images.txt"
    listing.write_text("".join(f"{app.reference}\n" for app in multi_apps.values()))
    target = tmp_path / ("one.tar" if output == "bundle" else "layout")
    flag = "--bundle" if output == "bundle" else "--oci-layout"

    args = [str(listing), "--plain-http", "--platform", "linux/arm/v7", flag, str(target)]
    bulkpull(bulkpull_command, *args)

    for app in multi_apps.values():
        assert entry_for(target, app.reference)["digest"] == app.child("arm", "v7").digest
    assert f"ok      {target}:" in bulkpull(bulkpull_command, "verify", str(target))


def test_an_amd64_only_image_asked_for_arm64_is_refused_and_all_takes_it(
    registry: Registry, bulkpull_command: list[str], tmp_path: Path
) -> None:
    image = imagefactory.make_image([imagefactory.random_layer(8192)], label="amd64-only")
    reference = push_over_api(registry, "only/amd64", "1", image)
    listing = tmp_path / "images.txt"
    listing.write_text(f"{reference}\n")
    since = registry.log_offset()

    refused = run(
        [*bulkpull_command, str(listing), "--plain-http", "--platform", "linux/arm64",
         "--out-dir", str(tmp_path / "arm64")],
        check=False,
    )  # fmt: skip
    fetched = [request.blob for request in registry.blob_downloads(since)]
    taken = bulkpull(
        bulkpull_command, str(listing), "--plain-http", "--platform", "all",
        "--out-dir", str(tmp_path / "all"),
    )  # fmt: skip

    said = (refused.stdout + refused.stderr).decode()
    assert refused.returncode == 1
    assert f"{reference} is linux/amd64 only; asked for linux/arm64" in said
    assert not list((tmp_path / "arm64").glob("*.tar"))
    assert fetched == [image.config_digest]  # no layer: the config alone decided
    assert "pulled" in taken
    archive = tmp_path / "all" / archive_name(reference)
    assert entry_for(archive, reference)["digest"] == image.digest


# --------------------------------------------------------------------------------------------
# bulkpull verify on what bulkpull and other tools write


def test_verify_passes_a_layout_and_names_a_flipped_byte(
    every_platform: dict[str, Path],
    multi_apps: dict[str, MultiApp],
    bulkpull_command: list[str],
    tmp_path: Path,
) -> None:
    layout = tmp_path / "layout"
    shutil.copytree(every_platform["layout"], layout)
    layer = multi_apps["oci"].child("arm64").layers[1].digest
    path = layout / blob_path(layer)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    good = bulkpull(bulkpull_command, "verify", str(every_platform["layout"]))
    bad = run([*bulkpull_command, "verify", str(layout)], check=False)

    assert f"ok      {every_platform['layout']}:" in good
    assert bad.returncode == 1
    assert f"FAILED  {layout}: {blob_path(layer)}: content hashes to" in bad.stdout.decode()


def test_verify_passes_skopeos_docker_archive(
    pushed_images: PushedImages, bulkpull_command: list[str], tmp_path: Path
) -> None:
    checked = []
    for pushed in (pushed_images.shared_docker, pushed_images.shared_oci_b):
        archive = tmp_path / f"{pushed.config_digest[7:19]}.tar"
        run(
            [
                "skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
                f"docker://{pushed.reference}", f"docker-archive:{archive}:{pushed.reference}",
            ]
        )  # fmt: skip
        with tarfile.open(archive) as tar:
            names = tar.getnames()
        # skopeo's own layout: the config under its digest, layers under their diff_ids.
        assert f"{pushed.config_digest[7:]}.json" in names
        assert all(f"{diff_id[7:]}.tar" in names for diff_id in pushed.diff_ids)
        checked.append(str(archive))

    said = bulkpull(bulkpull_command, "verify", *checked)

    assert said.count("ok      ") == 2, said


def test_verify_passes_the_engines_docker_save(
    pushed_images: PushedImages,
    bulkpull_command: list[str],
    dockerd: DockerEngine,
    tmp_path: Path,
) -> None:
    # A layer two images hold at different depths: docker save writes it once and links the
    # second place to the first.
    deeper, shallower = pushed_images.shared_oci_b, pushed_images.pinned
    listing = tmp_path / "images.txt"
    listing.write_text(f"{deeper.reference}\n{shallower.by_digest}\n")
    bulkpull(bulkpull_command, str(listing), "--plain-http", "--bundle", str(tmp_path / "in.tar"))
    dockerd.remove_all_images()
    dockerd.docker("load", "--input", str(tmp_path / "in.tar"))
    saved = tmp_path / "saved.tar"
    by_digest = f"{shallower.repository}:sha256-{shallower.manifest_digest[7:]}"

    dockerd.docker("save", "--output", str(saved), deeper.reference, by_digest)

    with tarfile.open(saved) as tar:
        members = tar.getmembers()
    assert "repositories" in [m.name for m in members]
    assert any(m.name.endswith("/layer.tar") and m.issym() for m in members)
    said = bulkpull(bulkpull_command, "verify", str(saved))
    assert f"ok      {saved}:" in said, said


def test_verify_checks_a_lock_against_what_arrived(
    multi_apps: dict[str, MultiApp],
    pushed_images: PushedImages,
    bulkpull_command: list[str],
    tmp_path: Path,
) -> None:
    app, single = multi_apps["oci"], pushed_images.shared_oci_a
    listing = tmp_path / "images.txt"
    listing.write_text(f"{app.reference}\n{single.reference}\n")
    lock = tmp_path / "site.lock"
    bundle = tmp_path / "bundle.tar"
    two = ["--platform", "linux/arm64", "--platform", "linux/amd64"]
    bulkpull(bulkpull_command, str(listing), "--plain-http", *two, "--dry-run", "--lock", f"{lock}")
    bulkpull(bulkpull_command, str(lock), "--plain-http", "--bundle", str(bundle))
    other = app.child("arm", "v7").digest
    edited = tmp_path / "edited.lock"
    text = lock.read_text().replace(single.manifest_digest, other)
    absent = f"{pushed_images.registry.host}/absent/app:1"
    edited.write_text(text + f"{absent}@{other}\n")

    matched = bulkpull(bulkpull_command, "verify", "--lock", str(lock), str(bundle))
    mismatched = run([*bulkpull_command, "verify", "--lock", str(edited), str(bundle)], check=False)

    assert f"ok      {app.reference}@{app.index.digest} in {bundle}" in matched
    assert f"ok      {single.reference}@{single.manifest_digest} in {bundle}" in matched
    said = mismatched.stdout.decode()
    assert mismatched.returncode == 1
    mismatch = f"is {single.manifest_digest}; the lock pins {other}"
    assert f"FAILED  {single.reference} in {bundle}: {mismatch}" in said
    assert f"FAILED  {absent}: not in {bundle}" in said
