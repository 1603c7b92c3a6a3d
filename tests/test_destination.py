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
    ("destination", "store_dir", "expected"),
    [
        pytest.param(Destination.archives("out"), None, "out/.bulkpull-store", id="archives"),
        pytest.param(Destination.bundle("a/all.tar"), None, "a/.bulkpull-store", id="bundle"),
        pytest.param(Destination.archives("out"), "s", "s", id="archives-store-dir"),
        pytest.param(Destination.bundle("a/all.tar"), "s", "s", id="bundle-store-dir"),
        # A layout's blobs directory is the store: a store elsewhere would not fill the layout.
        pytest.param(Destination.oci_layout("lay"), None, "lay/blobs", id="layout"),
        pytest.param(Destination.oci_layout("lay"), "s", "lay/blobs", id="layout-ignores-dir"),
    ],
)
def test_the_blob_store_of_each_destination(
    destination: Destination, store_dir: str | None, expected: str
) -> None:
    assert destination.store_path(store_dir) == Path(expected)


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
