"""Image loaders besides the Docker engine: a private containerd and a private podman store.

``start_containerd`` runs Debian's ``containerd`` as a child of the test session with its root,
state and socket in temporary directories (the CRI plugin and the snapshotters that need
special filesystems are disabled); ``ctr`` talks to it over that unix socket. ``Podman`` runs
``podman`` as root against a store of its own (vfs driver, ``--root``/``--runroot``/``--tmpdir``
in a temporary directory, cgroupfs, no events, no network configuration outside that
directory). Neither touches the machine's own containerd or podman state.

A missing tool, or a loader that cannot run here, skips the test with the reason; under
``CI=true`` it fails instead (see ``services.unavailable``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from support.services import (
    child_env,
    log_tail,
    remove_tree,
    require_tool,
    run,
    run_until_ready,
    unavailable,
)

# Plugins of Debian's containerd 1.6 that a private instance does not need, or that need
# filesystems (btrfs, zfs, device mapper) or directories (/opt/containerd) outside its root.
_DISABLED_CONTAINERD_PLUGINS = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.internal.v1.opt",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
)

SNAPSHOTTER = "native"
"""Plain directory copies: works on any filesystem, and unpacking checks every diff_id."""


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The OCI ChainIDs of a layer stack: the keys containerd's snapshotters commit layers as."""
    chain: list[str] = []
    for diff_id in diff_ids:
        if not chain:
            chain.append(diff_id)
        else:
            text = f"{chain[-1]} {diff_id}".encode()
            chain.append("sha256:" + hashlib.sha256(text).hexdigest())
    return chain


# --------------------------------------------------------------------------------------------
# containerd


@dataclass(frozen=True)
class ContainerdImage:
    """One row of ``ctr images ls``."""

    name: str
    media_type: str
    digest: str


