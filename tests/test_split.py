"""A bundle split into volumes (``--split``): volumes of at most the size asked for, written as
the run goes, that ``cat`` joins into the very bundle an unsplit run writes, with a sha256 list
``sha256sum -c`` reads; read back by push, verify and a rerun without being joined."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from support import imagefactory as f
from support.fakeregistry import FakeRegistry, Start

import bulkpull
from bulkpull import Destination, PullOptions

MiB = 1024 * 1024


@dataclasses.dataclass
class Served:
    registry: FakeRegistry
    host: str

    def names(self) -> list[str]:
        return [f"{self.host}/app/n{number}:1" for number in range(3)]


@pytest.fixture
async def served(start: Start) -> Served:
    """Three images of about 1.5 MiB each, sharing a base layer."""
    registry = FakeRegistry()
    base = f.random_layer(700_000)
    for number in range(3):
        image = f.make_image([base, f.random_layer(900_000 + number)], label=str(number))
        registry.add(f"app/n{number}", "1", image)
    return Served(registry, await start(registry.app()))


def joined(path: Path) -> bytes:
    volumes = sorted(path.parent.glob(path.name + ".0*"))
    return b"".join(volume.read_bytes() for volume in volumes)


async def test_volumes_join_into_the_bundle_an_unsplit_run_writes(
    served: Served, options: PullOptions, tmp_path: Path
) -> None:
    plain, split = tmp_path / "plain" / "b.tar", tmp_path / "split" / "b.tar"

    assert (await bulkpull.pull_images(served.names(), Destination.bundle(plain), options)).ok
    report = await bulkpull.pull_images(
        served.names(), Destination.bundle(split, split=MiB), options
    )

    assert report.ok, report.failed
    volumes = sorted(split.parent.glob("b.tar.0*"))
    assert len(volumes) == -(-plain.stat().st_size // MiB)
    assert all(volume.stat().st_size == MiB for volume in volumes[:-1])
    assert joined(split) == plain.read_bytes()
    assert sorted(p.name for p in split.parent.iterdir()) == [v.name for v in volumes] + [
        "b.tar.sha256"
    ]
