"""The naming rule of a push: where under ``--to REGISTRY[/NAMESPACE]`` each image goes."""

from __future__ import annotations

import pytest

from bulkpull import InvalidOptionError, PushTarget, parse_reference

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("name", "to", "expected"),
    [
        (
            "docker.io/library/alpine:3.20",
            "internal:5000/mirror",
            "internal:5000/mirror/library/alpine:3.20",
        ),
        ("alpine:3.20", "internal:5000", "internal:5000/library/alpine:3.20"),
        ("ghcr.io/team/app:1", "internal:5000/a/b", "internal:5000/a/b/team/app:1"),
        ("internal:5000/team/app:1", "internal:5000/mirror", "internal:5000/team/app:1"),
        ("INTERNAL:5000/team/app:1", "internal:5000/mirror", "internal:5000/team/app:1"),
        (
            f"busybox@{DIGEST}",
            "localhost:5000",
            f"localhost:5000/library/busybox:sha256-{DIGEST[7:]}",
        ),
    ],
)
def test_the_naming_rule(name: str, to: str, expected: str) -> None:
    assert str(PushTarget.parse(to).name_for(parse_reference(name))) == expected


@pytest.mark.parametrize(
    "to",
    ["https://internal:5000/mirror", "mirror", "internal:5000/Mirror", "internal:5000/m:tag", ""],
)
def test_a_target_that_is_no_registry_and_namespace_is_refused(to: str) -> None:
    with pytest.raises(InvalidOptionError):
        PushTarget.parse(to)
