"""The interop matrix: every test image, output form and loader.

The CLI pulls the list of test images from the real registry for two platforms (the host's
first) into each output form: per-image archives (``--out-dir``), one ``--bundle`` and an
``--oci-layout`` directory; the multi-platform image is also pulled alone for the host's
platform only, into each form. Each cell then hands the result to one loader and asserts the
name the image loads under and its image ID (the config digest):

- ``docker load`` into the session's Docker 20.10 engine (graphdriver store), from empty;
- ``skopeo inspect`` and ``skopeo copy`` through ``docker-archive:``, ``oci-archive:`` and
  ``oci:DIR:REF`` (copies go to the loopback registry; OCI copies must keep the digests);
- ``ctr images import`` into a containerd of the session's own, unpacked with the native
  snapshotter, which checks every layer against its diff_id;
- ``podman load`` (``podman pull oci:DIR:REF`` or ``oci-archive:FILE:REF`` where load cannot
  choose an image) into a private vfs store.

Four of the images (OCI and Docker manifests, and the index) have a cosign signature, an SBOM
attestation and an oras SBOM in the registry (``signed_images``), so the bundles and layouts
carry referrer entries in ``index.json`` beside the images, which every loader must pass by.

Each output is pulled once; a bundle is loaded once per loader and mode and serves all its
cells, a per-image archive gets a fresh store so that every layer file is read. Cells that
cannot exist are recorded as ``n/a`` with the reason, known limitations of the installed loader
versions as strict xfails; the matrix is printed at the end of the session and written to
``$BULKPULL_MATRIX_FILE`` if set.
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.archives import normalize_tagged, sha256
from support.imagefactory import Image, Index
from support.loaders import (
    SNAPSHOTTER,
    Containerd,
    ContainerdImage,
    Podman,
    chain_ids,
    make_podman,
    tool_version,
)
from support.matrix import INTEROP, OUTPUTS, ROWS, CellRecorder
from support.services import DockerEngine, Registry, run
from support.testimages import BUSYBOX_GREETING, PushedImage, PushedImages, host_arch
from support.testreferrers import SignedImages

pytestmark = pytest.mark.real

RENAMED = "renamed/oci-b:copy"
OTHER = "multiplatform-other"
ONE = "multiplatform-one"
TWO_PLATFORMS, ONE_PLATFORM = "two", "one"
"""The two sets of pulls: the whole list for two platforms; the index alone for one."""

NOT_APPLICABLE: dict[tuple[str, str, str], str] = {
    **{
        (row, "layout", "docker"): (
            "docker load (Docker 20.10, graphdriver store) reads only a tar with manifest.json; "
            "an OCI layout directory has none"
        )
        for row in ROWS
    },
    (OTHER, "bundle", "docker"): (
        "docker load can tag one image per name: a bundle gives it the first --platform "
        "(documented); the other platform is for containerd, podman and skopeo"
    ),
}
for _key, _reason in NOT_APPLICABLE.items():
    INTEROP.not_applicable(*_key, _reason)


# --------------------------------------------------------------------------------------------
# The images of the matrix and the pulls


@dataclass(frozen=True)
class Row:
    """One image of the matrix: its list line and what every loader must end up with."""

    key: str
    line: str
    name: str
    """The full normalized name it loads under."""
    image: Image
    """The single-platform image a loader ends up with (one child of ``index``)."""
    index: Index | None = None
    pulls: str = TWO_PLATFORMS
    """Which set of pulls holds it."""

    @property
    def tag(self) -> str:
        return self.name.rpartition(":")[2]

    @property
    def repository(self) -> str:
        return self.name.rpartition(":")[0]

    @property
    def arch(self) -> str:
        return self.image.platform[1]

    @property
    def archive_name(self) -> str:
        """The per-image archive's file name, by the README's rule."""
        familiar = self.name
        for prefix in ("docker.io/library/", "docker.io/"):
            if familiar.startswith(prefix):
                familiar = familiar.removeprefix(prefix)
                break
        several = self.index is not None and self.pulls == TWO_PLATFORMS
        suffix = f"_linux_{self.arch}" if several else ""
        return re.sub(r"[^A-Za-z0-9._-]", "_", familiar) + suffix + ".tar"


def make_rows(images: PushedImages, host: str, other: str) -> dict[str, Row]:
    multi = images.multi
    assert multi.index is not None
    children = {child.platform[1]: child for child in multi.index.images}
    pinned = images.pinned
    pinned_hex = pinned.manifest_digest.removeprefix("sha256:")
    renamed = f"{images.shared_oci_b.reference} {RENAMED}"

    def tagged(key: str, pushed: PushedImage) -> Row:
        return Row(key, pushed.reference, pushed.reference, pushed.image)

    def indexed(key: str, arch: str, pulls: str = TWO_PLATFORMS) -> Row:
        assert multi.index is not None
        return Row(key, multi.reference, multi.reference, children[arch], multi.index, pulls)

    by_digest = f"{pinned.repository}:sha256-{pinned_hex}"
    rows = [
        tagged("oci", images.shared_oci_a),
        tagged("docker-types", images.shared_docker),
        indexed("multiplatform", host),
        indexed(OTHER, other),
        indexed(ONE, host, ONE_PLATFORM),
        Row("renamed", renamed, RENAMED, images.shared_oci_b.image),
        Row("by-digest", pinned.by_digest, by_digest, pinned.image),
        tagged("busybox", images.busybox),
    ]
    found = {
        row.key: Row(row.key, row.line, normalize_tagged(row.name), row.image, row.index, row.pulls)
        for row in rows
    }
    assert tuple(found) == ROWS
    return found


@dataclass(frozen=True)
class Pulled:
    """One CLI run over a list into one output form."""

    target: Path
    """The output directory, bundle file or layout directory."""
    argv: list[str]
    result: subprocess.CompletedProcess[bytes]

    def require(self) -> Path:
        if self.result.returncode != 0:
            pytest.fail(
                f"$ {' '.join(self.argv)}\nexit code {self.result.returncode}\n"
                f"{(self.result.stdout + self.result.stderr).decode(errors='replace')}",
                pytrace=False,
            )
        return self.target


@dataclass(frozen=True)
class Loaded:
    """What one load made of an input: the names it reports and their image IDs."""

    command: str
    transcript: str
    ok: bool
    images: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Name → (image ID, architecture)."""

    def require(self) -> dict[str, tuple[str, str]]:
        if not self.ok:
            pytest.fail(f"$ {self.command}\n{self.transcript}", pytrace=False)
        return self.images


