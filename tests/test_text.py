"""The words and widths of the display: names that stay distinguishable, lines that fit."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bulkpull import (
    Digest,
    ImageStage,
    Platform,
    PushResult,
    PushStatus,
    Retrying,
    Stage,
    TransportError,
    image_spec,
)
from bulkpull.cli.text import (
    Labels,
    fit,
    overall_layout,
    push_fields,
    reason_text,
    retry_text,
    row_layout,
    shared_prefix,
    shorten_middle,
    sizes_text,
    text_width,
)

MIB = 1024 * 1024
AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")


def stage(reference: str, *platforms: Platform) -> ImageStage:
    return ImageStage(image_spec(reference), Stage.DOWNLOADING, platforms=platforms)


def test_a_hundred_images_of_one_registry_get_distinct_short_labels_at_80_columns() -> None:
    specs = [image_spec(f"127.0.0.1:5055/many/app-{number}:1") for number in range(100)]
    labels = Labels.for_run(specs, [AMD64])

    shown = [labels.label(ImageStage(spec, Stage.RESOLVING), 80 * 2 // 5) for spec in specs]

    assert labels.prefix == "127.0.0.1:5055/many/"
    assert shown[:3] == ["app-0:1", "app-1:1", "app-2:1"]
    assert len(set(shown)) == 100


@pytest.mark.parametrize(
    ("name", "width", "shortened"),
    [
        pytest.param("app:1", 20, "app:1", id="short-enough"),
        pytest.param(
            "ghcr.io/acme/platform/very-long-service-name:1.2.3",
            30,
            "ghcr.io…ong-service-name:1.2.3",
            id="tag-kept-end-favoured",
        ),
        pytest.param(
            "registry.example:5000/team/app@sha256:0123456789ab",
            34,
            "regi…/team/app@sha256:0123456789ab",
            id="digest-kept",
        ),
        pytest.param("a/b:" + "t" * 40, 20, "a/b:" + "t" * 15 + "…", id="tag-too-long-cut-at-end"),
    ],
)
def test_names_are_cut_in_the_middle_keeping_the_tag(name: str, width: int, shortened: str) -> None:
    assert shorten_middle(name, width) == shortened
    assert len(shorten_middle(name, width)) <= width


def test_names_that_differ_only_at_the_end_stay_different_when_shortened() -> None:
    names = [f"registry.example.com/some/deep/namespace/service-{n}:2024.1" for n in range(10)]

    assert len({shorten_middle(name, 32) for name in names}) == 10


@pytest.mark.parametrize(
    ("names", "prefix"),
    [
        pytest.param(["a.io/x/one:1", "a.io/x/two:1"], "a.io/x/", id="namespace"),
        pytest.param(["a.io/x/app:1", "a.io/x/app:2"], "a.io/x/", id="only-at-a-slash"),
        pytest.param(["a.io/x/one:1", "b.io/x/one:1"], "", id="different-registries"),
        pytest.param(["a.io/x/one:1"], "", id="a-single-image-keeps-its-name"),
    ],
)
def test_the_prefix_every_name_shares_ends_at_a_slash(names: list[str], prefix: str) -> None:
    assert shared_prefix(names) == prefix


def test_a_platform_is_named_when_the_image_is_pulled_for_several() -> None:
    several = image_spec("x.io/a/multi:1")
    labels = Labels.for_run([several, image_spec("x.io/a/single:1")], [AMD64, ARM64])
    one = Labels.for_run([several], [AMD64])

    assert labels.label(stage("x.io/a/multi:1", ARM64), 40) == "multi:1 linux/arm64"
    assert one.label(stage("x.io/a/multi:1", AMD64), 40) == "x.io/a/multi:1"


@pytest.mark.parametrize("width", [40, 60, 80, 120, 200])
def test_the_total_line_always_fits_one_line(width: int) -> None:
    fields = ["37 of 103 images (3 failed)", "112.0 MiB / 300.0 MiB", "5.2 MiB/s", "eta 36.0 s"]

    bar, text = overall_layout(fields, width)

    assert text_width(text) + (bar + 2 if bar else 0) <= width
    assert text.startswith("37 of 103 images")


def test_the_total_line_drops_its_bar_before_any_field_then_fields_from_the_end() -> None:
    fields = ["37 of 103 images", "112.0 MiB / 300.0 MiB", "5.2 MiB/s", "eta 36.0 s"]
    whole = "  ".join(fields)
    three = "  ".join(fields[:3])

    assert overall_layout(fields, 200) == (30, whole)
    assert overall_layout(fields, len(whole) + 12) == (10, whole)
    assert overall_layout(fields, len(whole) + 5) == (0, whole)
    assert overall_layout(fields, len(three)) == (0, three)


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_row_columns_add_up_to_the_width(width: int) -> None:
    layout = row_layout(width, label=30, counts=22)

    used = (
        layout.label + layout.counts + layout.note + 2 * 2 + (layout.bar + 2 if layout.bar else 0)
    )
    assert used == width
    assert layout.label <= max(16, width * 2 // 5)


def test_rows_get_a_bar_only_where_the_note_keeps_its_room() -> None:
    assert row_layout(80, label=8, counts=22).bar == 8
    assert row_layout(60, label=8, counts=22).bar == 0
    assert row_layout(160, label=8, counts=22).bar == 20
    assert row_layout(160, label=8, counts=22, note=110).bar == 14
    assert row_layout(120, label=8, counts=22, note=90).bar == 0


@pytest.mark.parametrize(
    ("done", "total", "text"),
    [
        pytest.param(3 * MIB - 500, 3 * MIB, "2.9/3.0 MiB", id="a-small-config-missing"),
        pytest.param(3 * MIB, 3 * MIB, "3.0/3.0 MiB", id="complete"),
        pytest.param(int(1.26 * MIB), 3 * MIB, "1.2/3.0 MiB", id="rounded-down"),
        pytest.param(512, 3 * MIB, "0.0/3.0 MiB", id="one-unit"),
        pytest.param(5, 900, "5/900 B", id="bytes"),
    ],
)
def test_bytes_done_read_complete_only_when_complete(done: int, total: int, text: str) -> None:
    assert sizes_text(done, total) == text


def test_wide_characters_take_two_cells_and_fit_cuts_by_cells() -> None:
    assert text_width("日本") == 4
    assert text_width("e\u0301") == 1
    assert fit("日本語のテキスト", 7) == "日本語…"
    assert fit("short", 10) == "short"


def test_a_retry_says_when_which_try_and_why_without_the_url() -> None:
    error = TransportError("GET http://127.0.0.1:5000/v2/x/blobs/sha256:ab: timed out")
    event = Retrying(error, 1, 4, 2.0, digest=Digest.of(b"x"))

    assert reason_text(error) == "timed out"
    assert retry_text(event, 1.5, reason_text(error)) == "in 1.5 s (try 1 of 4 failed): timed out"


@pytest.mark.parametrize(("size", "shown"), [(1536, "1.5 KiB"), (0, "-")])
def test_an_up_to_date_copy_shows_its_size_only_when_the_store_could_tell_it(
    size: int, shown: str
) -> None:
    digest = Digest.parse("sha256:" + "a" * 64)
    result = PushResult(image_spec("alpine:3.20"), PushStatus.UP_TO_DATE, "alpine:3.20")

    fields = push_fields(replace(result, digest=digest, size=size), full_digest=False)

    assert fields[3] == shown
