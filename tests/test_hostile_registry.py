"""Registries that misbehave, on purpose or not, and what bulkpull makes of them: each failure
stays with its image (or its registry), ends in bounded time, and shows nothing a terminal acts on.

The servers are ``hostileregistry.HostileRegistry`` (the fake registry with switches) and the
fake registry's own fault knobs. Tests whose old behaviour was to run for ever are bounded by
``within``: a watchdog, not a timing assertion.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest
from support import imagefactory as f
from support.commandline import run_cli
from support.fakehosts import fake_hosts
from support.fakeregistry import FakeRegistry, Faults, Start
from support.hostileregistry import (
    CLEAR_SCREEN,
    HostileRegistry,
    Trickler,
    hostile_error_body,
    serve_trickling,
    trickled_ping_answer,
    with_layer_size,
)

import bulkpull
from bulkpull import (
    DigestMismatchError,
    Mirror,
    PullOptions,
    RegistryError,
    RetryPolicy,
    TransportError,
    UnknownHostError,
)
from bulkpull.registry.redirects import MAX_REDIRECTS

T = TypeVar("T")
WATCHDOG_SECONDS = 60
# What the ``options`` fixture allows: the first try and two retries.
TRIES = 3


async def within(awaitable: Awaitable[T]) -> T:
    """``awaitable``'s result; a run that does not end is a failure, not a hung suite."""
    return await asyncio.wait_for(awaitable, WATCHDOG_SECONDS)


# --------------------------------------------------------------------------------------------
# Retries that end