@dataclass(frozen=True)
class Imported:
    """One ``ctr images import`` into its own namespace."""

    namespace: str
    command: str
    transcript: str
    ok: bool
    images: dict[str, ContainerdImage] = field(default_factory=dict)

    def require(self) -> dict[str, ContainerdImage]:
        if not self.ok:
            pytest.fail(f"$ {self.command}\n{self.transcript}", pytrace=False)
        return self.images


class LoaderLimitation(Exception):
    """A known limitation of the installed loader's version (not of bulkpull) stops the cell."""


@dataclass
class Interop:
    """The pulls of this module and what loaders made of them, each computed once."""

    rows: dict[str, Row]
    pulls: dict[tuple[str, str], Pulled]
    """By (set of pulls, output form)."""
    registry: Registry
    workdir: Path
    host: str
    other: str
    docker_loads: dict[Path, Loaded] = field(default_factory=dict)
    ctr_imports: dict[str, Imported] = field(default_factory=dict)
    podman_loads: dict[str, Loaded] = field(default_factory=dict)
    podman_stores: list[Podman] = field(default_factory=list)
    versions: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def names(self, row: Row) -> set[str]:
        """The names of every image pulled together with ``row``."""
        return {other.name for other in self.rows.values() if other.pulls == row.pulls}

    def target(self, row: Row, output: str) -> Path:
        """What ``output`` wrote for ``row``: its archive, or the bundle or layout holding it."""
        target = self.pulls[(row.pulls, output)].require()
        if output != "archive":
            return target
        path = target / row.archive_name
        if not path.is_file():
            present = sorted(p.name for p in target.glob("*.tar"))
            pytest.fail(f"no archive {row.archive_name} in {target}; present: {present}")
        return path

    def top(self, row: Row, output: str) -> str:
        """The digest ``output``'s index.json names ``row`` by, which must be one the registry
        serves: the platform's manifest wherever one platform of the index went (a per-image
        archive, or the one-platform pulls), else the registry's index, as every platform in
        it was pulled.
        """
        if row.index is None or output == "archive" or row.pulls == ONE_PLATFORM:
            return row.image.digest
        return row.index.digest

    def layout_tar(self, row: Row) -> Path:
        """The layout directory as one tar (how a layout is handed to ``ctr images import``)."""
        layout = self.target(row, "layout")
        path = self.workdir / f"layout-{row.pulls}.tar"
        if not path.exists():
            with tarfile.open(path, "w") as tar:
                for member in sorted(layout.rglob("*")):
                    tar.add(member, arcname=str(member.relative_to(layout)), recursive=False)
        return path

    def version(self, tool: str) -> tuple[int, ...]:
        if tool not in self.versions:
            self.versions[tool] = tool_version(tool, "--version")
        return self.versions[tool]


