"""Docker Hub's pull limits, played by ``HostileRegistry``: the RateLimit headers are read and
reported per registry, a spent limit fails that registry's remaining images at once (other
registries go on), and a manifest whose digest is already known costs no counted GET."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from support import imagefactory as f
from support.commandline import run_cli
from support.fakeregistry import FakeRegistry, Start
from support.hostileregistry import HostileRegistry

import bulkpull
from bulkpull import Mirror, PullLimit, PullOptions, RateLimitError, RegistryUsage

LIMIT = 2


def limited_registry(images: int) -> HostileRegistry:
    registry = HostileRegistry()
    registry.misbehaviour.pull_limit = LIMIT
    for number in range(images):
        registry.add(f"team/app{number}", "1", f.make_image([f.random_layer(500)]))
    return registry


@pytest.mark.parametrize("retry_after", [None, "3600"], ids=["no-retry-after", "hours"])
async def test_a_spent_pull_limit_fails_the_registrys_remaining_images_at_once(
    start: Start, options: PullOptions, tmp_path: Path, retry_after: str | None
) -> None:
    limited, other = limited_registry(4), FakeRegistry()
    limited.misbehaviour.spent_retry_after = retry_after
    other.add("team/other", "1", f.make_image([f.random_layer(500)]))
    limited_host, other_host = await start(limited.app()), await start(other.app())
    references = [f"{limited_host}/team/app{n}:1" for n in range(4)]
    references.append(f"{other_host}/team/other:1")

    report = await bulkpull.pull_images(references, tmp_path, dataclasses.replace(options, jobs=1))

    first, second, third, fourth, elsewhere = report.results
    assert first.ok, first.error
    assert second.ok, second.error
    assert elsewhere.ok, elsewhere.error
    assert isinstance(third.error, RateLimitError)
    assert fourth.error is third.error
    assert str(third.error) == (
        f"{limited_host}: pull rate limit reached ({LIMIT} per 6 h); log in (docker login) or wait"
    )
    # One refused GET, no retries, and nothing at all for the image after it.
    assert limited.count("GET", "/manifests/1") == LIMIT + 1
    assert "/v2/team/app3/manifests/1" not in {seen.path for seen in limited.seen}
    assert report.registries[0] == RegistryUsage(
        limited_host, LIMIT + 1, 0, PullLimit(LIMIT, 0, 21600), rate_limited=True
    )


async def test_pull_limits_show_with_verbose_and_in_the_report(
    start: Start, tmp_path: Path
) -> None:
    registry = limited_registry(3)
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text("".join(f"{host}/team/app{n}:1\n" for n in range(3)))
    report_file = tmp_path / "report.json"

    code, out, err = await run_cli(
        str(listing),
        *("-v", "-j", "1", "-o", str(tmp_path / "out"), "--report", str(report_file)),
    )

    assert code == 1, out + err
    assert f"{host}: pull limit {LIMIT} per 6 h, 1 left" in err
    assert f"{host}: pull rate limit reached ({LIMIT} per 6 h)" in out + err
    assert json.loads(report_file.read_text())["registries"] == [
        {
            "registry": host,
            "manifest_gets": LIMIT + 1,
            "manifest_heads": 0,
            "pull_limit": {"limit": LIMIT, "remaining": 0, "window_seconds": 21600},
            "rate_limited": True,
        }
    ]


async def test_a_known_digest_costs_no_counted_get(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    registry = limited_registry(1)
    registry.misbehaviour.pull_limit = 1
    host = await start(registry.app())
    first = await bulkpull.pull_image(f"{host}/team/app0:1", tmp_path, options)
    assert first.ok, first.error
    again = dataclasses.replace(options, force=True)

    by_tag = await bulkpull.pull_images([f"{host}/team/app0:1"], tmp_path, again)
    pinned = f"{host}/team/app0:1@{first.manifest_digest}"
    by_digest = await bulkpull.pull_images([pinned], tmp_path, again)

    # The tag is asked with HEAD (free); the pinned manifest is in the store: no request at all.
    assert by_tag.ok, by_tag.failed
    assert [(usage.manifest_gets, usage.manifest_heads) for usage in by_tag.registries] == [(0, 1)]
    assert by_digest.ok, by_digest.failed
    assert [usage.manifest_gets for usage in by_digest.registries] == []
    assert registry.count("GET", "/manifests/1") == 1


async def test_a_mirror_still_serves_images_of_a_registry_whose_limit_is_spent(
    start: Start, options: PullOptions, tmp_path: Path
) -> None:
    limited, mirror = limited_registry(3), FakeRegistry()
    limited.misbehaviour.pull_limit = 1
    mirror.add("team/app2", "1", f.make_image([f.random_layer(500)]))
    limited_host, mirror_host = await start(limited.app()), await start(mirror.app())
    options = dataclasses.replace(options, jobs=1, mirrors=(Mirror(limited_host, mirror_host),))

    report = await bulkpull.pull_images(
        [f"{limited_host}/team/app{n}:1" for n in range(3)], tmp_path, options
    )

    first, second, third = report.results
    assert first.ok, first.error
    assert isinstance(second.error, RateLimitError)
    assert third.ok, third.error
