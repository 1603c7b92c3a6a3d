"""The outputs of a run, one per destination, and the blob stores they bring: where the store
and the output stage meet, neither knowing the other. Imports ``destination``, ``store`` and
``output``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bulkpull.destination import Destination
from bulkpull.output import Bundle, Layout, Output
from bulkpull.store import BlobStore


@dataclass(frozen=True, slots=True)
class RunOutput:
    """One destination's output, and its blob store when it has one (an OCI layout's
    ``blobs`` directory is one)."""

    output: Output
    store: BlobStore | None = None


def make_outputs(destinations: Sequence[Destination]) -> list[RunOutput]:
    """The output of each destination. Nothing is looked at or created on disk until
    :meth:`Output.prepare`."""
    outputs = []
    for destination in destinations:
        if destination.kind == "oci-layout":
            store = BlobStore(destination.path / "blobs")
            outputs.append(RunOutput(Layout(store, destination.path), store))
        elif destination.kind == "bundle":
            outputs.append(RunOutput(Bundle(destination.path, destination.split)))
        else:
            outputs.append(RunOutput(Output(destination.path)))
    return outputs


def landing_store(outputs: Sequence[RunOutput], cache: BlobStore | None) -> BlobStore | None:
    """Where downloads land when not straight in an archive: the cache, else a layout's
    store; None when every output is an archive (each blob then lands in the first that
    needs it)."""
    return cache or next((run.store for run in outputs if run.store is not None), None)
