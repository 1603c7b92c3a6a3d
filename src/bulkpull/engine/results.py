"""One image's (and platform's) :class:`ImageResult`, from what was resolved and written. Pure.
Imports ``report``, ``imagelist``, ``platform``, ``resolved``, ``entries`` and
``referrers``.
"""

from __future__ import annotations

from pathlib import Path

from bulkpull.engine.entries import Entry
from bulkpull.engine.referrers import Companions
from bulkpull.imagelist import ImageSpec
from bulkpull.platform import Platform
from bulkpull.report import ImageResult, Status
from bulkpull.resolved import ResolvedImage


def result(
    spec: ImageSpec,
    item: ResolvedImage,
    status: Status,
    wanted: ImageSpec,
    *,
    platform: Platform | None = None,
    written: tuple[Path, Entry] | None = None,
    companions: Companions | None = None,
) -> ImageResult:
    """One platform's result; ``wanted`` is the spec with the run's platform choice applied,
    ``written`` where the image went and the entry it got there, ``companions`` the
    referrers carried with it and its signature check."""
    chosen = platform or item.platform
    path, entry = written or (None, None)
    companions = companions or Companions()
    return ImageResult(
        spec,
        status,
        manifest_digest=item.manifest.digest,
        source_digest=(item.index or item.manifest).digest,
        config_digest=item.content.config.digest,
        # Normalized, so an index's "arm64/v8" reads as the "arm64" it means.
        platform=chosen.normalized() if chosen else None,
        size=item.size,
        layers=item.content.layers,
        archive=path,
        written_digest=entry.image.digest if entry else None,
        narrowed=entry.narrowed if entry else None,
        all_platforms=wanted.all_platforms,
        referrers=companions.records() if entry and entry.image.referrers else (),
        skipped_referrers=companions.skipped,
        signature=companions.signature,
    )
