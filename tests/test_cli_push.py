"""``bulkpull push`` and ``bulkpull verify --lock --registry`` as users run them: real processes
against the fake registry, their output, their report and their exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from support import imagefactory as f
from support.commandline import run_cli
from support.fakeregistry import FakeRegistry, Start
from support.fakeupload import FakeUploads

APP = f.make_image([f.random_layer(50_000)], label="app")
WEB = f.make_image([f.random_layer(50_000)], label="web", docker_types=True)


def layout(tmp_path: Path) -> Path:
    directory = tmp_path / "layout"
    f.write_oci_layout(directory, {"docker.io/team/app:1": APP, "ghcr.io/x/web:2": WEB})
    return directory


async def registry(start: Start, tmp_path: Path, **options: str) -> tuple[FakeUploads, str]:
    uploads = FakeUploads(FakeRegistry(**options), tmp_path / "registry")
    return uploads, await start(uploads.app())


def push_args(tmp_path: Path, *args: str) -> tuple[str, ...]:
    return ("push", *args, "--plain-http", "--state-dir", str(tmp_path / "state"))


async def test_a_push_prints_every_image_where_it_went_and_exits_0(
    start: Start, tmp_path: Path
) -> None:
    uploads, host = await registry(start, tmp_path)

    code, out, err = await run_cli(
        *push_args(tmp_path, str(layout(tmp_path)), "--to", f"{host}/site"),
        "--report",
        str(tmp_path / "report.json"),
    )

    assert code == 0, err
    assert f"pushing 2 images from {tmp_path / 'layout'} to {host}/site" in err
    assert f"pushed  team/app:1  sha256:{APP.digest[7:19]}" in out
    assert f"{host}/site/x/web:2 (2 blobs uploaded)" in out
    assert "2 images: 2 pushed, 0 failed" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["target"] == f"{host}/site"
    assert [image["target"] for image in report["images"]] == [
        f"{host}/site/team/app:1",
        f"{host}/site/x/web:2",
    ]
    assert report["totals"]["blobs_uploaded"] == 4
    assert uploads.registry.manifests[("site/x/web", "2")][0] == WEB.manifest


async def test_a_dry_run_lists_what_the_registry_lacks_and_writes_nothing(
    start: Start, tmp_path: Path
) -> None:
    uploads, host = await registry(start, tmp_path)

    code, out, err = await run_cli(
        *push_args(tmp_path, str(layout(tmp_path)), "--to", host, "--dry-run")
    )

    assert code == 0, err
    assert "missing  team/app:1" in out
    assert "dry run: " in out
    assert "of blobs missing at" in out
    assert not [s for s in uploads.registry.seen if s.method in ("POST", "PATCH", "PUT")]


async def test_an_image_that_fails_makes_the_exit_code_1(start: Start, tmp_path: Path) -> None:
    uploads, host = await registry(start, tmp_path)
    uploads.faults.wrong_manifest_digest = 1

    code, out, _ = await run_cli(
        *push_args(tmp_path, str(layout(tmp_path)), "--to", host, "-j", "1")
    )

    assert code == 1
    assert "failed  team/app:1" in out
    assert "digest mismatch" in out
    assert "1 pushed, 1 failed" in out


async def test_no_target_is_a_usage_error() -> None:
    code, _, err = await run_cli("push", "layout/")

    assert code == 2
    assert "--to" in err


async def test_a_source_that_cannot_be_pushed_is_a_usage_error_before_any_request(
    start: Start, tmp_path: Path
) -> None:
    uploads, host = await registry(start, tmp_path)
    (tmp_path / "empty").mkdir()

    code, _, err = await run_cli(*push_args(tmp_path, str(tmp_path / "empty"), "--to", host))

    assert code == 2
    assert "without index.json" in err
    assert uploads.registry.seen == []


async def test_a_target_that_is_a_url_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = await run_cli(
        *push_args(tmp_path, str(layout(tmp_path)), "--to", "https://registry.example/x")
    )

    assert code == 2
    assert "give REGISTRY[/NAMESPACE], not a URL" in err


async def test_a_refused_login_fails_the_images_and_the_password_is_never_printed(
    start: Start, tmp_path: Path
) -> None:
    _, host = await registry(start, tmp_path, auth="basic", username="u", password="right")
    wrong = "wr0ng-pa55word"

    code, out, err = await run_cli(
        *push_args(tmp_path, str(layout(tmp_path)), "--to", host, "-u", "u", "-p", wrong),
        "--report",
        str(tmp_path / "report.json"),
    )

    assert code == 1
    assert "failed  team/app:1" in out
    assert f"HEAD http://{host}/v2/team/app/manifests/1: 401" in out
    assert wrong not in out + err + (tmp_path / "report.json").read_text()


async def test_verify_checks_a_registry_against_a_lock_after_a_push(
    start: Start, tmp_path: Path
) -> None:
    _, host = await registry(start, tmp_path)
    code, _, err = await run_cli(*push_args(tmp_path, str(layout(tmp_path)), "--to", f"{host}/m"))
    assert code == 0, err
    lock = tmp_path / "site.lock"
    other = f.make_image([f.random_layer(1000)], label="other")
    lock.write_text(
        f"docker.io/team/app:1@{APP.digest}\n"
        f"ghcr.io/x/web:2@{other.digest}\n"
        f"docker.io/team/gone:1@{APP.digest}\n"
    )

    code, out, err = await run_cli(
        "verify", "--lock", str(lock), "--registry", f"{host}/m", "--plain-http"
    )

    assert code == 1, err
    assert f"ok      {host}/m/team/app:1@{APP.digest} in {host}" in out
    assert f"FAILED  {host}/m/x/web:2: is {WEB.digest}; the lock pins {other.digest}" in out
    assert f"FAILED  {host}/m/team/gone:1: not in {host}" in out


async def test_verify_with_a_registry_needs_a_lock() -> None:
    code, _, err = await run_cli("verify", "--registry", "127.0.0.1:9")

    assert code == 2
    assert "give --lock FILE too" in err