async def test_a_server_ignoring_range_and_dropping_every_connection_is_given_up_on(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    layer = f.random_layer(2_000_000)
    registry.add("x/y", "1", f.make_image([layer]))
    # Every answer is the whole blob from byte 0, cut off at the same place.
    registry.faults[layer.digest] = Faults(
        reset_after=1_000_000, reset_times=10**9, ignore_range=True
    )
    host = await start(registry.app())
    options = PullOptions(plain_http=True, retry=RetryPolicy(retries=1, delay=0.0))

    result = await within(bulkpull.pull_image(f"{host}/x/y:1", tmp_path, options))

    assert isinstance(result.error, TransportError)
    # The first try brought new bytes and resumed at once; the same bytes again are no
    # progress, so two more tries (one retry) end it.
    assert registry.count("GET", f"/blobs/{layer.digest}") == 3
    assert result.error.tries == 3


async def test_resumes_after_progress_have_their_own_bound(start: Start, tmp_path: Path) -> None:
    registry = FakeRegistry()
    layer = f.random_layer(2_000_000)
    registry.add("x/y", "1", f.make_image([layer]))
    # Range is honoured, but every connection drops after 1000 new bytes.
    registry.faults[layer.digest] = Faults(reset_after=1000, reset_times=10**9)
    host = await start(registry.app())
    retry = RetryPolicy(retries=1, delay=0.0, resumes=3)
    options = PullOptions(plain_http=True, retry=retry)

    result = await within(bulkpull.pull_image(f"{host}/x/y:1", tmp_path, options))

    assert isinstance(result.error, TransportError)
    # Three resumes at once, then the retry budget: one try and one retry, progress or not.
    assert registry.count("GET", f"/blobs/{layer.digest}") == 5
    assert result.error.tries == 5


# --------------------------------------------------------------------------------------------
# Whole-request deadlines for small requests


@pytest.mark.parametrize("what", ["manifest", "token"])
async def test_a_small_body_trickled_a_byte_at_a_time_meets_a_deadline(
    start: Start, options: PullOptions, tmp_path: Path, what: str
) -> None:
    registry = HostileRegistry(auth="bearer" if what == "token" else "none")
    registry.add("x/y", "1", f.make_image([f.random_layer(1000)]))
    registry.misbehaviour.trickle = frozenset({what})
    host = await start(registry.app())
    # Each byte comes well within the 1 s of silence allowed; the whole never would.
    options = dataclasses.replace(options, timeout=1.0)

    result = await within(bulkpull.pull_image(f"{host}/x/y:1", tmp_path, options))

    assert isinstance(result.error, TransportError)
    assert "timed out" in str(result.error)
    assert registry.misbehaviour.bytes_trickled[what] <= TRIES * 6


async def test_a_ping_whose_headers_trickle_meets_a_deadline(
    options: PullOptions, tmp_path: Path
) -> None:
    trickler = Trickler(trickled_ping_answer(), seconds=0.2)
    options = dataclasses.replace(options, timeout=1.0)

    async with serve_trickling(trickler) as host:
        result = await within(bulkpull.pull_image(f"{host}/x/y:1", tmp_path, options))

    assert isinstance(result.error, TransportError)
    assert "timed out" in str(result.error)
    assert trickler.requests == TRIES
    assert trickler.bytes_sent <= TRIES * 6


# --------------------------------------------------------------------------------------------
# Permanent answers are not retried


@pytest.mark.parametrize(
    ("location", "gets", "message"),
    [
        pytest.param("loop", MAX_REDIRECTS + 1, f"more than {MAX_REDIRECTS} redirects", id="loop"),
        pytest.param("file:///etc/passwd", 1, "which is not an http(s) URL", id="file-url"),
    ],
)
async def test_redirect_loops_and_redirects_off_http_fail_at_once(
    start: Start, options: PullOptions, tmp_path: Path, location: str, gets: int, message: str
) -> None:
    registry = HostileRegistry()
    registry.add("x/y", "1", f.make_image([f.random_layer(1000)]))
    registry.misbehaviour.blob_location = location
    host = await start(registry.app())

    result = await bulkpull.pull_image(f"{host}/x/y:1", tmp_path, options)

    assert isinstance(result.error, RegistryError)
    assert message in str(result.error)
    assert result.error.tries == 1
    # The config comes first and fails the image: no other blob is asked for.
    assert sum("/blobs/" in seen.path for seen in registry.seen) == gets


async def test_a_name_that_does_not_resolve_fails_at_once(
    options: PullOptions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts = fake_hosts(monkeypatch, unknown=["registry.invalid"])
    options = dataclasses.replace(options, retry=RetryPolicy(retries=3, delay=0.0))

    report = await bulkpull.pull_images(
        ["registry.invalid/x/y:1", "registry.invalid/x/z:1"], tmp_path, options
    )

    assert [type(result.error) for result in report.results] == [UnknownHostError] * 2
    assert "cannot resolve registry.invalid" in str(report.results[0].error)
    assert hosts.lookups["registry.invalid"] == 1


# --------------------------------------------------------------------------------------------
# A registry or mirror that does not answer


async def test_a_registry_that_never_answers_is_pinged_once_for_all_its_images(
    start: Start, tmp_path: Path
) -> None:
    dead = HostileRegistry()
    dead.misbehaviour.hang = frozenset({"ping"})
    host = await start(dead.app())
    options = PullOptions(
        plain_http=True, jobs=2, timeout=0.5, retry=RetryPolicy(retries=1, delay=0.0)
    )

    report = await within(
        bulkpull.pull_images([f"{host}/x/app{n}:1" for n in range(6)], tmp_path, options)
    )

    assert dead.count("GET", "/v2/") == 2
    messages = {str(result.error) for result in report.results}
    assert len(messages) == 1
    assert "timed out" in messages.pop()
    assert {result.error.tries for result in report.results if result.error} == {2}


async def test_a_mirror_that_hangs_is_dropped_after_its_first_timeout(
    start: Start, tmp_path: Path
) -> None:
    origin, mirror = FakeRegistry(), HostileRegistry()
    repositories = [f"team/app{n}" for n in range(3)]
    for repository in repositories:
        origin.add(repository, "1", f.make_image([f.random_layer(1000)]))
    mirror.misbehaviour.hang = frozenset({"manifest"})
    origin_host, mirror_host = await start(origin.app()), await start(mirror.app())
    options = PullOptions(
        plain_http=True, jobs=1, timeout=0.5, mirrors=(Mirror(origin_host, mirror_host),)
    )

    report = await within(
        bulkpull.pull_images([f"{origin_host}/{r}:1" for r in repositories], tmp_path, options)
    )

    assert report.ok, report.failed
    assert sum("/manifests/" in seen.path for seen in mirror.seen) == 1


# --------------------------------------------------------------------------------------------
# Bytes as received


async def test_bodies_are_asked_for_uncompressed(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry(auth="bearer")
    registry.add("x/y", "1", f.make_image([f.random_layer(1000)]))
    host = await start(registry.app())

    result = await bulkpull.pull_image(f"{host}/x/y:1", tmp_path, options)

    assert result.ok, result.error
    asked = {seen.path: seen.headers.get("Accept-Encoding") for seen in registry.seen}
    assert {"/v2/", "/token"} <= set(asked)
    assert set(asked.values()) == {"identity"}


# --------------------------------------------------------------------------------------------
# One image's descriptor is its own


def bigsize_and_good(registry: FakeRegistry) -> f.Layer:
    """``t/good`` and ``t/bigsize``: one layer, whose size ``t/bigsize`` overstates."""
    layer = f.random_layer(50_000)
    image = f.make_image([layer])
    registry.add("t/good", "1", image)
    registry.blobs.update(image.blobs)
    registry.put_manifest(
        "t/bigsize", "1", with_layer_size(image, 2 * len(layer.compressed)), image.media_type
    )
    return layer


@pytest.mark.parametrize(
    "order",
    [["t/bigsize", "t/good"], ["t/good", "t/bigsize"]],
    ids=["bad-descriptor-first", "good-descriptor-first"],
)
async def test_a_wrong_size_fails_only_the_image_that_states_it(
    start: Start, options: PullOptions, tmp_path: Path, order: list[str]
) -> None:
    registry = FakeRegistry()
    layer = bigsize_and_good(registry)
    host = await start(registry.app())

    report = await bulkpull.pull_images(
        [f"{host}/{name}:1" for name in order], tmp_path, dataclasses.replace(options, jobs=1)
    )

    outcome = {result.spec.source.path: result.error for result in report.results}
    assert outcome["t/good"] is None
    assert isinstance(outcome["t/bigsize"], DigestMismatchError)
    assert f"{2 * len(layer.compressed)} bytes" in str(outcome["t/bigsize"])
    assert [path.name for path in tmp_path.glob("*.tar")] == [
        f"{host.replace(':', '_')}_t_good_1.tar"
    ]


async def test_a_wrong_size_is_refused_when_the_blob_is_already_stored(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    bigsize_and_good(registry)
    host = await start(registry.app())
    first = await bulkpull.pull_image(f"{host}/t/good:1", tmp_path, options)

    second = await bulkpull.pull_image(f"{host}/t/bigsize:1", tmp_path, options)

    assert first.ok, first.error
    assert isinstance(second.error, DigestMismatchError)


async def test_a_blob_another_registry_lacks_still_comes_from_this_one(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    holder, lacking = FakeRegistry(), FakeRegistry()
    image = f.make_image([f.random_layer(1000)])
    holder.add("t/good", "1", image)
    lacking.add("t/broken", "1", image)
    del lacking.blobs[image.layers[0].digest]
    # t/good resolves a second later, so t/broken's download of the layer is the one under way
    # when t/good asks for it (else t/broken would wait for t/good's and get the blob).
    holder.faults["t/good:1"] = Faults(statuses=[503], retry_after="1")
    holder_host, lacking_host = await start(holder.app()), await start(lacking.app())

    report = await bulkpull.pull_images(
        [f"{lacking_host}/t/broken:1", f"{holder_host}/t/good:1"],
        tmp_path,
        dataclasses.replace(options, jobs=1),
    )

    broken, good = report.results
    assert "404 BLOB_UNKNOWN" in str(broken.error)
    assert good.ok, good.error


# --------------------------------------------------------------------------------------------
# What reaches the terminal


@pytest.mark.parametrize("json_body", [True, False], ids=["json-errors", "plain-text"])
async def test_registry_text_reaches_terminal_report_and_log_with_controls_escaped(
    start: Start, tmp_path: Path, json_body: bool
) -> None:
    registry = HostileRegistry()
    body = hostile_error_body(json_body=json_body)
    content_type = "application/json" if json_body else "text/plain"
    registry.misbehaviour.error_body = (400, body, content_type)
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/fake/image:1\n")
    report_file = tmp_path / "report.json"

    code, out, err = await run_cli(
        str(listing), "-v", "-o", str(tmp_path / "out"), "--report", str(report_file)
    )

    assert code == 1, out + err
    printed = out + err
    assert "\x1b" not in printed
    assert "\x07" not in printed
    assert "\\x1b[2J" in printed
    assert not [line for line in printed.splitlines() if line.startswith("pulled  fake/image")]
    [record] = json.loads(report_file.read_text())["images"]
    for text in (record["error"]["message"], record["error"]["code"] or ""):
        assert text.isprintable(), text
    assert CLEAR_SCREEN not in record["error"]["message"]


# --------------------------------------------------------------------------------------------
# A manifest that lies about sizes


async def test_a_dry_run_refuses_a_size_no_registry_can_hold(start: Start, tmp_path: Path) -> None:
    registry = FakeRegistry()
    image = f.make_image([f.random_layer(1000)])
    registry.blobs.update(image.blobs)
    registry.put_manifest("x/huge", "1", with_layer_size(image, 10**399), image.media_type)
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/x/huge:1\n")

    code, out, err = await run_cli(str(listing), "--dry-run", "-o", str(tmp_path / "out"))

    assert code == 1, out + err
    assert "layers[0].size must be an integer from 0 to 2**53" in out + err
