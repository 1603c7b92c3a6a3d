"""The image list format: SOURCE [NEW_NAME] per line, comments, errors as FILE:LINE: reason."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from bulkpull.errors import BulkpullError, ImageListError, InvalidReferenceError
from bulkpull.imagelist import (
    archive_name,
    check_archive_names,
    digest_tag,
    distinct_targets,
    image_spec,
    parse_image_list,
    read_image_list,
)
from bulkpull.platform import Platform
from bulkpull.reference import parse_reference

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")

HEX = "a" * 64
OTHER_HEX = "b" * 64


def targets(text: str) -> list[str]:
    return [str(spec.target) for spec in parse_image_list(text.splitlines(), "images.txt")]


def test_comments_blank_lines_and_inline_comments_are_ignored() -> None:
    text = """\
# base images
alpine:3.19

   busybox   # the small one
\t
ghcr.io/acme/tool:1.2#pinned
    # indented comment
"""
    assert targets(text) == [
        "docker.io/library/alpine:3.19",
        "docker.io/library/busybox:latest",
        "ghcr.io/acme/tool:1.2",
    ]


def test_specs_remember_where_they_came_from() -> None:
    specs = parse_image_list(["# header", "", "alpine:3.19", "busybox"], "list.txt")

    assert [spec.origin for spec in specs] == ["list.txt:3", "list.txt:4"]


def test_crlf_line_endings_are_accepted() -> None:
    assert targets("alpine:3.19\r\nbusybox\r\n") == [
        "docker.io/library/alpine:3.19",
        "docker.io/library/busybox:latest",
    ]


@pytest.mark.parametrize(
    ("line", "source", "target"),
    [
        pytest.param(
            "alpine",
            "docker.io/library/alpine:latest",
            "docker.io/library/alpine:latest",
            id="default-tag",
        ),
        pytest.param(
            "alpine:3.19 registry.example/alpine",
            "docker.io/library/alpine:3.19",
            "registry.example/alpine:3.19",
            id="new-name-keeps-source-tag",
        ),
        pytest.param(
            "alpine:3.19 registry.example:5000/base/alpine:stable",
            "docker.io/library/alpine:3.19",
            "registry.example:5000/base/alpine:stable",
            id="new-name-with-own-tag",
        ),
        pytest.param(
            "alpine:3.19 mirror/alpine:latest",
            "docker.io/library/alpine:3.19",
            "docker.io/mirror/alpine:latest",
            id="explicit-latest-is-kept",
        ),
        pytest.param(
            f"alpine@sha256:{HEX}",
            f"docker.io/library/alpine@sha256:{HEX}",
            f"docker.io/library/alpine:sha256-{HEX}",
            id="digest-only-gets-digest-tag",
        ),
        pytest.param(
            f"alpine@sha256:{HEX} registry.example/alpine",
            f"docker.io/library/alpine@sha256:{HEX}",
            f"registry.example/alpine:sha256-{HEX}",
            id="digest-only-renamed-gets-digest-tag",
        ),
        pytest.param(
            f"alpine:3.19@sha256:{HEX}",
            f"docker.io/library/alpine:3.19@sha256:{HEX}",
            "docker.io/library/alpine:3.19",
            id="tag-and-digest-pulls-digest-names-tag",
        ),
        pytest.param(
            f"alpine:3.19@sha256:{HEX} registry.example/alpine",
            f"docker.io/library/alpine:3.19@sha256:{HEX}",
            "registry.example/alpine:3.19",
            id="tag-and-digest-renamed",
        ),
    ],
)
def test_source_and_new_name_give_source_and_target(line: str, source: str, target: str) -> None:
    [spec] = parse_image_list([line], "images.txt")

    assert str(spec.source) == source
    assert str(spec.target) == target
    assert spec.target.digest is None
    assert spec.target.tag is not None


@pytest.mark.parametrize(
    ("line", "target", "platforms"),
    [
        pytest.param("alpine:3.19", "docker.io/library/alpine:3.19", [], id="none"),
        pytest.param(
            "alpine:3.19 platform=linux/arm64",
            "docker.io/library/alpine:3.19",
            ["linux/arm64"],
            id="one",
        ),
        pytest.param(
            "alpine:3.19 platform=linux/arm/v7,linux/amd64",
            "docker.io/library/alpine:3.19",
            ["linux/arm/v7", "linux/amd64"],
            id="several-in-order",
        ),
        pytest.param(
            "alpine:3.19 platform=linux/amd64,linux/x86_64,linux/amd64",
            "docker.io/library/alpine:3.19",
            ["linux/amd64"],
            id="repeats-dropped-after-normalizing",
        ),
        pytest.param(
            "alpine:3.19 registry.example/alpine platform=linux/arm64  # arm boxes",
            "registry.example/alpine:3.19",
            ["linux/arm64"],
            id="with-new-name-and-comment",
        ),
        pytest.param(
            "alpine:3.19 platform=linux/arm64 registry.example/alpine",
            "registry.example/alpine:3.19",
            ["linux/arm64"],
            id="before-new-name",
        ),
    ],
)
def test_platform_field_overrides_platforms_for_the_line(
    line: str, target: str, platforms: list[str]
) -> None:
    [spec] = parse_image_list([line], "images.txt")

    assert str(spec.target) == target
    assert [str(platform) for platform in spec.platforms] == platforms


def test_image_spec_without_new_name_matches_the_list_form() -> None:
    [from_list] = parse_image_list(["alpine:3.19 registry.example/alpine"], "images.txt")

    spec = image_spec("alpine:3.19", "registry.example/alpine", origin="images.txt:1")

    assert spec == from_list


@pytest.mark.parametrize(
    ("lines", "line_number", "reason"),
    [
        pytest.param(
            ["alpine", "alpine:3.19 a b"],
            2,
            "got 'alpine:3.19 a b'",
            id="too-many-fields",
        ),
        pytest.param(
            ["alpine platform=linux/amd64 platform=linux/arm64"],
            1,
            "got 'alpine platform=linux/amd64 platform=linux/arm64'",
            id="two-platform-fields",
        ),
        pytest.param(
            ["platform=linux/amd64"],
            1,
            "got 'platform=linux/amd64'",
            id="platform-without-source",
        ),
        pytest.param(
            ["alpine", "alpine:3.19 platform=linux"],
            2,
            "platform must be OS/ARCH[/VARIANT], got 'linux'",
            id="bad-platform",
        ),
        pytest.param(["alpine platform="], 1, "no platform given", id="empty-platform"),
        pytest.param(
            ["alpine", "", "Alpine:3.19"],
            3,
            "invalid reference 'Alpine:3.19': repository name must be lowercase",
            id="bad-source",
        ),
        pytest.param(
            ["alpine:3.19 registry.example/Alpine"],
            1,
            "invalid reference 'registry.example/Alpine': repository name must be lowercase",
            id="bad-new-name",
        ),
        pytest.param(
            [f"alpine:3.19 registry.example/alpine@sha256:{HEX}"],
            1,
            f"invalid reference 'registry.example/alpine@sha256:{HEX}': "
            "a new name cannot carry a digest",
            id="new-name-with-digest",
        ),
        pytest.param(
            ["alpine@sha512:" + "a" * 128],
            1,
            "unsupported digest algorithm 'sha512'",
            id="unsupported-digest",
        ),
    ],
)
def test_bad_line_raises_file_line_reason(lines: list[str], line_number: int, reason: str) -> None:
    with pytest.raises(ImageListError) as caught:
        parse_image_list(lines, "images.txt")

    assert (caught.value.source, caught.value.line) == ("images.txt", line_number)
    assert str(caught.value).startswith(f"images.txt:{line_number}: ")
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("lines", "earlier", "later"),
    [
        pytest.param(
            ["alpine:3.19", "registry.example/alpine:3.19 docker.io/library/alpine"],
            1,
            2,
            id="renamed-onto-another",
        ),
        pytest.param(
            [f"alpine:3.19@sha256:{HEX}", f"alpine:3.19@sha256:{OTHER_HEX}"],
            1,
            2,
            id="two-digests-one-tag",
        ),
        pytest.param(["a/b:c", "a_b:c"], 1, 2, id="different-names-same-file"),
    ],
)
def test_two_lines_for_one_archive_are_refused_naming_the_earlier_line(
    lines: list[str], earlier: int, later: int
) -> None:
    with pytest.raises(ImageListError) as caught:
        check_archive_names(parse_image_list(lines, "images.txt"), [AMD64])

    assert caught.value.line == later
    assert f"line {earlier}" in caught.value.reason


@pytest.mark.parametrize(
    ("lines", "kept"),
    [
        pytest.param(["alpine:3.19", "# x", "alpine:3.19"], 1, id="same-line-twice"),
        pytest.param(
            ["busybox", "alpine:3.19", "docker.io/library/alpine:3.19"], 2, id="normalized"
        ),
        pytest.param(["nginx:1 platform=linux/arm64,linux/amd64"] * 2, 1, id="with-platforms"),
    ],
)
def test_a_line_repeating_an_image_writes_no_archive_of_its_own(
    lines: list[str], kept: int
) -> None:
    specs = parse_image_list(lines, "images.txt")

    check_archive_names(specs, [AMD64])

    assert len(distinct_targets(specs)) == kept


@pytest.mark.parametrize(
    ("lines", "kept"),
    [
        pytest.param(["alpine:3.19", "# x", "docker.io/library/alpine:3.19"], 1, id="repeated"),
        pytest.param(["a/b:c", "a_b:c"], 2, id="archive-names-alike"),
    ],
)
def test_a_bundle_takes_each_image_once_whatever_its_archive_name(
    lines: list[str], kept: int
) -> None:
    assert len(distinct_targets(parse_image_list(lines, "images.txt"))) == kept


def test_two_images_under_one_name_are_refused_naming_the_earlier_line() -> None:
    specs = parse_image_list(["alpine:3.19", "registry.example/alpine:3.19 alpine:3.19"], "l.txt")

    with pytest.raises(ImageListError) as caught:
        distinct_targets(specs)

    assert str(caught.value) == (
        "l.txt:2: docker.io/library/alpine:3.19 is already the name of line 1"
    )


def test_same_source_under_two_new_names_is_allowed() -> None:
    assert targets("alpine:3.19 mirror/alpine\nalpine:3.19 mirror/alpine:stable\n") == [
        "docker.io/mirror/alpine:3.19",
        "docker.io/mirror/alpine:stable",
    ]


@pytest.mark.parametrize(
    ("line", "filename"),
    [
        ("alpine", "alpine_latest.tar"),
        ("alpine:3.19", "alpine_3.19.tar"),
        ("docker.io/library/alpine:3.19", "alpine_3.19.tar"),
        ("bitnami/redis:7.2", "bitnami_redis_7.2.tar"),
        ("library/foo/bar:2", "library_foo_bar_2.tar"),
        ("ghcr.io/acme/tool:v1.2-rc_1", "ghcr.io_acme_tool_v1.2-rc_1.tar"),
        ("127.0.0.1:5000/test/a:v1", "127.0.0.1_5000_test_a_v1.tar"),
        ("localhost/app:Dev", "localhost_app_Dev.tar"),
        ("[::1]:5000/test/a:v1", "___1__5000_test_a_v1.tar"),
        (f"alpine@sha256:{HEX}", f"alpine_sha256-{HEX}.tar"),
        ("alpine:3.19 registry.example/base/alpine", "registry.example_base_alpine_3.19.tar"),
    ],
)
def test_archive_filename_is_familiar_target_made_safe(line: str, filename: str) -> None:
    [spec] = parse_image_list([line], "images.txt")

    assert spec.archive_filename == filename


def test_read_image_list_reads_a_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "images.txt"
    path.write_text("# tools\nalpine:3.19\nbusybox registry.example/busybox\n", encoding="utf-8")

    specs = read_image_list(path)

    assert [str(spec.target) for spec in specs] == [
        "docker.io/library/alpine:3.19",
        "registry.example/busybox:latest",
    ]
    assert specs[0].origin == f"{path}:2"


def test_read_image_list_ignores_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "images.txt"
    path.write_bytes(b"\xef\xbb\xbfalpine:3.19\r\nbusybox\r\n")

    assert [str(spec.target) for spec in read_image_list(path)] == [
        "docker.io/library/alpine:3.19",
        "docker.io/library/busybox:latest",
    ]


def test_read_image_list_reports_error_lines_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "images.txt"
    path.write_text("alpine\n\nnot a valid line\n", encoding="utf-8")

    with pytest.raises(ImageListError, match=r"images\.txt:3: expected") as caught:
        read_image_list(path)

    assert caught.value.source == str(path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        pytest.param("missing.txt", None, id="missing"),
        pytest.param("latin1.txt", "caf\xe9\n".encode("latin-1"), id="not-utf8"),
    ],
)
def test_unreadable_list_is_an_image_list_error_naming_the_file(
    tmp_path: Path, name: str, content: bytes | None
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)

    with pytest.raises(ImageListError, match="cannot read") as caught:
        read_image_list(path)

    assert caught.value.source == str(path)
    assert caught.value.line is None
    assert str(caught.value).startswith(f"{path}: cannot read: ")


def test_directory_is_an_image_list_error(tmp_path: Path) -> None:
    with pytest.raises(ImageListError, match="cannot read"):
        read_image_list(tmp_path)


def test_standard_input_may_start_with_a_byte_order_mark(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("\ufeffalpine:3.19\nbusybox\n"))

    assert [str(spec.target) for spec in read_image_list("-")] == [
        "docker.io/library/alpine:3.19",
        "docker.io/library/busybox:latest",
    ]


def test_closed_standard_input_is_an_image_list_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", None)

    with pytest.raises(ImageListError) as caught:
        read_image_list("-")

    assert str(caught.value) == "<stdin>: cannot read: standard input is closed"


def test_a_list_holds_lines_whose_archives_would_collide_as_a_bundle_or_copy_takes_them() -> None:
    specs = parse_image_list(["x/a_b:1", "x/a/b:1"], "images.txt")

    assert [str(spec.target) for spec in specs] == [
        "docker.io/x/a_b:1",
        "docker.io/x/a/b:1",
    ]
    with pytest.raises(ImageListError, match=r"would overwrite x_a_b_1\.tar"):
        check_archive_names(specs, [AMD64])


def test_a_platform_line_and_a_line_renamed_onto_its_platform_archive_are_refused() -> None:
    lines = [
        "127.0.0.1:5000/multi/app:oci platform=linux/amd64,linux/arm64",
        "127.0.0.1:5000/other/app:1 127.0.0.1:5000/multi/app:oci_linux_amd64",
    ]

    with pytest.raises(ImageListError) as caught:
        check_archive_names(parse_image_list(lines, "images.txt"), [AMD64])

    assert (caught.value.source, caught.value.line) == ("images.txt", 2)
    assert caught.value.reason == (
        "127.0.0.1:5000/multi/app:oci_linux_amd64 would overwrite "
        "127.0.0.1_5000_multi_app_oci_linux_amd64.tar, the archive of line 1"
    )


def test_the_run_wide_platforms_decide_which_archives_collide() -> None:
    specs = parse_image_list(["x/app:oci", "x/other:1 x/app:oci_linux_arm64"], "images.txt")

    check_archive_names(specs, [AMD64])
    with pytest.raises(ImageListError, match="the archive of line 1") as caught:
        check_archive_names(specs, [AMD64, ARM64])

    assert caught.value.line == 2


def test_images_given_without_a_list_are_named_by_position_or_flag() -> None:
    again = image_spec("registry.example/alpine", "alpine", origin="--image")
    named = [image_spec("alpine"), image_spec("busybox"), again]

    with pytest.raises(ImageListError) as caught:
        check_archive_names(named, [AMD64])

    assert str(caught.value) == (
        "--image registry.example/alpine:latest: docker.io/library/alpine:latest would overwrite "
        "alpine_latest.tar, the archive of image 1 (docker.io/library/alpine:latest)"
    )


@pytest.mark.parametrize(
    ("platforms", "every", "platform", "name"),
    [
        pytest.param([AMD64], False, AMD64, "nginx_1.27.tar", id="one-platform-unnamed"),
        pytest.param([AMD64, ARM64], False, ARM64, "nginx_1.27_linux_arm64.tar", id="several"),
        pytest.param([AMD64, ARM64], False, None, "nginx_1.27.tar", id="not-multi-platform"),
        pytest.param([AMD64, ARM64], True, ARM64, "nginx_1.27.tar", id="all-in-one-archive"),
        pytest.param(
            [AMD64, Platform("linux", "aarch64")],
            False,
            Platform("linux", "aarch64"),
            "nginx_1.27_linux_arm64.tar",
            id="normalized",
        ),
    ],
)
def test_a_platform_is_in_an_archive_name_only_when_several_were_asked_for(
    platforms: list[Platform], every: bool, platform: Platform | None, name: str
) -> None:
    chosen = image_spec("nginx:1.27").choosing(tuple(platforms), every)

    assert archive_name(chosen, platform) == name


def test_every_platform_of_an_image_is_one_archive_without_a_platform_in_its_name() -> None:
    specs = parse_image_list(["x/app:1", "x/other:1 x/app:1_linux_arm64"], "images.txt")

    check_archive_names(specs, [AMD64, ARM64], all_platforms=True)
    with pytest.raises(ImageListError, match="the archive of line 1"):
        check_archive_names(specs, [AMD64, ARM64])


def test_the_tag_of_an_image_pulled_by_digest_names_the_digest() -> None:
    assert digest_tag(parse_reference(f"alpine@sha256:{HEX}")) == f"sha256-{HEX}"


def test_a_reference_without_a_digest_has_no_digest_tag_and_says_so() -> None:
    with pytest.raises(InvalidReferenceError, match="no digest to name a tag after") as caught:
        digest_tag(parse_reference("alpine:3.19"))

    assert isinstance(caught.value, BulkpullError)
