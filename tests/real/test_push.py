"""``bulkpull push`` between two real registries: what is pulled from A arrives in B unchanged.

Registry A holds the test set (OCI and Docker media types, shared base layers, a static busybox,
a multi-platform index, and one with attestations). The CLI pulls it into per-image archives, a
bundle and OCI layouts (one platform, and ``--platform all``), and pushes each into registry B
under a namespace of its own. B must then serve every image under its mapped name with A's
digest (skopeo and bulkpull read it back, Docker runs the busybox), A must never have been
written to, and B's access log must show a cross-repository mount and, for a second push of the
same source, no upload at all. B also runs with htpasswd over TLS (a CA the test makes) and with
token auth, where a login without push is refused with an error naming image and registry.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import imagefactory
from support.secure_services import (
    CertificateAuthority,
    TokenServer,
    make_ca,
    start_token_server,
    write_htpasswd,
)
from support.services import DockerEngine, Registry, Request, run, start_registry
from support.testimages import BUSYBOX_GREETING, PushedImages, check_pushed, push_over_api

pytestmark = pytest.mark.real

USER = "pusher"
PASSWORD = "pu5h-pa55-real-test"
READER = "reader"
READER_PASSWORD = "rea4-only-real-test"
SOURCES = ("archives", "bundle", "layout", "layout-all")
WRITES = ("POST", "PATCH", "PUT")


@dataclass(frozen=True)
class Source:
    """What one pull from A wrote, and the flags of that pull."""

    name: str
    paths: tuple[Path, ...]


@dataclass(frozen=True)
class Pushed:
    """One ``bulkpull push`` run: its exit code, output and report, and B's requests."""

    code: int
    output: str
    report: dict[str, object]
    requests: list[Request]

    @property
    def images(self) -> list[dict[str, object]]:
        images = self.report["images"]
        assert isinstance(images, list)
        return images


