"""Transport behaviour: throttling, Retry-After, identity tokens, per-registry logins, token
realms, mirrors, proxies and CA files, seen from a pull against in-process registries."""

from __future__ import annotations

import dataclasses
import email.utils
import json
import logging
import tarfile
from pathlib import Path

import pytest
from support import imagefactory as f
from support.fakehosts import fake_hosts
from support.fakeregistry import FakeRegistry, Faults, RefusedTogether, Start

import bulkpull
from bulkpull import (
    AuthenticationError,
    Credentials,
    CredentialsError,
    Keychain,
    Mirror,
    Proxies,
    PullOptions,
    RegistryError,
    RetryPolicy,
    TransportError,
)
from bulkpull.registry import SecurityPolicy, Transport
from bulkpull.registry.status import parse_retry_after

PLAIN_HTTP = SecurityPolicy(plain_http=True)
ALICE = Credentials("alice", "s3cret")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        (" 30 ", 30.0),
        ("soon", None),
        (email.utils.formatdate(1_000_060, usegmt=True), 60.0),
        (email.utils.formatdate(999_000, usegmt=True), 0.0),
    ],
)
def test_retry_after_accepts_seconds_or_a_future_http_date(
    header: str | None, expected: float | None
) -> None:
    assert parse_retry_after(header, now=1_000_000) == expected


async def test_a_429_pauses_requests_to_that_registry_for_every_caller(start: Start) -> None:
    registry = FakeRegistry()
    image = f.make_image([f.random_layer(100), f.random_layer(100)])
    registry.add("x/y", "1", image)
    first, second = (layer.digest for layer in image.layers)
    registry.faults[first] = Faults(statuses=[429], retry_after="1")
    host = await start(registry.app())

    async with Transport(retry=RetryPolicy(retries=0), security=PLAIN_HTTP) as transport:
        with pytest.raises(RegistryError) as throttled:
            async with transport.request("GET", host, "x/y", f"/v2/x/y/blobs/{first}"):
                pass
        async with transport.request("GET", host, "x/y", f"/v2/x/y/blobs/{second}") as response:
            assert response.status == 200

    assert throttled.value.status == 429
    assert throttled.value.retry_after == 1.0
    refused, other = (s for s in registry.seen if "/blobs/" in s.path)
    # The other caller's request reached the registry only after the pause it asked for.
    assert other.at - refused.at >= 0.9


async def test_an_unreachable_registry_is_a_transport_error_naming_the_url() -> None:
    async with Transport(retry=RetryPolicy(retries=0), security=PLAIN_HTTP) as transport:
        with pytest.raises(TransportError) as caught:
            async with transport.request("GET", "127.0.0.1:9", "x/y", "/v2/x/y/manifests/1"):
                pass
    assert "http://127.0.0.1:9/v2/" in str(caught.value)