@pytest.fixture(scope="module")
def interop(
    pushed_images: PushedImages,
    signed_images: SignedImages,
    bulkpull_command: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Interop]:
    host = host_arch()
    other = "arm64" if host == "amd64" else "amd64"
    rows = make_rows(pushed_images, host, other)
    workdir = tmp_path_factory.mktemp("interop")
    # The host's platform first: docker load gets the first platform of a bundle.
    platforms = {
        TWO_PLATFORMS: ["--platform", f"linux/{host}", "--platform", f"linux/{other}"],
        ONE_PLATFORM: ["--platform", f"linux/{host}"],
    }
    pulls = {}
    for pull_set, flags in platforms.items():
        directory = workdir / pull_set
        directory.mkdir()
        lines = [row.line for row in rows.values() if row.pulls == pull_set]
        list_file = directory / "images.txt"
        list_file.write_text("".join(f"{line}\n" for line in dict.fromkeys(lines)))
        targets = {
            "archive": ["--out-dir", str(directory / "archives")],
            "bundle": ["--bundle", str(directory / "bundle" / "interop.tar")],
            "layout": ["--oci-layout", str(directory / "layout")],
        }
        for output, target in targets.items():
            argv = [*bulkpull_command, str(list_file), "--plain-http", *flags, *target]
            result = run(argv, check=False, timeout=300)
            pulls[(pull_set, output)] = Pulled(Path(target[1]), argv, result)
    interop = Interop(rows, pulls, pushed_images.registry, workdir, host, other)
    yield interop
    for podman in interop.podman_stores:
        podman.close()


def cells(loader: str) -> list[Any]:
    """The parameters of ``loader``'s cells, named ``OUTPUT-LOADER-IMAGE``."""
    return [
        pytest.param(output, row, id=f"{output}-{loader}-{row}")
        for output in OUTPUTS
        for row in ROWS
        if (row, output, loader) not in NOT_APPLICABLE
    ]


# containers/image before 5.35 (skopeo 1.19, podman 5.5) skips index.json entries of Docker
# media types when it looks an image up by ref name (oci:DIR:REF, oci-archive:FILE:REF).
DOCKER_TYPES_BY_REF = {"skopeo": (1, 19), "podman": (5, 5)}
DOCKER_TYPES_BY_REF_REASON = (
    "{tool} {version} (containers/image < 5.35) skips index.json entries with Docker media "
    "types when it selects an image by ref name (oci:DIR:REF, oci-archive:FILE:REF): "
    '"no descriptor found for reference"; fixed in containers/image 5.35 (skopeo 1.19, '
    "podman 5.5). bulkpull keeps the registry's manifest, so the entry keeps its media type"
)


