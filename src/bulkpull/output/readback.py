"""Reading back what was written: the images an archive at a final name holds, so that a run
knows what it would replace. (A push reads blobs back out of archives and layouts through
``output.sources``.) Imports ``digest``, ``files`` and ``verify``.
"""

from __future__ import annotations

import os
from pathlib import Path

from bulkpull.digest import Digest
from bulkpull.files import open_regular
from bulkpull.output.verify import archive_digests


def held_images(path: Path) -> dict[str, Digest]:
    """The images an archive at a final name holds (name → digest); none when nothing, or
    nothing readable, is there. Never follows a link and never waits on a FIFO: anything but
    a regular file at ``path`` is an :class:`OutputError`."""
    try:
        fd = open_regular(path)
    except OSError:
        return {}
    with os.fdopen(fd, "rb") as archive:
        return archive_digests(archive)
