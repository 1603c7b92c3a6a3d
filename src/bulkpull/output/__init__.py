"""What a pull writes and reads back: archives, bundles, OCI layouts, and their verification.
Imports the value modules and ``files``; nothing of ``registry`` or ``store``.
"""

from __future__ import annotations

from bulkpull.output.contents import ArchiveImage, ImageContent
from bulkpull.output.readback import blob_chunks
from bulkpull.output.verify import ArchiveCheck, ArchiveEntry, verify_archive
from bulkpull.output.verify_lockfile import LockCheck, verify_lock
from bulkpull.output.writers import BlobFiles, Bundle, Layout, Output

__all__ = [
    "ArchiveCheck",
    "ArchiveEntry",
    "ArchiveImage",
    "BlobFiles",
    "Bundle",
    "ImageContent",
    "Layout",
    "LockCheck",
    "Output",
    "blob_chunks",
    "verify_archive",
    "verify_lock",
]
