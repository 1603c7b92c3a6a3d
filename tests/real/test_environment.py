"""The real components work on their own, so a failure elsewhere in this directory is bulkpull's.

The registry serves the pushed images byte for byte, and the Docker engine loads and runs an
archive that skopeo wrote.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from support import imagefactory
from support.services import DockerEngine, run
from support.testimages import BUSYBOX_GREETING, PushedImages

pytestmark = pytest.mark.real

ACCEPT = ", ".join(
    [
        imagefactory.OCI_MANIFEST,
        imagefactory.OCI_INDEX,
        imagefactory.DOCKER_MANIFEST,
        imagefactory.DOCKER_LIST,
    ]
)


def test_registry_serves_the_pushed_manifests(pushed_images: PushedImages) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for pushed in pushed_images.all:
        top = pushed.index if pushed.index is not None else pushed.image
        name, _, tag = pushed.reference.partition("/")[2].rpartition(":")
        url = f"{pushed_images.registry.url}/v2/{name}/manifests/{tag}"
        request = urllib.request.Request(url, headers={"Accept": ACCEPT})
        with opener.open(request, timeout=10) as response:
            body = response.read()
            assert response.headers["Content-Type"] == top.media_type, url
            assert response.headers["Docker-Content-Digest"] == top.digest, url
        assert body == top.manifest, url


def test_docker_loads_and_runs_an_archive_written_by_skopeo(
    pushed_images: PushedImages, dockerd: DockerEngine, tmp_path: Path
) -> None:
    busybox = pushed_images.busybox
    archive = tmp_path / "busybox.tar"
    local_name = "bulkpull-tests/skopeo-busybox:1"
    run(
        [
            "skopeo",
            "--insecure-policy",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            f"docker://{busybox.reference}",
            f"docker-archive:{archive}:{local_name}",
        ]
    )
    dockerd.docker("load", "--input", str(archive))
    image_id = dockerd.docker("image", "inspect", local_name, "--format", "{{.Id}}")
    assert image_id.stdout.decode().strip() == busybox.config_digest
    ran = dockerd.docker("run", "--rm", "--network", "none", "--pull", "never", local_name)
    assert ran.stdout.decode() == f"{BUSYBOX_GREETING}\n"
