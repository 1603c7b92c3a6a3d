"""The output a pull asked for, with the blob store it copies from: where the store and the
output stage meet. Imports ``store`` and ``output``.
"""

from __future__ import annotations

from pathlib import Path

from bulkpull.output import Bundle, Layout, Output
from bulkpull.store import BlobStore

STORE_DIRNAME = ".bulkpull-store"


def make_output(
    out_dir: Path, bundle: Path | str | None, oci_layout: Path | str | None, store_dir: Path | None
) -> tuple[Output, BlobStore]:
    """The output a pull asked for and the blob store it copies from, which sits next to it
    unless ``store_dir``.
    Nothing is looked at or created on disk until :meth:`Output.prepare`."""
    if bundle is not None and oci_layout is not None:
        raise ValueError("choose a bundle or an OCI layout, not both")
    if oci_layout is not None:
        directory = Path(oci_layout)
        store = BlobStore(store_location(directory, oci_layout=directory))
        return Layout(directory, store), store
    store = BlobStore(store_location(out_dir, bundle=bundle, store_dir=store_dir))
    if bundle is not None:
        return Bundle(store, out_dir, Path(bundle)), store
    return Output(store, out_dir), store


def store_location(
    out_dir: Path | str,
    *,
    bundle: Path | str | None = None,
    oci_layout: Path | str | None = None,
    store_dir: Path | str | None = None,
) -> Path:
    """The blob store a pull into these outputs uses, so that a dry run (or any other tool)
    finds what earlier pulls verified there.

    An OCI layout's own ``blobs`` directory; otherwise ``store_dir`` when given, else
    ``.bulkpull-store`` next to the bundle or the archives.
    """
    if oci_layout is not None:
        return Path(oci_layout) / "blobs"
    if store_dir is not None:
        return Path(store_dir)
    return (Path(bundle).parent if bundle is not None else Path(out_dir)) / STORE_DIRNAME
