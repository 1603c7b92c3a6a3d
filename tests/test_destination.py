"""Destinations as values: what each kind names, and where its blob store lives."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkpull import Destination, InvalidOptionError


@pytest.mark.parametrize(
    ("destination", "kind", "path"),
    [
        pytest.param(Destination.archives("out"), "archives", Path("out"), id="archives"),
        pytest.param(Destination.bundle("a/all.tar"), "bundle", Path("a/all.tar"), id="bundle"),
        pytest.param(Destination.oci_layout("lay"), "oci-layout", Path("lay"), id="layout"),
        pytest.param(Destination.of("out"), "archives", Path("out"), id="a-path-is-archives"),
        pytest.param(Destination.of(Path("out")), "archives", Path("out"), id="a-pathlib-path"),
    ],
)
def test_each_constructor_names_its_kind_and_path(
    destination: Destination, kind: str, path: Path
) -> None:
    assert (destination.kind, destination.path, str(destination)) == (kind, path, str(path))


def test_a_destination_given_is_taken_as_it_is() -> None:
    bundle = Destination.bundle("all.tar")

    assert Destination.of(bundle) is bundle


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        # Archives and bundles hold their blobs; a store is kept only with --cache.
        pytest.param(Destination.archives("out"), None, id="archives"),
        pytest.param(Destination.bundle("a/all.tar"), None, id="bundle"),
        # A layout's blobs directory is the store itself.
        pytest.param(Destination.oci_layout("lay"), Path("lay/blobs"), id="layout"),
    ],
)
def test_only_a_layout_keeps_a_blob_store_of_its_own(
    destination: Destination, expected: Path | None
) -> None:
    assert destination.store_path() == expected


def test_destinations_are_equal_values() -> None:
    assert Destination.bundle("all.tar") == Destination("bundle", Path("all.tar"))
    assert Destination.bundle("all.tar") != Destination.archives("all.tar")


@pytest.mark.parametrize(
    ("kind", "path", "message"),
    [
        pytest.param("tarball", Path("x"), "destination kind 'tarball'", id="unknown-kind"),
        pytest.param("bundle", "x.tar", "destination path 'x.tar'", id="path-not-a-path"),
    ],
)
def test_a_destination_that_cannot_be_is_an_invalid_option(
    kind: str, path: object, message: str
) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        Destination(kind, path)  # type: ignore[arg-type]
