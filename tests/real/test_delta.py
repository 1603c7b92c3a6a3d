"""Delta bundles and layouts between real registries: next month's list carries only what is new.

Registry A holds list 1 (two images, one of them over a base layer) and list 2's new images:
two that share list 1's base layer and one of list 1's images under another tag. List 1 is
bundled, pushed into registry B and locked. List 2 (list 1 and the new images) pulled with
``--have`` the lock (or the report) leaves every blob of list 1 out, blob by blob, and asks A
for none of them; pushed into B it completes list 2 there under the right digests (the shared
base layer is mounted from list 1's repository); pushed into an empty registry C it fails
before any manifest is written, naming the missing blobs.
"""

from __future__ import annotations

import json
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import imagefactory as f
from support.services import Registry, run, start_registry
from support.testimages import push_over_api

pytestmark = pytest.mark.real

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
MEDIA_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


@dataclass(frozen=True)
class World:
    """Registries A (source), B (list 1 pushed) and C (empty), and what A serves."""

    a: Registry
    b: Registry
    c: Registry
    workdir: Path
    list1: dict[str, f.Image]
    list2: dict[str, f.Image]

    @property
    def old_blobs(self) -> set[str]:
        return {digest for image in self.list1.values() for digest in image.blobs}

    @property
    def new_blobs(self) -> set[str]:
        return {d for image in self.list2.values() for d in image.blobs} - self.old_blobs


def cli(command: list[str], *args: str) -> tuple[int, str]:
    result = run([*command, *args], check=False, timeout=300)
    return result.returncode, (result.stdout + result.stderr).decode(errors="replace")


def write_list(path: Path, registry: Registry, names: list[str]) -> Path:
    path.write_text("".join(f"{registry.host}/{name}\n" for name in names))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, bulkpull_command: list[str]) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("delta")
    base = f.random_layer(200_000, name="delta/base.bin")
    list1 = {
        "bp/app:1": f.make_image([base, f.random_layer(50_000)], label="app-1"),
        "bp/tool:1": f.make_image([f.random_layer(40_000)], label="tool-1"),
    }
    new = {
        "bp/web:2": f.make_image([base, f.random_layer(60_000)], label="web-2"),
        "bp/api:2": f.make_image([base, f.random_layer(70_000)], label="api-2", docker_types=True),
        "bp/app:stable": list1["bp/app:1"],  # retagged
    }
    with (
        start_registry(workdir / "a") as a,
        start_registry(workdir / "b") as b,
        start_registry(workdir / "c") as c,
    ):
        for name, image in {**list1, **new}.items():
            repository, tag = name.split(":")
            push_over_api(a, repository, tag, image)
        found = World(a, b, c, workdir, list1, {**list1, **new})
        listing = write_list(workdir / "list1.txt", a, list(list1))
        code, output = cli(
            bulkpull_command, str(listing), "--plain-http", "--bundle", str(workdir / "one.tar"),
            "--lock", str(workdir / "one.lock"), "--report", str(workdir / "one.json"),
        )  # fmt: skip
        assert code == 0, output
        code, output = cli(
            bulkpull_command, "push", str(workdir / "one.tar"), "--to", f"{b.host}/mirror",
            "--plain-http",
        )  # fmt: skip
        assert code == 0, output
        yield found


def tar_blobs(archive: Path) -> set[str]:
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    return {
        "sha256:" + name.rsplit("/", 1)[1] for name in names if name.startswith("blobs/sha256/")
    }


def served_digest(registry: Registry, repository: str, tag: str) -> str | None:
    request = urllib.request.Request(
        f"{registry.url}/v2/{repository}/manifests/{tag}", method="HEAD",
        headers={"Accept": MEDIA_TYPES},
    )  # fmt: skip
    try:
        with _OPENER.open(request) as response:
            return str(response.headers["Docker-Content-Digest"])
    except urllib.error.HTTPError:
        return None