@dataclass(frozen=True)
class Containerd:
    """A private containerd reachable on a unix socket."""

    socket: Path
    root: Path
    log: Path

    def ctr(
        self,
        namespace: str,
        *args: str,
        timeout: float = 120,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``ctr`` in ``namespace`` against this containerd."""
        command = ["ctr", "--address", str(self.socket), "--namespace", namespace, *args]
        return run(command, env=child_env(), timeout=timeout, check=check)

    def images(self, namespace: str) -> dict[str, ContainerdImage]:
        """The images of ``namespace`` by name (``ctr images ls``)."""
        listed = self.ctr(namespace, "images", "ls").stdout.decode().splitlines()
        rows = [line.split() for line in listed[1:] if line.strip()]
        return {row[0]: ContainerdImage(row[0], row[1], row[2]) for row in rows}

    def content(self, namespace: str, digest: str) -> bytes | None:
        """The blob ``digest`` from the content store, or None when it is not there."""
        got = self.ctr(namespace, "content", "get", digest, check=False)
        return got.stdout if got.returncode == 0 else None

    def has_snapshot(self, namespace: str, key: str) -> bool:
        """Whether the snapshotter holds a committed snapshot ``key`` (a layer's ChainID)."""
        args = ("snapshots", "--snapshotter", SNAPSHOTTER, "info", key)
        return self.ctr(namespace, *args, check=False).returncode == 0


def _containerd_config(root: Path, state: Path, socket: Path) -> str:
    disabled = ", ".join(json.dumps(plugin) for plugin in _DISABLED_CONTAINERD_PLUGINS)
    return "\n".join(
        [
            "version = 2",
            f"root = {json.dumps(str(root))}",
            f"state = {json.dumps(str(state))}",
            f"disabled_plugins = [{disabled}]",
            "[grpc]",
            f"  address = {json.dumps(str(socket))}",
            "[ttrpc]",
            f"  address = {json.dumps(str(socket) + '.ttrpc')}",
            "",
        ]
    )


@contextlib.contextmanager
def start_containerd(workdir: Path, *, timeout: float = 30) -> Iterator[Containerd]:
    """Run a private ``containerd`` until the context exits; state goes to ``workdir``.

    The socket and the state directory go to a short directory in /tmp: unix socket paths are
    limited to 107 bytes.
    """
    binary = require_tool("containerd")
    require_tool("ctr")
    if os.geteuid() != 0:
        unavailable("containerd needs root to run a private instance (tests run as non-root)")
    root = workdir / "root"
    root.mkdir(parents=True)
    short = Path(tempfile.mkdtemp(prefix="bp-ctrd-", dir="/tmp"))
    socket = short / "containerd.sock"
    config = workdir / "config.toml"
    config.write_text(_containerd_config(root, short / "state", socket))
    log = workdir / "containerd.log"

    def answers() -> bool:
        probe = ["ctr", "--address", str(socket), "version"]
        return socket.exists() and run(probe, timeout=10, check=False).returncode == 0

    try:
        with run_until_ready(
            [binary, "--config", str(config)], log, answers, timeout=timeout
        ) as up:
            if not up:
                unavailable(
                    f"containerd did not start within {timeout}s; log tail:\n{log_tail(log)}"
                )
            yield Containerd(socket, root, log)
    finally:
        remove_tree(short)
        remove_tree(root)


# --------------------------------------------------------------------------------------------
# podman

# containers.conf for the private store: CNI as the network backend, because netavark keeps
# state in /run/containers/networks whatever the flags say. No network is ever set up. The
# store's own storage.conf, registries.conf and containers.conf keep the machine's out.
_CONTAINERS_CONF = '[network]\nnetwork_backend = "cni"\n'


@dataclass(frozen=True)
class Podman:
    """``podman`` as root against a private vfs store below ``workdir``.

    The run root is a short directory in /tmp: podman refuses run roots longer than 50 bytes.
    ``close`` removes it.
    """

    workdir: Path
    runroot: Path

    @property
    def env(self) -> dict[str, str]:
        return child_env(
            CONTAINERS_CONF=str(self.workdir / "containers.conf"),
            CONTAINERS_REGISTRIES_CONF=str(self.workdir / "registries.conf"),
            CONTAINERS_STORAGE_CONF=str(self.workdir / "storage.conf"),
            TMPDIR=str(self.workdir / "tmp"),
        )

    @property
    def command(self) -> list[str]:
        return [
            "podman",
            "--root", str(self.workdir / "root"),
            "--runroot", str(self.runroot),
            "--tmpdir", str(self.workdir / "libpod"),
            "--network-config-dir", str(self.workdir / "networks"),
            "--storage-driver", "vfs",
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "none",
        ]  # fmt: skip

    def podman(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        """Run podman against this store."""
        return run([*self.command, *args], env=self.env, timeout=timeout, check=check)

    def names(self) -> dict[str, str]:
        """Every name in the store and the image ID (config digest) it points at."""
        listed = self.podman("images", "--format", "json").stdout
        found: dict[str, str] = {}
        for image in json.loads(listed or b"[]"):
            for name in image.get("Names") or []:
                found[name] = "sha256:" + str(image["Id"]).removeprefix("sha256:")
        return found

    def architecture(self, name: str) -> str:
        inspected = self.podman("image", "inspect", "--format", "{{.Architecture}}", name)
        return inspected.stdout.decode().strip()

    def close(self) -> None:
        remove_tree(self.runroot)


def tool_version(*command: str) -> tuple[int, ...]:
    """The first ``X.Y[.Z]`` in the output of ``command`` (such as ``skopeo --version``)."""
    output = run(list(command)).stdout.decode()
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", output)
    if match is None:
        raise AssertionError(f"no version in the output of {' '.join(command)}: {output!r}")
    return tuple(int(part) for part in match.groups() if part is not None)


def make_podman(workdir: Path) -> Podman:
    """A podman with a private store in ``workdir``, checked to work; else skip (fail in CI)."""
    require_tool("podman")
    if os.geteuid() != 0:
        unavailable("podman runs here as root only (rootless needs subuids and a user session)")
    workdir.mkdir(parents=True, exist_ok=True)
    for directory in ("tmp", "networks"):
        (workdir / directory).mkdir(exist_ok=True)
    (workdir / "containers.conf").write_text(_CONTAINERS_CONF)
    (workdir / "registries.conf").write_text("unqualified-search-registries = []\n")
    podman = Podman(workdir, Path(tempfile.mkdtemp(prefix="bp-pod-", dir="/tmp")))
    storage = {"driver": "vfs", "graphroot": str(workdir / "root"), "runroot": str(podman.runroot)}
    lines = [f"{key} = {json.dumps(value)}" for key, value in storage.items()]
    (workdir / "storage.conf").write_text("[storage]\n" + "\n".join(lines) + "\n")
    probe = podman.podman("info", "--format", "{{.Store.GraphDriverName}}", check=False)
    if probe.returncode != 0 or probe.stdout.decode().strip() != "vfs":
        podman.close()
        unavailable(
            "podman cannot use a private vfs store here: "
            f"{(probe.stdout + probe.stderr).decode(errors='replace').strip()}"
        )
    return podman
