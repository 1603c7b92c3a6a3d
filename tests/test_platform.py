"""Platform parsing, containerd's normalization, and the ``platforms.Only`` fallback order."""

from __future__ import annotations

import pytest

from bulkpull.errors import BulkpullError, InvalidPlatformError
from bulkpull.platform import DEFAULT_PLATFORM, Platform


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/x86_64", Platform("linux", "amd64")),
        ("linux/x86-64", Platform("linux", "amd64")),
        ("linux/amd64/v1", Platform("linux", "amd64")),
        ("linux/amd64/v3", Platform("linux", "amd64", "v3")),
        ("linux/i386", Platform("linux", "386")),
        ("linux/386", Platform("linux", "386")),
        ("linux/arm64", Platform("linux", "arm64")),
        ("linux/aarch64", Platform("linux", "arm64")),
        ("linux/arm64/v8", Platform("linux", "arm64")),
        ("linux/arm64/8", Platform("linux", "arm64")),
        ("linux/arm64/v8.0", Platform("linux", "arm64")),
        ("linux/arm64/v8.2", Platform("linux", "arm64", "v8.2")),
        ("linux/arm64/9", Platform("linux", "arm64", "v9")),
        ("linux/arm64/v9.0", Platform("linux", "arm64", "v9")),
        ("linux/arm", Platform("linux", "arm", "v7")),
        ("linux/arm/7", Platform("linux", "arm", "v7")),
        ("linux/arm/v7", Platform("linux", "arm", "v7")),
        ("linux/arm/6", Platform("linux", "arm", "v6")),
        ("linux/arm/5", Platform("linux", "arm", "v5")),
        ("linux/arm/8", Platform("linux", "arm", "v8")),
        ("linux/armhf", Platform("linux", "arm", "v7")),
        ("linux/armel", Platform("linux", "arm", "v6")),
        ("macos/arm64", Platform("darwin", "arm64")),
        ("Linux/AMD64", Platform("linux", "amd64")),
        ("  linux/s390x \n", Platform("linux", "s390x")),
        ("windows/amd64", Platform("windows", "amd64")),
        ("linux/ppc64le", Platform("linux", "ppc64le")),
        ("linux/riscv64", Platform("linux", "riscv64")),
    ],
)
def test_parse_accepts_aliases_and_normalizes(text: str, expected: Platform) -> None:
    assert Platform.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "linux",
        "amd64",
        "linux/",
        "/amd64",
        "linux//v7",
        "linux/arm/v7/extra",
        "linux/am d64",
        "windows(10.0.17763)/amd64",
        "linux/amd64/",
    ],
)
def test_parse_refuses_anything_but_os_arch_variant(text: str) -> None:
    with pytest.raises(InvalidPlatformError, match="platform must be OS/ARCH") as caught:
        Platform.parse(text)
    assert repr(text) in str(caught.value)
    assert isinstance(caught.value, BulkpullError)
    assert isinstance(caught.value, ValueError)


def test_parse_error_names_the_input() -> None:
    with pytest.raises(InvalidPlatformError) as caught:
        Platform.parse("x")
    assert str(caught.value) == "platform must be OS/ARCH[/VARIANT], got 'x'"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (Platform("linux", "x86_64", "v1"), Platform("linux", "amd64")),
        (Platform("linux", "i386", "whatever"), Platform("linux", "386")),
        (Platform("linux", "aarch64", "v8"), Platform("linux", "arm64")),
        (Platform("linux", "arm64", "V8"), Platform("linux", "arm64")),
        (Platform("linux", "arm", ""), Platform("linux", "arm", "v7")),
        (Platform("linux", "armhf", "v5"), Platform("linux", "arm", "v7")),
        (Platform("MacOS", "amd64"), Platform("darwin", "amd64")),
        (Platform("", "amd64"), Platform("", "amd64")),
        (Platform("linux", "mips64le"), Platform("linux", "mips64le")),
    ],
)
def test_normalized_follows_containerd(given: Platform, expected: Platform) -> None:
    assert given.normalized() == expected
    assert given.normalized().normalized() == expected


@pytest.mark.parametrize(
    ("platform", "text"),
    [
        (Platform("linux", "amd64"), "linux/amd64"),
        (Platform("linux", "arm", "v7"), "linux/arm/v7"),
        (Platform.parse("linux/arm"), "linux/arm/v7"),
        (DEFAULT_PLATFORM, "linux/amd64"),
    ],
)
def test_str_is_os_arch_variant(platform: Platform, text: str) -> None:
    assert str(platform) == text
    assert Platform.parse(text) == platform.normalized()


