"""The content-addressed store: verified blobs on disk, resumed downloads, locks between
processes, and the uploads a push left unfinished. Imports the value modules and ``files``;
nothing of ``registry`` or ``output``.
"""

from __future__ import annotations

from bulkpull.store.blobs import BlobStore
from bulkpull.store.partials import BlobOpener, Region, receive
from bulkpull.store.uploadstate import SavedUpload, UploadState

__all__ = ["BlobOpener", "BlobStore", "Region", "SavedUpload", "UploadState", "receive"]
