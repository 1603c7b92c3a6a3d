"""``examples/offline-bundle.md`` works as written: its commands, run in order in one shell
directory against two local registries, pull from A, check, push into B, and check B.

Every indented block of the guide is a command. Only three things stand in for the outside
world: the list the guide starts from (``internal-mirror.txt``) names images of registry A,
renamed to ``registry.internal.example`` as the example list does, and signed there with the
key in ``cosign.pub``; and ``registry.internal.example`` is registry B's loopback address
(loopback registries need no ``--plain-http``). ``docker`` talks to the tests' private engine.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.services import DockerEngine, Registry, run, start_registry
from support.testimages import PushedImages, check_pushed
from support.testreferrers import SignedImages, cosign_tag

pytestmark = pytest.mark.real

GUIDE = Path(__file__).resolve().parents[2] / "examples" / "offline-bundle.md"
INTERNAL = "registry.internal.example"


def guide_commands() -> list[str]:
    """The guide's commands in order: every line of an indented block."""
    return [line[4:] for line in GUIDE.read_text().splitlines() if line.startswith("    ")]


def test_the_guide_has_the_whole_trip() -> None:
    commands = guide_commands()
    steps = ["--dry-run --lock", "--verify-key", "verify --lock", "push ", "--registry"]
    positions = [next(i for i, c in enumerate(commands) if step in c) for step in steps]
    assert positions == sorted(positions), commands


@pytest.fixture
def internal(tmp_path: Path) -> Iterator[Registry]:
    with start_registry(tmp_path / "internal") as running:
        yield running


def command_on_path(command: list[str], directory: Path) -> Path:
    """A ``bulkpull`` on a PATH of its own that runs ``command``, as the guide types it."""
    directory.mkdir()
    script = directory / "bulkpull"
    script.write_text(f'#!/bin/sh\nexec {shlex.join(command)} "$@"\n')
    script.chmod(0o755)
    return directory


def test_the_offline_guide_runs_as_written(
    pushed_images: PushedImages,
    signed_images: SignedImages,
    internal: Registry,
    dockerd: DockerEngine,
    bulkpull_command: list[str],
    tmp_path: Path,
) -> None:
    work = tmp_path / "site"
    work.mkdir()
    images = pushed_images
    host = internal.host
    (work / "internal-mirror.txt").write_text(
        f"{images.shared_oci_a.reference}  {host}/base/app\n"
        f"{images.shared_docker.reference}\n"
        f"{images.busybox.reference}  {host}/tools/busybox\n"
        f"{images.multi.reference}\n"
    )
    # The public key the images were signed with, as cosign generate-key-pair writes it.
    (work / "cosign.pub").write_bytes(signed_images.key.public_pem)
    env = dockerd.env | {"HOME": str(tmp_path / "home")}
    env.pop("XDG_STATE_HOME", None)
    bin_dir = command_on_path(bulkpull_command, tmp_path / "bin")
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    since = pushed_images.registry.log_offset()

    for command in guide_commands():
        shell = command.replace(INTERNAL, host)
        script = f"cd {shlex.quote(str(work))} && {shell}"
        result = run(["bash", "-euo", "pipefail", "-c", script], env=env, check=False, timeout=300)
        assert result.returncode == 0, (
            f"$ {shell}\n{result.stdout.decode(errors='replace')}"
            f"{result.stderr.decode(errors='replace')}"
        )

    check_pushed(f"{host}/base/app:1.0", images.shared_oci_a.image.digest)
    check_pushed(f"{host}/mirror/bp/shared-docker:v2", images.shared_docker.image.digest)
    check_pushed(f"{host}/tools/busybox:1", images.busybox.image.digest)
    assert images.multi.index is not None
    check_pushed(f"{host}/mirror/bp/multi:2024", images.multi.index.digest)
    # The signatures crossed with the images, under the source's digests.
    for pushed, repository in (
        (images.busybox, "tools/busybox"),
        (images.multi, "mirror/bp/multi"),
    ):
        attached = signed_images.attached[pushed.reference]
        signature = f"{host}/{repository}:{cosign_tag(attached.subject, 'sig')}"
        check_pushed(signature, attached.signature.digest)
    writes = [
        r for r in pushed_images.registry.requests(since) if r.method in ("POST", "PATCH", "PUT")
    ]
    assert writes == []
