"""Where a copy (``bulkpull LIST --to``) puts each image of a list, and what it refuses before
any request: the push's naming rule, a line's new name standing for the image's name."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.commandline import run_cli

import bulkpull
from bulkpull import ImageListError

TARGET = "internal:5000/mirror"


def targets(*lines: str) -> list[str]:
    specs = bulkpull.parse_image_list(lines, "images.txt")
    return [str(spec.target) for spec in bulkpull.copy_plan(specs, TARGET)]


def test_an_image_goes_below_the_namespace_under_its_own_path_and_tag() -> None:
    assert targets("alpine:3.20", "ghcr.io/team/app:1.4") == [
        "internal:5000/mirror/library/alpine:3.20",
        "internal:5000/mirror/team/app:1.4",
    ]


def test_a_new_name_on_the_line_gives_the_target_repository_and_tag() -> None:
    assert targets("alpine:3.20 base/alpine:stable", "busybox:1.36 internal:5000/tools/bb:1") == [
        "internal:5000/mirror/base/alpine:stable",
        "internal:5000/tools/bb:1",
    ]


def test_an_image_known_by_digest_gets_the_digest_tag() -> None:
    digest = "sha256:" + "ab" * 32
    assert targets(f"busybox@{digest}") == [
        f"internal:5000/mirror/library/busybox:sha256-{'ab' * 32}"
    ]


def test_the_same_image_given_twice_is_copied_once() -> None:
    specs = [
        bulkpull.image_spec("alpine:3.20", origin="-i"),
        bulkpull.image_spec("docker.io/library/alpine:3.20", origin="-i"),
    ]

    planned = bulkpull.copy_plan(specs, TARGET)

    assert [str(spec.target) for spec in planned] == ["internal:5000/mirror/library/alpine:3.20"]


def test_two_images_landing_on_one_target_name_are_refused_at_the_later_line() -> None:
    with pytest.raises(ImageListError) as refused:
        targets("alpine:3.20", "quay.io/library/alpine:3.20")

    assert str(refused.value).startswith("images.txt:2: ")
    assert "internal:5000/mirror/library/alpine:3.20" in str(refused.value)
    assert "images.txt:1" in str(refused.value)


def test_mapping_is_the_same_when_applied_twice() -> None:
    specs = bulkpull.parse_image_list(["alpine:3.20 base/alpine:stable"], "images.txt")
    once = bulkpull.copy_plan(specs, TARGET)

    assert bulkpull.copy_plan(once, TARGET) == once


async def test_the_command_line_refuses_to_before_any_request(tmp_path: Path) -> None:
    listing = tmp_path / "images.txt"
    listing.write_text("alpine:3.20\nquay.io/library/alpine:3.20\n")

    clash = await run_cli(str(listing), "--to", TARGET)
    with_bundle = await run_cli(str(listing), "--to", TARGET, "--bundle", str(tmp_path / "b.tar"))
    not_a_registry = await run_cli(str(listing), "--to", "mirror/library")

    assert clash[0] == 2
    assert f"{listing}:2: " in clash[2]
    assert with_bundle[0] == 2
    assert "--bundle" in with_bundle[2]
    assert not_a_registry[0] == 2
    assert "not a registry host" in not_a_registry[2]