def pull_delta(world: World, command: list[str], output: list[str], have: Path) -> str:
    """List 2 pulled as a delta against ``have``; A's blob GETs meanwhile must all be new."""
    listing = write_list(world.workdir / "list2.txt", world.a, list(world.list2))
    since = world.a.log_offset()
    code, out = cli(command, str(listing), "--plain-http", *output, "--have", str(have))
    assert code == 0, out
    time.sleep(0.3)  # the registry logs a request just after answering it
    downloaded = {request.blob for request in world.a.blob_downloads(since)}
    assert not downloaded & world.old_blobs, "a blob of list 1 was downloaded"
    assert "delta:" in out
    assert "left out" in out
    return out


def push_delta(world: World, command: list[str], source: Path) -> None:
    """The delta completes list 2 in B; into the empty C it writes no manifest at all."""
    code, out = cli(command, "push", str(source), "--to", f"{world.b.host}/mirror", "--plain-http")
    assert code == 0, out
    for name, image in world.list2.items():
        repository, tag = name.split(":")
        assert served_digest(world.b, f"mirror/{repository}", tag) == image.digest, name
    since = world.c.log_offset()
    code, out = cli(command, "push", str(source), "--to", f"{world.c.host}/mirror", "--plain-http")
    time.sleep(0.3)
    assert code == 1, out
    base = world.list1["bp/app:1"].layers[0].digest
    assert base in out
    assert "the delta expects" in out
    written = [r for r in world.c.requests(since) if r.method == "PUT" and "/manifests/" in r.path]
    assert written == []


def test_a_delta_bundle_against_a_lock_carries_only_what_is_new_and_completes_the_target(
    world: World, bulkpull_command: list[str]
) -> None:
    delta = world.workdir / "delta.tar"
    pull_delta(world, bulkpull_command, ["--bundle", str(delta)], world.workdir / "one.lock")

    held = tar_blobs(delta)
    for digest in world.old_blobs:
        assert digest not in held, digest
    for digest in world.new_blobs:
        assert digest in held, digest
    assert {image.digest for image in world.list2.values()} <= held  # manifests stay in
    code, out = cli(bulkpull_command, "verify", str(delta))
    assert code == 0, out
    assert f"expects {world.list1['bp/app:1'].layers[0].digest}" in out
    push_delta(world, bulkpull_command, delta)


def test_a_delta_layout_against_a_report_carries_only_what_is_new_and_completes_the_target(
    world: World, bulkpull_command: list[str]
) -> None:
    layout = world.workdir / "delta-layout"
    pull_delta(world, bulkpull_command, ["--oci-layout", str(layout)], world.workdir / "one.json")

    held = {"sha256:" + path.name for path in (layout / "blobs" / "sha256").iterdir()}
    assert not held & world.old_blobs
    assert held >= world.new_blobs
    record = json.loads((layout / "bulkpull-delta.json").read_text())
    assert {item["name"] for item in record["images"]} >= {
        f"{world.a.host}/bp/web:2",
        f"{world.a.host}/bp/app:stable",
    }
    push_delta(world, bulkpull_command, layout)


def test_an_inventory_of_the_far_registry_makes_a_delta_that_completes_it(
    world: World, bulkpull_command: list[str]
) -> None:
    inventory = world.workdir / "inventory.json"
    since = world.b.log_offset()
    code, out = cli(
        bulkpull_command, "verify", "--lock", str(world.workdir / "one.lock"),
        "--registry", f"{world.b.host}/mirror", "--plain-http", "--inventory", str(inventory),
    )  # fmt: skip
    time.sleep(0.3)
    assert code == 0, out
    assert world.b.blob_downloads(since) == []
    document = json.loads(inventory.read_text())
    app = next(item for item in document["images"] if item["name"].endswith("/bp/app:1"))
    assert set(app["blobs"]) == set(world.list1["bp/app:1"].blobs)
    delta = world.workdir / "delta-inventory.tar"

    pull_delta(world, bulkpull_command, ["--bundle", str(delta)], inventory)

    assert not tar_blobs(delta) & world.old_blobs
    push_delta(world, bulkpull_command, delta)