def ref_lookup_fails(interop: Interop, tool: str, row: Row, output: str) -> str | None:
    """Why ``tool`` cannot find ``row`` by ref name in ``output`` here, or None if it can."""
    top: Image | Index = row.image
    if row.index is not None and interop.top(row, output) == row.index.digest:
        top = row.index
    version = interop.version(tool)
    if not top.media_type.startswith("application/vnd.docker.") or (
        version >= DOCKER_TYPES_BY_REF[tool]
    ):
        return None
    shown = ".".join(str(part) for part in version)
    return DOCKER_TYPES_BY_REF_REASON.format(tool=tool, version=shown)


def expect_limitation(request: pytest.FixtureRequest, cell: CellRecorder, reason: str) -> None:
    """From here on the running cell is a strict xfail (``LoaderLimitation``) for ``reason``."""
    request.applymarker(pytest.mark.xfail(raises=LoaderLimitation, strict=True, reason=reason))
    cell.expect(LoaderLimitation, reason)


def check_by_ref(result: subprocess.CompletedProcess[bytes], limited: bool, command: str) -> None:
    """Fail on an error; the error of the known limitation raises ``LoaderLimitation``."""
    if result.returncode == 0:
        return
    output = (result.stdout + result.stderr).decode(errors="replace")
    if limited and "no descriptor found for reference" in output:
        raise LoaderLimitation(f"$ {command}\n{output}")
    pytest.fail(f"$ {command}\nexit code {result.returncode}\n{output}", pytrace=False)


# --------------------------------------------------------------------------------------------
# docker load


def docker_load(interop: Interop, engine: DockerEngine, path: Path) -> Loaded:
    """``docker load`` of ``path`` into an empty engine (so that every layer file is read)."""
    if path not in interop.docker_loads:
        engine.remove_all_images()
        loaded = engine.docker("load", "--input", str(path), check=False)
        transcript = (loaded.stdout + loaded.stderr).decode(errors="replace")
        images: dict[str, tuple[str, str]] = {}
        if loaded.returncode == 0:
            for name in re.findall(r"^Loaded image: (\S+)$", loaded.stdout.decode(), re.M):
                inspect = ("image", "inspect", "--format", "{{.Id}} {{.Architecture}}", name)
                image_id, arch = engine.docker(*inspect).stdout.decode().split()
                images[normalize_tagged(name)] = (image_id, arch)
        interop.docker_loads[path] = Loaded(
            f"docker load --input {path}", transcript, loaded.returncode == 0, images
        )
    return interop.docker_loads[path]


@pytest.mark.parametrize(("output", "row_key"), cells("docker"))
def test_docker_load(interop: Interop, dockerd: DockerEngine, output: str, row_key: str) -> None:
    row = interop.rows[row_key]
    with INTEROP.cell((row_key, output, "docker")):
        loaded = docker_load(interop, dockerd, interop.target(row, output)).require()
        # A per-image archive holds one name; a bundle every name of its list.
        assert set(loaded) == ({row.name} if output == "archive" else interop.names(row))
        assert loaded[row.name] == (row.image.config_digest, row.arch)


def test_docker_runs_busybox_from_the_bundle(interop: Interop, dockerd: DockerEngine) -> None:
    row = interop.rows["busybox"]
    with INTEROP.cell("docker run --rm --network none (busybox, from the bundle)"):
        bundle = interop.target(row, "bundle")
        dockerd.remove_all_images()
        dockerd.docker("load", "--input", str(bundle))
        run_args = ("run", "--rm", "--network", "none", "--pull", "never", row.name)
        assert dockerd.docker(*run_args).stdout.decode() == f"{BUSYBOX_GREETING}\n"
        shell = dockerd.docker(*run_args, "/bin/sh", "-c", "echo $((6*7))")
        assert shell.stdout.decode() == "42\n"


# --------------------------------------------------------------------------------------------
# skopeo


