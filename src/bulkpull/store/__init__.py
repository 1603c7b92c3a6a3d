"""The content-addressed store: verified blobs on disk, resumed downloads, locks between
processes. Imports the value modules and ``files``; nothing of ``registry`` or ``output``.
"""

from __future__ import annotations

from bulkpull.store.blobs import BlobStore
from bulkpull.store.partials import BlobOpener

__all__ = ["BlobOpener", "BlobStore"]
