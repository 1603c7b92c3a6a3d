"""``--bundle NAME.tar --split 10MiB`` against a real registry, over a bundle of about 50 MiB.

The pull runs as a user runs it (the CLI), while the test samples the disk blocks the output
directory takes: the volumes are written as the run goes, so the disk never holds much more
than the bundle once. The volumes pass ``sha256sum -c`` with their list; ``cat`` joins them into
the very bundle an unsplit run writes, which ``docker load``, ``podman load`` and
``ctr images import`` take; ``bulkpull push`` sends the images from the volumes themselves into
a second registry with their digests; ``bulkpull verify`` names a volume with a flipped byte, and
one that is missing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import imagefactory
from support.loaders import Containerd, make_podman
from support.services import DockerEngine, Registry, child_env, run, start_registry
from support.testimages import check_pushed, push_over_api

pytestmark = pytest.mark.real

MiB = 1024 * 1024
VOLUME = 10 * MiB
IMAGES = 5


@dataclass(frozen=True)
class Split:
    """One split pull and one plain pull of the same list, and what the disk held meanwhile."""

    images: dict[str, imagefactory.Image]
    bundle: Path
    plain: Path
    peak_disk: int
    output: str

    @property
    def directory(self) -> Path:
        return self.bundle.parent

    @property
    def volumes(self) -> list[Path]:
        return sorted(self.directory.glob(self.bundle.name + ".0*"))

    def joined(self, target: Path) -> Path:
        with target.open("wb") as out:
            for volume in self.volumes:
                out.write(volume.read_bytes())
        return target


def disk_used(directory: Path) -> int:
    """The bytes of disk the files in ``directory`` take now (allocated blocks)."""
    used = 0
    for entry in os.scandir(directory):
        try:
            used += entry.stat(follow_symlinks=False).st_blocks * 512
        except FileNotFoundError:
            continue  # renamed while looked at: counted under its new name
    return used


def pull_sampling_disk(command: list[str], directory: Path) -> tuple[str, int]:
    """Run a pull while sampling the disk ``directory`` takes; its output, and the peak."""
    directory.mkdir(parents=True)
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_env()
    ) as process:
        peak = 0
        while process.poll() is None:
            peak = max(peak, disk_used(directory))
            time.sleep(0.005)
        output = process.stdout.read().decode() if process.stdout else ""
    assert process.returncode == 0, output
    return output, max(peak, disk_used(directory))


@pytest.fixture(scope="module")
def split(
    registry: Registry, bulkpull_command: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Split:
    """Five images of a shared 10 MiB base and 8 MiB of their own (about 50 MiB together),
    pulled as a bundle in 10 MiB volumes and as a plain bundle."""
    workdir = tmp_path_factory.mktemp("split")
    base = imagefactory.random_layer(10 * MiB)
    images = {}
    for number in range(IMAGES):
        layer = imagefactory.random_layer(8 * MiB, name=f"own-{number}.bin")
        image = imagefactory.make_image([base, layer], label=f"split-{number}")
        images[push_over_api(registry, f"split/app{number}", "1", image)] = image
    listing = workdir / "images.txt"
    listing.write_text("".join(f"{reference}\n" for reference in images))
    bundle, plain = workdir / "out" / "offline.tar", workdir / "plain" / "offline.tar"
    pull = [*bulkpull_command, str(listing), "--plain-http"]
    output, peak = pull_sampling_disk(
        [*pull, "--bundle", str(bundle), "--split", "10MiB"], bundle.parent
    )
    run([*pull, "--bundle", str(plain)], timeout=300)
    return Split(images, bundle, plain, peak, output)


def test_every_volume_is_at_most_the_size_and_the_disk_never_holds_the_bundle_twice(
    split: Split,
) -> None:
    size = split.plain.stat().st_size
    volumes = split.volumes

    print(f"\nbundle {size} bytes in {len(volumes)} volumes; disk peak {split.peak_disk} bytes")
    assert 45 * MiB < size < 60 * MiB
    assert len(volumes) == -(-size // VOLUME)
    assert all(volume.stat().st_size == VOLUME for volume in volumes[:-1])
    assert 0 < volumes[-1].stat().st_size <= VOLUME
    assert split.peak_disk <= 1.1 * size
    assert sorted(split.directory.iterdir()) == [
        *volumes,
        split.bundle.with_name("offline.tar.sha256"),
    ]
    assert f"bundle in {len(volumes)} volumes: {volumes[0]} … {volumes[-1].name}" in " ".join(
        split.output.split()
    )


def test_sha256sum_checks_the_volumes_against_their_list(split: Split) -> None:
    checked = subprocess.run(
        ["sha256sum", "-c", "offline.tar.sha256"], cwd=split.directory, capture_output=True
    )

    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.decode().splitlines() == [f"{v.name}: OK" for v in split.volumes]


def test_cat_of_the_volumes_is_the_unsplit_bundle(split: Split, tmp_path: Path) -> None:
    joined = split.joined(tmp_path / "joined.tar")

    assert digest_of(joined) == digest_of(split.plain)


def digest_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def test_docker_loads_the_joined_volumes(
    split: Split, dockerd: DockerEngine, tmp_path: Path
) -> None:
    dockerd.remove_all_images()

    dockerd.docker("load", "--input", str(split.joined(tmp_path / "joined.tar")))

    for reference, image in split.images.items():
        found = dockerd.docker("image", "inspect", "--format", "{{.Id}}", reference).stdout
        assert found.decode().strip() == image.config_digest


def test_podman_loads_the_joined_volumes(split: Split, tmp_path: Path) -> None:
    podman = make_podman(tmp_path / "podman")
    try:
        podman.podman("load", "--input", str(split.joined(tmp_path / "joined.tar")))
        names = podman.names()
    finally:
        podman.close()

    for reference, image in split.images.items():
        assert names[reference] == image.config_digest


def test_ctr_imports_the_joined_volumes(
    split: Split, containerd: Containerd, tmp_path: Path
) -> None:
    joined = split.joined(tmp_path / "joined.tar")

    containerd.ctr("split", "images", "import", "--snapshotter", "native", str(joined))

    found = containerd.images("split")
    for reference, image in split.images.items():
        assert found[reference].digest == image.digest


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Registry]:
    with start_registry(tmp_path / "target") as running:
        yield running


def test_push_from_the_volumes_arrives_with_the_same_digests(
    split: Split, target: Registry, bulkpull_command: list[str]
) -> None:
    first = split.volumes[0]

    run(
        [*bulkpull_command, "push", str(first), "--to", f"{target.host}/mirror", "--plain-http"],
        timeout=300,
    )

    for reference, image in split.images.items():
        repository = reference.split("/", 1)[1]
        check_pushed(f"{target.host}/mirror/{repository}", image.digest)


@pytest.fixture
def copied(split: Split, tmp_path: Path) -> Path:
    """The volumes and their list in a directory of their own, to damage."""
    directory = tmp_path / "copy"
    shutil.copytree(split.directory, directory)
    return directory


def test_verify_names_the_volume_with_a_flipped_byte_and_the_one_missing(
    split: Split, copied: Path, bulkpull_command: list[str]
) -> None:
    second = copied / "offline.tar.002"
    data = bytearray(second.read_bytes())
    data[len(data) // 2] ^= 0x01
    second.write_bytes(bytes(data))
    listed = copied / "offline.tar.sha256"

    damaged = run([*bulkpull_command, "verify", str(listed)], check=False)
    (copied / "offline.tar.003").unlink()
    missing = run([*bulkpull_command, "verify", str(copied / "offline.tar")], check=False)
    good = run([*bulkpull_command, "verify", str(split.volumes[0])])

    said = " ".join(damaged.stdout.decode().split())
    assert damaged.returncode == 1
    assert f"FAILED {listed}: offline.tar.002: sha256 " in said
    assert "does not match offline.tar.sha256" in said
    assert "offline.tar.001:" not in said
    assert missing.returncode == 1
    assert "offline.tar.003 is missing" in missing.stdout.decode()
    assert f"ok      {split.volumes[0]}: " in good.stdout.decode()