def skopeo(
    *args: str, arch: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    override = ["--override-arch", arch] if arch else []
    return run(["skopeo", *override, *args], check=check)


def oci_source(interop: Interop, output: str, row: Row) -> str:
    """The skopeo source for the OCI side of ``output``: the documented ref name selects the
    image in a bundle or layout; a per-image archive holds one image and needs none."""
    target = interop.target(row, output)
    if output == "archive":
        return f"oci-archive:{target}"
    if output == "bundle":
        return f"oci-archive:{target}:{row.name}"
    return f"oci:{target}:{row.name}"


def docker_source(interop: Interop, output: str, row: Row) -> str | None:
    """The skopeo source for the docker-archive side, where ``output`` has one for ``row``."""
    if output == "layout" or (output == "bundle" and row.key == OTHER):
        return None
    return f"docker-archive:{interop.target(row, output)}:{row.name}"


def skopeo_docker_archive(interop: Interop, output: str, row: Row) -> None:
    """Inspect and copy through ``docker-archive:`` (which reads manifest.json)."""
    docker = docker_source(interop, output, row)
    assert docker is not None
    inspected = json.loads(skopeo("inspect", docker).stdout)
    assert inspected["Name"] == row.repository
    # docker-archive describes layers by their uncompressed digests.
    assert inspected["Layers"] == [layer.diff_id for layer in row.image.layers]
    assert sha256(skopeo("inspect", "--config", "--raw", docker).stdout) == row.image.config_digest
    registry = interop.registry.host
    destination = f"docker://{registry}/interop/{output}-{row.key}-docker:{row.tag}"
    skopeo("--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", docker, destination)
    config = skopeo("inspect", "--config", "--raw", "--tls-verify=false", destination).stdout
    assert sha256(config) == row.image.config_digest


@pytest.mark.parametrize(("output", "row_key"), cells("skopeo"))
def test_skopeo_inspect_and_copy(
    interop: Interop, request: pytest.FixtureRequest, output: str, row_key: str
) -> None:
    row = interop.rows[row_key]
    with INTEROP.cell((row_key, output, "skopeo")) as cell:
        if docker_source(interop, output, row) is not None:
            skopeo_docker_archive(interop, output, row)
        else:
            cell.note(
                "docker-archive: not in this output for this image (a bundle's manifest.json "
                "has the first platform only; a layout has no manifest.json)"
            )
        top = interop.top(row, output)
        target = interop.target(row, output)
        if output == "archive":
            # The per-image archive names its entry by tag, too.
            by_tag = f"oci-archive:{target}:{row.tag}"
            limitation = ref_lookup_fails(interop, "skopeo", row, output)
            found = skopeo("inspect", by_tag, check=False)
            if limitation is None:
                check_by_ref(found, False, f"skopeo inspect {by_tag}")
                assert json.loads(found.stdout)["Digest"] == top
            else:
                assert b"no descriptor found for reference" in found.stderr
                cell.note(f"oci-archive:FILE (no ref) works; oci-archive:FILE:TAG: {limitation}")

        # Another platform of an index is chosen the way skopeo users choose it.
        arch = interop.other if row.key == OTHER else None
        source = oci_source(interop, output, row)
        limitation = (
            None if output == "archive" else ref_lookup_fails(interop, "skopeo", row, output)
        )
        if limitation is not None:
            expect_limitation(request, cell, limitation)
        found = skopeo("inspect", source, arch=arch, check=False)
        check_by_ref(found, limitation is not None, f"skopeo inspect {source}")
        inspected = json.loads(found.stdout)
        assert inspected["Digest"] == top
        assert inspected["Architecture"] == row.arch
        assert inspected["Layers"] == [layer.digest for layer in row.image.layers]
        config = skopeo("inspect", "--config", "--raw", source, arch=arch).stdout
        assert sha256(config) == row.image.config_digest
        # Carried to another registry with the digests kept: the manifest, or with --all the
        # whole index, arrives byte for byte.
        registry = interop.registry.host
        destination = f"docker://{registry}/interop/{output}-{row.key}-oci:{row.tag}"
        whole_index = top != row.image.digest and row.key != OTHER
        copy = ["--insecure-policy", "copy", "--quiet", "--preserve-digests"]
        copy += ["--dest-tls-verify=false", *(["--all"] if whole_index else [])]
        skopeo(*copy, source, destination, arch=arch)
        pushed = skopeo("inspect", "--raw", "--tls-verify=false", destination).stdout
        assert sha256(pushed) == (top if whole_index else row.image.digest)


# --------------------------------------------------------------------------------------------
# containerd


def ctr_import(
    interop: Interop, daemon: Containerd, namespace: str, path: Path, *flags: str
) -> Imported:
    """``ctr images import`` of ``path`` into ``namespace`` (once), unpacked."""
    if namespace not in interop.ctr_imports:
        args = ("images", "import", "--snapshotter", SNAPSHOTTER, *flags, str(path))
        imported = daemon.ctr(namespace, *args, check=False)
        ok = imported.returncode == 0
        interop.ctr_imports[namespace] = Imported(
            namespace,
            f"ctr --namespace {namespace} {' '.join(args)}",
            (imported.stdout + imported.stderr).decode(errors="replace"),
            ok,
            daemon.images(namespace) if ok else {},
        )
    return interop.ctr_imports[namespace]


def ctr_manifest(daemon: Containerd, namespace: str, digest: str, arch: str) -> dict[str, Any]:
    """The manifest ``digest`` names in the content store; for an index, ``arch``'s child."""
    raw = daemon.content(namespace, digest)
    assert raw is not None, f"{digest} is not in the content store of {namespace}"
    document: dict[str, Any] = json.loads(raw)
    if "manifests" in document:
        (child,) = [
            entry["digest"]
            for entry in document["manifests"]
            if entry.get("platform", {}).get("architecture") == arch
        ]
        return ctr_manifest(daemon, namespace, child, arch)
    return document


def unpacked(daemon: Containerd, namespace: str, image: Image) -> list[str]:
    """The layers of ``image`` that the snapshotter has not committed (ChainIDs)."""
    chain = chain_ids([layer.diff_id for layer in image.layers])
    return [key for key in chain if not daemon.has_snapshot(namespace, key)]


@pytest.mark.parametrize(("output", "row_key"), cells("ctr"))
def test_ctr_import(interop: Interop, containerd: Containerd, output: str, row_key: str) -> None:
    row = interop.rows[row_key]
    with INTEROP.cell((row_key, output, "ctr")) as cell:
        # A layout is handed to ctr as a tar of the directory.
        source = interop.layout_tar(row) if output == "layout" else interop.target(row, output)
        # Another platform is imported the way a host of that platform would: --platform.
        mode, flags = "default", tuple[str, ...]()
        if row.key == OTHER:
            mode, flags = "other", ("--platform", f"linux/{interop.other}")
        namespace = f"{output}-{row.key}" if output == "archive" else f"{output}-{row.pulls}-{mode}"
        imported = ctr_import(interop, containerd, namespace, source, *flags).require()
        assert set(imported) == ({row.name} if output == "archive" else interop.names(row))
        top = interop.top(row, output)
        assert imported[row.name].digest == top
        manifest = ctr_manifest(containerd, namespace, top, row.arch)
        assert manifest["config"]["digest"] == row.image.config_digest
        # Unpacked: every layer applied (and checked against its diff_id) by the snapshotter.
        assert unpacked(containerd, namespace, row.image) == []

        if top == row.image.digest:
            return
        if row.key == OTHER:
            # --all-platforms keeps the content of every platform.
            every = ctr_import(
                interop, containerd, f"{output}-{row.pulls}-all", source, "--all-platforms"
            )
            every.require()
            assert daemon_has(containerd, every.namespace, row.image)
            cell.note("imported with --platform; --all-platforms keeps its content too")
        else:
            # By default only the host's platform is unpacked.
            other = interop.rows[OTHER].image
            assert unpacked(containerd, namespace, other) != []
            cell.note("default import unpacks the host's platform only")


def daemon_has(daemon: Containerd, namespace: str, image: Image) -> bool:
    """Whether the content store holds ``image``'s manifest, config and layers."""
    return all(
        daemon.content(namespace, digest) is not None
        for digest in [image.digest, image.config_digest, *(layer.digest for layer in image.layers)]
    )


# --------------------------------------------------------------------------------------------
# podman


def podman_store(interop: Interop, key: str) -> Podman:
    podman = make_podman(interop.workdir / "podman" / key)
    interop.podman_stores.append(podman)
    return podman


def podman_load(interop: Interop, key: str, path: Path) -> Loaded:
    """``podman load`` of ``path`` into a fresh store of its own."""
    if key not in interop.podman_loads:
        podman = podman_store(interop, key)
        loaded = podman.podman("load", "--input", str(path), check=False)
        transcript = (loaded.stdout + loaded.stderr).decode(errors="replace")
        images = {}
        if loaded.returncode == 0:
            found = podman.names()
            reported = re.findall(r"^Loaded image(?:\(s\))?: (\S+)$", loaded.stdout.decode(), re.M)
            for name in reported:
                images[name] = (found.get(name, "(not in the store)"), podman.architecture(name))
        interop.podman_loads[key] = Loaded(
            f"podman load --input {path}", transcript, loaded.returncode == 0, images
        )
    return interop.podman_loads[key]


def podman_pull(interop: Interop, key: str, source: str, arch: str | None, limited: bool) -> Loaded:
    """``podman pull SOURCE`` (an ``oci:`` or ``oci-archive:`` reference) into a fresh store."""
    if key not in interop.podman_loads:
        podman = podman_store(interop, key)
        args = ["pull", "--quiet", *(["--arch", arch] if arch else []), source]
        pulled = podman.podman(*args, check=False)
        check_by_ref(pulled, limited, f"podman {' '.join(args)}")
        names = podman.names()
        images = {name: (image_id, podman.architecture(name)) for name, image_id in names.items()}
        transcript = (pulled.stdout + pulled.stderr).decode(errors="replace")
        interop.podman_loads[key] = Loaded(f"podman {' '.join(args)}", transcript, True, images)
    return interop.podman_loads[key]


@pytest.mark.parametrize(("output", "row_key"), cells("podman"))
def test_podman_load(
    interop: Interop, request: pytest.FixtureRequest, output: str, row_key: str
) -> None:
    row = interop.rows[row_key]
    with INTEROP.cell((row_key, output, "podman")) as cell:
        target = interop.target(row, output)
        arch = interop.other if row.key == OTHER else None
        name = row.name
        if output == "archive":
            loaded = podman_load(interop, f"archive-{row.key}", target).require()
            assert set(loaded) == {row.name}
        elif output == "bundle" and row.key != OTHER:
            # One image: through index.json (oci-archive); several: through manifest.json.
            loaded = podman_load(interop, f"bundle-{row.pulls}", target).require()
            assert set(loaded) == interop.names(row)
        elif output == "bundle":
            # podman load takes one platform per name; another platform of the bundle is
            # pulled from it by name.
            source = f"oci-archive:{target}:{row.name}"
            loaded = podman_pull(interop, f"bundle-{row.key}", source, arch, False).require()
            assert set(loaded) == {row.name}
            cell.note("other platform: podman pull --arch ARCH oci-archive:BUNDLE:NAME")
        else:
            # podman load takes a layout holding one image only; from a layout of several,
            # podman pulls one by ref name.
            limitation = ref_lookup_fails(interop, "podman", row, output)
            if limitation is not None:
                expect_limitation(request, cell, limitation)
            source = f"oci:{target}:{row.name}"
            key = f"layout-{row.key}"
            loaded = podman_pull(interop, key, source, arch, limitation is not None).require()
            if interop.version("podman") < (4, 7):
                # containers/common before podman 4.7 names an oci: pull after the directory.
                name = f"localhost/{str(target).lstrip('/')}:latest"
                cell.note(
                    "podman load -i DIR takes a one-image layout only, so: podman pull "
                    "oci:DIR:REF; podman < 4.7 names that image after DIR, not REF "
                    "(containers/common libimage), so the name checked is localhost/DIR:latest"
                )
            assert set(loaded) == {name}
        assert loaded[name] == (row.image.config_digest, row.arch)
