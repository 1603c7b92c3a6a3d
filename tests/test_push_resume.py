"""A push killed part-way through a large layer resumes it in the next run.

``bulkpull push`` runs as a real process against the fake registry, whose uploads keep what a
broken ``PATCH`` brought, as the distribution spec lets registries do. It is killed with SIGKILL
once the registry holds 40 % of a 512 MiB layer; the rerun finds the upload's location in the
state directory, asks the registry where it stands and sends the rest. What the two runs sent
twice is printed and must stay under a fifth of the layer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path

from support.fakeregistry import FakeRegistry, Start
from support.fakeupload import FakeUploads

LAYER_SIZE = 512 * 1024 * 1024
KILL_AT = 0.4
WRITE_CHUNK = 4 * 1024 * 1024


def big_layout(directory: Path) -> tuple[str, str]:
    """A layout of one image whose layer is ``LAYER_SIZE`` random bytes, written in chunks
    (never whole in memory); returns the layer's and the manifest's digests."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    hasher = hashlib.sha256()
    staging = blobs / "layer.partial"
    with staging.open("wb") as out:
        for _ in range(LAYER_SIZE // WRITE_CHUNK):
            data = os.urandom(WRITE_CHUNK)
            hasher.update(data)
            out.write(data)
    layer = "sha256:" + hasher.hexdigest()
    staging.rename(blobs / hasher.hexdigest())
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"diff_ids": []}})
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": _put(blobs, config.encode(), "application/vnd.oci.image.config.v1+json"),
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer,
                    "size": LAYER_SIZE,
                }
            ],
        }
    ).encode()
    descriptor = _put(blobs, manifest, "application/vnd.oci.image.manifest.v1+json")
    descriptor["annotations"] = {"org.opencontainers.image.ref.name": "docker.io/big/layer:1"}
    (directory / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (directory / "index.json").write_text(
        json.dumps({"schemaVersion": 2, "manifests": [descriptor]})
    )
    return layer, str(descriptor["digest"])


def _put(blobs: Path, data: bytes, media_type: str) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


async def push(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bulkpull",
        "push",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_a_push_killed_at_40_percent_of_a_large_layer_resumes_it(
    start: Start, tmp_path: Path
) -> None:
    layer, manifest = big_layout(tmp_path / "layout")
    uploads = FakeUploads(FakeRegistry(), tmp_path / "registry")
    host = await start(uploads.app())
    args: tuple[str, ...] = (str(tmp_path / "layout"), "--to", host, "--plain-http")
    args += ("--state-dir", str(tmp_path / "state"), "--retry-delay", "0")

    first = await push(*args)
    while uploads.received_by_method["PATCH"] < KILL_AT * LAYER_SIZE:
        assert first.returncode is None, "the push ended before it was killed"
        await asyncio.sleep(0.005)
    first.kill()
    await first.communicate()
    held_at_kill = uploads.received
    second = await push(*args)
    out, err = await second.communicate()

    assert second.returncode == 0, (out + err).decode()
    assert uploads.holds("big/layer", layer)
    assert uploads.registry.manifests[("big/layer", "1")][0] is not None
    assert uploads.registry.manifests[("big/layer", manifest)]
    twice = (
        uploads.received - LAYER_SIZE - sum(uploads.sizes[d] for d in uploads.sizes if d != layer)
    )
    share = twice / LAYER_SIZE
    print(
        f"\nkilled with {held_at_kill / 2**20:.1f} MiB of the {LAYER_SIZE / 2**20:.0f} MiB layer "
        f"held; bytes uploaded twice: {twice} ({share:.2%} of the layer)"
    )
    assert share < 0.2