def cli(command: list[str], *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = run([*command, *args], env=env, check=False, timeout=300)
    output = (result.stdout + result.stderr).decode(errors="replace")
    return result.returncode, f"$ {' '.join([*command, *args])}\n{output}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("push")


@pytest.fixture(scope="module")
def references(pushed_images: PushedImages) -> list[str]:
    """Every image of A, the test set and an index with attestations, as a list pulls them."""
    registry = pushed_images.registry
    base = imagefactory.random_layer(64 * 1024, name="attested/base.bin")
    children = [
        imagefactory.make_image([base], arch=arch, label=f"attested-{arch}")
        for arch in ("amd64", "arm64")
    ]
    attested = imagefactory.make_index(children, attestation=True)
    reference = push_over_api(registry, "bp/attested", "1", attested)
    tagged = [image.reference for image in pushed_images.all if image is not pushed_images.pinned]
    return [*tagged, pushed_images.pinned.by_digest, reference]


@pytest.fixture(scope="module")
def sources(references: list[str], bulkpull_command: list[str], workdir: Path) -> dict[str, Source]:
    listing = workdir / "images.txt"
    listing.write_text("".join(f"{reference}\n" for reference in references))
    pulls = {
        "archives": ["-o", str(workdir / "archives")],
        "bundle": [
            "-o",
            str(workdir),
            "--bundle",
            str(workdir / "bundle.tar"),
            "--platform",
            "all",
        ],
        "layout": ["--oci-layout", str(workdir / "layout")],
        "layout-all": ["--oci-layout", str(workdir / "layout-all"), "--platform", "all"],
    }
    for flags in pulls.values():
        code, output = cli(bulkpull_command, str(listing), "--plain-http", *flags)
        assert code == 0, output
    return {
        "archives": Source("archives", tuple(sorted((workdir / "archives").glob("*.tar")))),
        "bundle": Source("bundle", (workdir / "bundle.tar",)),
        "layout": Source("layout", (workdir / "layout",)),
        "layout-all": Source("layout-all", (workdir / "layout-all",)),
    }


@pytest.fixture(scope="module")
def target(workdir: Path) -> Iterator[Registry]:
    """Registry B, plain HTTP, empty."""
    with start_registry(workdir / "target") as running:
        yield running


def push(
    command: list[str],
    registry: Registry,
    paths: tuple[Path, ...],
    to: str,
    report: Path,
    *flags: str,
) -> Pushed:
    since = registry.log_offset()
    args = [str(path) for path in paths]
    code, output = cli(command, "push", *args, "--to", to, "--report", str(report), *flags)
    time.sleep(0.3)  # the registry logs a request just after answering it
    document = json.loads(report.read_text()) if report.exists() else {}
    return Pushed(code, output, document, registry.requests(since))


@pytest.fixture(scope="module")
def pushes(
    sources: dict[str, Source],
    target: Registry,
    pushed_images: PushedImages,
    bulkpull_command: list[str],
    workdir: Path,
) -> dict[str, tuple[Pushed, Pushed]]:
    """Each source pushed into B twice (the second time over a complete target); A's access
    log is read around all of it."""
    source_registry = pushed_images.registry
    since = source_registry.log_offset()
    done = {}
    for name, source in sources.items():
        runs = []
        for attempt in (1, 2):
            report = workdir / f"push-{name}-{attempt}.json"
            state = ["--state-dir", str(workdir / "state")]
            runs.append(
                push(
                    bulkpull_command,
                    target,
                    source.paths,
                    f"{target.host}/{name}",
                    report,
                    "--plain-http",
                    *state,
                )
            )
        done[name] = (runs[0], runs[1])
    time.sleep(0.3)
    writes = [r for r in source_registry.requests(since) if r.method in WRITES]
    assert writes == [], f"registry A was written to: {writes}"
    return done


@pytest.mark.parametrize("name", SOURCES)
def test_every_image_arrives_in_b_with_the_digest_a_gave_it(
    pushes: dict[str, tuple[Pushed, Pushed]],
    target: Registry,
    pushed_images: PushedImages,
    name: str,
) -> None:
    first, _ = pushes[name]
    assert first.code == 0, first.output
    assert len(first.images) == 7, first.output
    source_registry = pushed_images.registry
    for image in first.images:
        assert image["status"] == "pushed", image
        digest = str(image["digest"])
        mapped = str(image["target"])
        assert mapped.startswith(f"{target.host}/{name}/bp/"), mapped
        check_pushed(mapped, digest)
        # The digest is A's own: A serves it under the name the source gave the image.
        repository = str(image["name"]).partition("/")[2].rpartition(":")[0]
        check_pushed(f"{source_registry.host}/{repository}@{digest}", digest)


@pytest.mark.parametrize("name", SOURCES)
def test_a_layer_shared_across_repositories_is_mounted_not_uploaded_again(
    pushes: dict[str, tuple[Pushed, Pushed]], name: str
) -> None:
    first, _ = pushes[name]
    mounts = [r for r in first.requests if r.method == "POST" and "mount=" in r.path]
    assert mounts, first.output
    assert all(r.status == 201 for r in mounts), mounts
    # From this push's repositories, or from those of the pushes before it, which the shared
    # state directory recorded as holding the blob.
    pushed = tuple(f"{earlier}/bp/" for earlier in SOURCES[: SOURCES.index(name) + 1])
    sources = {r.path.partition("&from=")[2] for r in mounts}
    assert all(source.startswith(pushed) for source in sources), sources


@pytest.mark.parametrize("name", SOURCES)
def test_a_second_push_over_a_complete_target_uploads_nothing(
    pushes: dict[str, tuple[Pushed, Pushed]], name: str
) -> None:
    _, second = pushes[name]
    assert second.code == 0, second.output
    assert {image["status"] for image in second.images} == {"up-to-date"}
    assert [r for r in second.requests if r.method in WRITES] == []


def test_skopeo_and_bulkpull_read_what_was_pushed(
    pushes: dict[str, tuple[Pushed, Pushed]], bulkpull_command: list[str], workdir: Path
) -> None:
    first, _ = pushes["layout-all"]
    names = [str(image["target"]) for image in first.images]
    for name in names:
        inspected = json.loads(
            run(["skopeo", "inspect", "--tls-verify=false", f"docker://{name}"]).stdout
        )
        assert inspected["Layers"], name
    listing = workdir / "from-b.txt"
    listing.write_text("".join(f"{name} platform=all\n" for name in names))
    code, output = cli(bulkpull_command, str(listing), "--plain-http", "-o", str(workdir / "back"))
    assert code == 0, output
    report = {str(image["target"]): str(image["digest"]) for image in first.images}
    back = bulkpull_command_report(bulkpull_command, listing, workdir / "back.json")
    assert back == report


def test_an_oci_archive_and_a_layout_skopeo_wrote_are_pushed_with_their_digests(
    pushed_images: PushedImages,
    target: Registry,
    bulkpull_command: list[str],
    workdir: Path,
) -> None:
    image = pushed_images.shared_oci_a
    # skopeo names the entry with the reference given after the path; a push needs a whole
    # one (repository and tag), as a bare tag names no repository to push to.
    name = image.reference.partition("/")[2]
    archive, layout = workdir / "skopeo-archive.tar", workdir / "skopeo-layout"
    for destination in (f"oci-archive:{archive}:{name}", f"oci:{layout}:{name}"):
        copy = ["skopeo", "copy", "--preserve-digests", "--src-tls-verify=false"]
        run([*copy, f"docker://{image.reference}", destination], timeout=120)

    for source in (archive, layout):
        pushed = push(
            bulkpull_command,
            target,
            (source,),
            f"{target.host}/skopeo-{source.suffix.lstrip('.') or 'layout'}",
            workdir / f"skopeo-{source.name}.json",
            "--plain-http",
        )

        assert pushed.code == 0, pushed.output
        (record,) = pushed.images
        assert record["digest"] == image.manifest_digest, record
        check_pushed(str(record["target"]), image.manifest_digest)


def bulkpull_command_report(command: list[str], listing: Path, report: Path) -> dict[str, str]:
    """What a dry run of ``listing`` resolves each name to (the registry's digest)."""
    code, output = cli(command, str(listing), "--plain-http", "--dry-run", "--report", str(report))
    assert code == 0, output
    images = json.loads(report.read_text())["images"]
    return {image["name"]: image["source_digest"] for image in images}


def test_docker_runs_the_busybox_pulled_back_from_b(
    pushes: dict[str, tuple[Pushed, Pushed]],
    bulkpull_command: list[str],
    dockerd: DockerEngine,
    workdir: Path,
) -> None:
    first, _ = pushes["archives"]
    (busybox,) = [str(i["target"]) for i in first.images if "/bp/busybox:" in str(i["target"])]
    out = workdir / "busybox-back"
    code, output = cli(bulkpull_command, "-i", busybox, "--plain-http", "-o", str(out))
    assert code == 0, output
    (archive,) = out.glob("*.tar")
    dockerd.docker("load", "--input", str(archive))
    ran = dockerd.docker("run", "--rm", "--network", "none", "--pull", "never", busybox)
    assert ran.stdout.decode() == f"{BUSYBOX_GREETING}\n"


# --------------------------------------------------------------------------------------------
# Logins and TLS on the far side


@pytest.fixture(scope="module")
def ca(workdir: Path) -> CertificateAuthority:
    return make_ca(workdir / "ca")


@pytest.fixture(scope="module")
def basic_target(ca: CertificateAuthority, workdir: Path) -> Iterator[Registry]:
    """Registry B over HTTPS (a certificate from ``ca``), every request needing USER's login."""
    home = workdir / "basic-target"
    htpasswd = write_htpasswd(workdir / "htpasswd", {USER: PASSWORD})
    auth = {"htpasswd": {"realm": "bulkpull-push", "path": str(htpasswd)}}
    with start_registry(home, tls=ca.issue(home, "basic-target"), auth=auth) as running:
        yield running


@pytest.fixture(scope="module")
def token_server(ca: CertificateAuthority, workdir: Path) -> Iterator[TokenServer]:
    users = {USER: PASSWORD, READER: READER_PASSWORD}
    with start_token_server(
        workdir / "token-server", ca, users=users, refresh_tokens={}, pushers=frozenset({USER})
    ) as server:
        yield server


@pytest.fixture(scope="module")
def token_target(
    ca: CertificateAuthority, token_server: TokenServer, workdir: Path
) -> Iterator[Registry]:
    home = workdir / "token-target"
    auth = token_server.registry_auth
    with start_registry(home, tls=ca.issue(home, "token-target"), auth=auth) as running:
        yield running


def push_with_login(
    command: list[str],
    registry: Registry,
    paths: tuple[Path, ...],
    namespace: str,
    report: Path,
    ca: CertificateAuthority,
    login: str,
) -> Pushed:
    """A push into ``registry``'s ``namespace`` over TLS checked with the test's CA, logged in
    with ``login`` (``USER:PASSWORD``) for that registry alone."""
    host = registry.host
    flags = ("--ca-cert", str(ca.certificate), "--creds", f"{host}={login}")
    return push(command, registry, paths, f"{host}/{namespace}", report, *flags)


def assert_refused(pushed: Pushed, secret: str) -> str:
    """Every image failed, exit 1, and ``secret`` is in no output; returns what was printed
    after the command line (which the test echoes)."""
    assert pushed.code == 1, pushed.output
    printed = pushed.output.partition("\n")[2]
    assert secret not in printed
    assert secret not in json.dumps(pushed.report)
    assert {image["status"] for image in pushed.images} == {"failed"}
    assert "bp/busybox:1" in printed
    return printed


def test_a_login_pushes_over_tls_verified_with_the_given_ca(
    sources: dict[str, Source],
    basic_target: Registry,
    ca: CertificateAuthority,
    bulkpull_command: list[str],
    workdir: Path,
) -> None:
    pushed = push_with_login(
        bulkpull_command,
        basic_target,
        sources["layout"].paths,
        "site",
        workdir / "basic.json",
        ca,
        f"{USER}:{PASSWORD}",
    )

    assert pushed.code == 0, pushed.output
    assert {image["status"] for image in pushed.images} == {"pushed"}


def test_a_wrong_password_fails_naming_image_and_registry_and_is_never_shown(
    sources: dict[str, Source],
    basic_target: Registry,
    ca: CertificateAuthority,
    bulkpull_command: list[str],
    workdir: Path,
) -> None:
    wrong = "not-the-pu5h-password"
    pushed = push_with_login(
        bulkpull_command,
        basic_target,
        sources["layout"].paths,
        "wrong",
        workdir / "wrong.json",
        ca,
        f"{USER}:{wrong}",
    )

    printed = assert_refused(pushed, wrong)
    assert "401" in printed
    for image in pushed.images:
        assert basic_target.host in str(image["error"]), image


def test_a_token_with_push_scope_pushes(
    sources: dict[str, Source],
    token_target: Registry,
    token_server: TokenServer,
    ca: CertificateAuthority,
    bulkpull_command: list[str],
    workdir: Path,
) -> None:
    pushed = push_with_login(
        bulkpull_command,
        token_target,
        sources["layout"].paths,
        "site",
        workdir / "token.json",
        ca,
        f"{USER}:{PASSWORD}",
    )

    assert pushed.code == 0, pushed.output
    scopes = {scope for request in token_server.requests for scope in request.scopes}
    assert any(
        scope.startswith("repository:site/bp/") and scope.endswith(":pull,push") for scope in scopes
    ), scopes


def test_a_login_without_push_permission_fails_naming_image_and_registry(
    sources: dict[str, Source],
    token_target: Registry,
    ca: CertificateAuthority,
    bulkpull_command: list[str],
    workdir: Path,
) -> None:
    pushed = push_with_login(
        bulkpull_command,
        token_target,
        sources["layout"].paths,
        "readonly",
        workdir / "reader.json",
        ca,
        f"{READER}:{READER_PASSWORD}",
    )

    assert_refused(pushed, READER_PASSWORD)
    for image in pushed.images:
        message = str(image["error"])
        assert f"{token_target.host} refused to let this login push to readonly/bp/" in message