def test_platforms_sort_by_os_then_architecture_then_variant() -> None:
    unsorted = [
        Platform("linux", "arm", "v7"),
        Platform("darwin", "arm64"),
        Platform("linux", "amd64"),
        Platform("linux", "arm", "v6"),
    ]
    assert [str(p) for p in sorted(unsorted)] == [
        "darwin/arm64",
        "linux/amd64",
        "linux/arm/v6",
        "linux/arm/v7",
    ]


# Each row: the wanted platform and the platforms Only(wanted) accepts, best first.
FALLBACK_ORDERS = [
    ("linux/amd64", ["linux/amd64", "linux/386"]),
    ("linux/amd64/v2", ["linux/amd64/v2", "linux/amd64", "linux/386"]),
    ("linux/amd64/v3", ["linux/amd64/v3", "linux/amd64/v2", "linux/amd64", "linux/386"]),
    (
        "linux/arm64",
        ["linux/arm64", "linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"],
    ),
    (
        "linux/arm64/v8.2",
        [
            "linux/arm64/v8.2",
            "linux/arm64/v8.1",
            "linux/arm64",
            "linux/arm/v8",
            "linux/arm/v7",
            "linux/arm/v6",
            "linux/arm/v5",
        ],
    ),
    (
        "linux/arm64/v9.1",
        [
            "linux/arm64/v9.1",
            "linux/arm64/v9",
            "linux/arm64/v8.6",
            "linux/arm64/v8.5",
            "linux/arm64/v8.4",
            "linux/arm64/v8.3",
            "linux/arm64/v8.2",
            "linux/arm64/v8.1",
            "linux/arm64",
            "linux/arm/v8",
            "linux/arm/v7",
            "linux/arm/v6",
            "linux/arm/v5",
        ],
    ),
    ("linux/arm/v8", ["linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
    ("linux/arm/v7", ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
    ("linux/arm", ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
    ("linux/arm/v6", ["linux/arm/v6", "linux/arm/v5"]),
    ("linux/arm/v5", ["linux/arm/v5"]),
    ("linux/386", ["linux/386"]),
    ("linux/s390x", ["linux/s390x"]),
    ("windows/amd64", ["windows/amd64", "windows/386"]),
]


@pytest.mark.parametrize(("wanted", "accepted"), FALLBACK_ORDERS)
def test_match_rank_orders_fallbacks_like_containerd_only(wanted: str, accepted: list[str]) -> None:
    ranks = [Platform.parse(wanted).match_rank(Platform.parse(text)) for text in accepted]
    assert ranks == list(range(len(accepted)))


@pytest.mark.parametrize(
    ("wanted", "candidate"),
    [
        ("linux/amd64", "linux/amd64/v2"),
        ("linux/amd64/v2", "linux/amd64/v3"),
        ("linux/amd64", "linux/arm64"),
        ("linux/amd64", "windows/amd64"),
        ("linux/386", "linux/amd64"),
        ("linux/arm64", "linux/arm64/v9"),
        ("linux/arm64", "linux/arm/v9"),
        ("linux/arm64", "linux/amd64"),
        ("linux/arm64/v8.2", "linux/arm64/v8.3"),
        ("linux/arm/v7", "linux/arm/v8"),
        ("linux/arm/v7", "linux/arm64"),
        ("linux/arm/v5", "linux/arm/v4"),
        ("linux/arm/v6", "linux/arm/v7"),
    ],
)
def test_match_rank_refuses_what_only_refuses(wanted: str, candidate: str) -> None:
    assert Platform.parse(wanted).match_rank(Platform.parse(candidate)) is None


@pytest.mark.parametrize(
    ("wanted", "candidate"),
    [
        (Platform("linux", "arm64"), Platform("linux", "arm64", "v8")),
        (Platform("linux", "arm64", "v8"), Platform("linux", "aarch64")),
        (Platform("linux", "arm"), Platform("linux", "arm", "v7")),
        (Platform("linux", "armhf"), Platform("linux", "arm")),
        (Platform("linux", "amd64", "v1"), Platform("linux", "x86_64")),
        (Platform("linux", "amd64"), Platform("Linux", "AMD64")),
    ],
)
def test_match_rank_is_exact_after_normalizing_both_sides(
    wanted: Platform, candidate: Platform
) -> None:
    assert wanted.match_rank(candidate) == 0


@pytest.mark.parametrize(
    ("wanted", "candidate"),
    [
        (DEFAULT_PLATFORM, Platform("unknown", "unknown")),
        (Platform("unknown", "unknown"), Platform("unknown", "unknown")),
        (Platform("linux", "unknown"), Platform("linux", "unknown")),
    ],
)
def test_unknown_platform_never_matches(wanted: Platform, candidate: Platform) -> None:
    assert candidate.is_unknown
    assert wanted.match_rank(candidate) is None


def test_default_platform_is_linux_amd64() -> None:
    assert Platform.parse("linux/amd64") == DEFAULT_PLATFORM
    assert not DEFAULT_PLATFORM.is_unknown