async def test_requests_refused_together_renew_their_token_once(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry(auth="bearer")
    image = f.make_image([f.random_layer(1000) for _ in range(4)])
    registry.add("x/y", "1", image)
    # All four layers are asked for with one token, which is revoked under them; one refusal
    # comes at once and the other three only after its renewal.
    registry.refused_together = RefusedTogether(frozenset(layer.digest for layer in image.layers))
    host = await start(registry.app())

    result = await bulkpull.pull_image(f"{host}/x/y:1", tmp_path, options)

    assert result.ok, result.error
    assert registry.count("GET", "/token") == 2  # the first token, and one renewal for all
    assert all(registry.count("GET", f"/blobs/{layer.digest}") == 2 for layer in image.layers)


async def test_each_repository_of_a_registry_gets_a_token_for_its_own_scope(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry(auth="bearer")
    for repository in ("team/a", "team/b"):
        registry.add(repository, "1", f.make_image([f.random_layer(1000)]))
    host = await start(registry.app())

    report = await bulkpull.pull_images([f"{host}/team/a:1", f"{host}/team/b:1"], tmp_path, options)

    assert report.ok, report.failed
    scopes = sorted(seen.query["scope"][0] for seen in registry.seen if seen.path == "/token")
    assert scopes == ["repository:team/a:pull", "repository:team/b:pull"]


def repo_tags(archive: Path | None) -> list[str]:
    """The names ``docker load`` gives the image in ``archive``."""
    assert archive is not None
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        return [tag for entry in json.load(member) for tag in entry["RepoTags"]]


async def test_identity_token_is_traded_by_oauth2_post_for_an_access_token(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry(auth="bearer")
    registry.refresh_token = "refresh-abc"
    registry.add("team/app", "1", f.make_image([f.random_layer(1000)]))
    host = await start(registry.app())
    login = Credentials("", "", identity_token="refresh-abc")

    result = await bulkpull.pull_image(
        f"{host}/team/app:1", tmp_path, dataclasses.replace(options, credentials=login)
    )

    assert result.ok, result.error
    assert registry.token_forms == [
        {
            "grant_type": "refresh_token",
            "refresh_token": "refresh-abc",
            "client_id": "bulkpull",
            "scope": "repository:team/app:pull",
            "service": "fake-registry",
        }
    ]
    assert registry.count("GET", "/token") == 0


async def test_identity_token_falls_back_to_get_where_oauth2_is_missing(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry(auth="bearer", username="carol", password="refresh-abc")
    registry.add("team/app", "1", f.make_image([f.random_layer(1000)]))
    host = await start(registry.app())
    login = Credentials("carol", "", identity_token="refresh-abc")

    result = await bulkpull.pull_image(
        f"{host}/team/app:1", tmp_path, dataclasses.replace(options, credentials=login)
    )

    assert result.ok, result.error
    assert registry.count("POST", "/token") == 1
    assert registry.count("GET", "/token") == 1


async def test_each_registry_gets_its_own_login(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    first = FakeRegistry(auth="basic", username="ann", password="pw-one")
    second = FakeRegistry(auth="bearer", username="ben", password="pw-two")
    for registry in (first, second):
        registry.add("x/y", "1", f.make_image([f.random_layer(1000)]))
    first_host, second_host = await start(first.app()), await start(second.app())
    keychain = Keychain.from_environment(
        per_registry={
            first_host: Credentials("ann", "pw-one"),
            second_host: Credentials("ben", "pw-two"),
        },
        environ={"HOME": str(tmp_path / "home")},
    )

    report = await bulkpull.pull_images(
        [f"{first_host}/x/y:1", f"{second_host}/x/y:1"],
        tmp_path / "out",
        dataclasses.replace(options, credentials=keychain),
    )

    assert report.ok, report.failed


async def test_a_token_server_beside_a_plain_http_registry_gets_the_login(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    token_server = FakeRegistry(username="alice", password="s3cret")
    registry = FakeRegistry(auth="bearer")
    registry.add("x/y", "1", f.make_image([f.random_layer(1000)]))
    registry.tokens = token_server.tokens  # the registry trusts what this server issues
    registry.realm = f"http://{await start(token_server.app())}/token"
    host = await start(registry.app())

    result = await bulkpull.pull_image(
        f"{host}/x/y:1", tmp_path, dataclasses.replace(options, credentials=ALICE)
    )

    assert result.ok, result.error
    [token_request] = [seen for seen in token_server.seen if seen.path == "/token"]
    assert token_request.headers["Authorization"] == ALICE.basic_header()


@pytest.mark.parametrize("named_insecure", [False, True], ids=["refused", "named-insecure"])
async def test_a_token_server_on_another_host_gets_the_login_over_plain_http_only_when_named(
    start: Start,
    options: PullOptions,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    named_insecure: bool,
) -> None:
    fake_hosts(monkeypatch, to_loopback=["tokens.example"])
    token_server = FakeRegistry(username="alice", password="s3cret")
    registry = FakeRegistry(auth="bearer")
    registry.add("x/y", "1", f.make_image([f.random_layer(1000)]))
    registry.tokens = token_server.tokens
    token_host = "tokens.example:" + (await start(token_server.app())).rpartition(":")[2]
    registry.realm = f"http://{token_host}/token"
    host = await start(registry.app())
    insecure = frozenset({token_host}) if named_insecure else frozenset()
    options = dataclasses.replace(options, credentials=ALICE, insecure_registries=insecure)

    result = await bulkpull.pull_image(f"{host}/x/y:1", tmp_path, options)

    sent = [seen.headers.get("Authorization") for seen in token_server.seen]
    if named_insecure:
        assert result.ok, result.error
        assert sent == [ALICE.basic_header()]
        return
    assert isinstance(result.error, AuthenticationError)
    assert f"not sending credentials to token server http://{token_host}/token" in str(result.error)
    assert f"--insecure-registry {token_host} allows it" in str(result.error)
    assert sent == [None]


async def test_a_failing_credential_helper_fails_the_images_that_need_it(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    config = tmp_path / "docker" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"credsStore": "absent"}))
    keychain = Keychain.from_environment(
        environ={"DOCKER_CONFIG": str(config.parent), "HOME": str(tmp_path), "PATH": ""}
    )
    private = FakeRegistry(auth="basic", username="u", password="p")
    public = FakeRegistry()
    for registry in (private, public):
        registry.add("x/y", "1", f.make_image([f.random_layer(1000)]))
    private_host, public_host = await start(private.app()), await start(public.app())

    report = await bulkpull.pull_images(
        [f"{private_host}/x/y:1", f"{public_host}/x/y:1"],
        tmp_path / "out",
        dataclasses.replace(options, credentials=keychain),
    )

    failed, pulled = report.results
    assert isinstance(failed.error, CredentialsError)
    assert "docker-credential-absent" in str(failed.error)
    assert pulled.ok


async def test_a_mirror_serves_what_it_holds_and_the_registry_the_rest(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    origin, mirror = FakeRegistry(), FakeRegistry()
    cached, fresh = f.make_image([f.random_layer(1000)]), f.make_image([f.random_layer(1000)])
    origin.add("team/cached", "1", cached)
    origin.add("team/fresh", "1", fresh)
    mirror.add("team/cached", "1", cached)
    origin_host, mirror_host = await start(origin.app()), await start(mirror.app())
    options = dataclasses.replace(options, mirrors=(Mirror(origin_host, mirror_host),))

    report = await bulkpull.pull_images(
        [f"{origin_host}/team/cached:1", f"{origin_host}/team/fresh:1"], tmp_path, options
    )

    assert report.ok, report.failed
    assert [repo_tags(result.archive) for result in report.results] == [
        [f"{origin_host}/team/cached:1"],
        [f"{origin_host}/team/fresh:1"],
    ]
    assert not [seen.path for seen in origin.seen if "team/cached" in seen.path]
    assert mirror.count("GET", "/v2/team/cached/manifests/1") == 1
    assert mirror.count("GET", "/v2/team/fresh/manifests/1") == 1  # answered 404
    assert origin.count("GET", "/v2/team/fresh/manifests/1") == 1


async def test_an_unreachable_mirror_is_dropped_for_the_rest_of_the_run(
    start: Start, options: PullOptions, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    origin = FakeRegistry()
    images = [f"team/app{number}" for number in range(3)]
    for repository in images:
        origin.add(repository, "1", f.make_image([f.random_layer(1000)]))
    origin_host = await start(origin.app())
    options = dataclasses.replace(options, mirrors=(Mirror(origin_host, "127.0.0.1:9"),))

    with caplog.at_level(logging.WARNING, logger="bulkpull"):
        report = await bulkpull.pull_images(
            [f"{origin_host}/{repository}:1" for repository in images], tmp_path, options
        )

    assert report.ok, report.failed
    assert caplog.text.count("mirror 127.0.0.1:9 is not used in this run") == 1


async def test_docker_hub_images_come_from_a_namespaced_mirror_under_their_own_names(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    mirror = FakeRegistry()
    mirror.add("hub/library/alpine", "3", f.make_image([f.random_layer(1000)]))
    mirror_host = await start(mirror.app())
    # Anything that is not the mirror would go to a closed port: this test never leaves loopback.
    nowhere = "http://127.0.0.1:9"
    options = dataclasses.replace(
        options,
        mirrors=(Mirror("docker.io", f"{mirror_host}/hub"),),
        proxies=Proxies(https=nowhere, http=nowhere, no_proxy=(mirror_host,)),
    )

    result = await bulkpull.pull_image("alpine:3", tmp_path, options)

    assert result.ok, result.error
    assert repo_tags(result.archive) == ["docker.io/library/alpine:3"]
    assert mirror.count("GET", "/v2/hub/library/alpine/manifests/3") == 1


async def test_an_unreachable_proxy_is_named_without_its_credentials(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    registry.add("x/y", "1", f.make_image([f.random_layer(1000)]))
    host = await start(registry.app())
    proxies = Proxies.everywhere("http://alice:pr0xy-pw@127.0.0.1:9")

    result = await bulkpull.pull_image(
        f"{host}/x/y:1", tmp_path, dataclasses.replace(options, proxies=proxies)
    )

    assert isinstance(result.error, TransportError)
    assert "through proxy http://127.0.0.1:9" in str(result.error)
    assert "pr0xy-pw" not in str(result.error)
    assert registry.seen == []


async def test_an_unusable_ca_file_stops_the_pull_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")

    with pytest.raises(TransportError, match=str(bad)):
        await bulkpull.pull_images(["127.0.0.1:9/x/y:1"], tmp_path, PullOptions(ca_cert=bad))
