"""The output writer for a destination, copying from the run's blob store: where the store and
the output stage meet, neither knowing the other. Imports ``destination``, ``store`` and
``output``.
"""

from __future__ import annotations

from bulkpull.destination import Destination
from bulkpull.output import Bundle, Layout, Output
from bulkpull.store import BlobStore


def make_output(destination: Destination, store: BlobStore) -> Output:
    """The output that writes ``destination`` from ``store``. Nothing is looked at or created
    on disk until :meth:`Output.prepare`."""
    if destination.kind == "oci-layout":
        return Layout(store, destination.path)
    if destination.kind == "bundle":
        return Bundle(store, destination.path)
    return Output(store, destination.path)
