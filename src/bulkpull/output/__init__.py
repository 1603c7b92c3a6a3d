"""What a pull writes and reads back: archives, bundles, OCI layouts, their verification, and
the images a push reads out of them (and out of any other tool's OCI archive or layout).
Imports the value modules and ``files``; nothing of ``registry`` or ``store``.
"""

from __future__ import annotations

from bulkpull.output.archive import Slot
from bulkpull.output.collected import Bundle, Layout
from bulkpull.output.contents import (
    REFERRER_OF,
    REFERRER_TAG,
    ArchiveImage,
    ExpectedBlob,
    ImageContent,
    ReferrerContent,
)
from bulkpull.output.delta import Delta, HeldImage
from bulkpull.output.filling import ArchiveFile
from bulkpull.output.readback import HeldBlobs, read_place
from bulkpull.output.signed import verify_signatures
from bulkpull.output.sources import BlobPlace, Source, SourceEntry, read_source
from bulkpull.output.verify import ArchiveCheck, ArchiveEntry, verify_archive
from bulkpull.output.verify_lockfile import LockCheck, verify_lock
from bulkpull.output.writers import BlobFiles, BlobSupply, Output

__all__ = [
    "REFERRER_OF",
    "REFERRER_TAG",
    "ArchiveCheck",
    "ArchiveEntry",
    "ArchiveFile",
    "ArchiveImage",
    "BlobFiles",
    "BlobPlace",
    "BlobSupply",
    "Bundle",
    "Delta",
    "ExpectedBlob",
    "HeldBlobs",
    "HeldImage",
    "ImageContent",
    "Layout",
    "LockCheck",
    "Output",
    "ReferrerContent",
    "Slot",
    "Source",
    "SourceEntry",
    "read_place",
    "read_source",
    "verify_archive",
    "verify_lock",
    "verify_signatures",
]
