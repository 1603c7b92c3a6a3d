"""The words and widths of what bulkpull shows: sizes, durations, errors, image names.

Plain functions from values to text, so each can be tested on its own: names shortened to stay
distinguishable in 80 columns (the prefix every row shares left out, the middle cut, the tag
kept), text fitted to a width in terminal cells. ``tally`` uses them for rows, ``display``
for everything it prints. Imports the public ``bulkpull`` API only.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from bulkpull import (
    BlobCounts,
    BulkpullError,
    Digest,
    ImageResult,
    ImageSpec,
    ImageStage,
    Platform,
    PushResult,
    PushStatus,
    Retrying,
    printable,
)

ELLIPSIS = "…"
# "GET http://host/v2/…: " in front of a registry's or the network's own words.
_REQUEST_PREFIX = re.compile(r"^[A-Z]+ \S+: ")


_UNITS = ("B", "KiB", "MiB", "GiB")


def size_text(size: float) -> str:
    """A byte count in binary units, as the live bar shows them (``12.3 MiB``)."""
    divisor, unit = _unit(size)
    return f"{size:.0f} B" if unit == "B" else f"{size / divisor:.1f} {unit}"


def _unit(size: float) -> tuple[int, str]:
    """The largest unit (up to GiB) in which ``size`` is at least 1, and its size."""
    power = 0
    while power < len(_UNITS) - 1 and size >= 1024 ** (power + 1):
        power += 1
    return 1024**power, _UNITS[power]


def sizes_text(done: int, total: int) -> str:
    """``1.2/3.0 MiB``: bytes done of a total, in the total's unit.

    Rounded down until complete, so that a blob still missing a few bytes (a small config)
    never reads as ``3.0/3.0 MiB`` beside ``2/3 blobs``: the two counts tell the same story.
    """
    divisor, unit = _unit(total)
    if unit == "B":
        return f"{done}/{total} B"
    whole = f"{total / divisor:.1f}"
    shown = whole if done >= total else f"{math.floor(done / divisor * 10) / 10:.1f}"
    if shown == whole and done < total:
        shown = f"{float(whole) - 0.1:.1f}"
    return f"{shown}/{whole} {unit}"


def count_text(count: int, noun: str) -> str:
    """``1 image``, ``2 images``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def duration_text(seconds: float) -> str:
    """``0.4 s`` for short runs, ``1:02:03`` for long ones."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def error_text(error: BulkpullError) -> str:
    """The error's own message, plus how hard bulkpull tried before giving up."""
    tries = f" (after {error.tries} tries)" if error.tries > 1 else ""
    return f"{error}{tries}"


def reason_text(error: BulkpullError) -> str:
    """Why a request failed, without the method and URL a row has no room for."""
    return _REQUEST_PREFIX.sub("", str(error), count=1)


def digest_text(digest: Digest | None, *, full: bool) -> str:
    """The whole digest, or ``sha256:`` and 12 hex digits as docker shows image IDs."""
    if digest is None:
        return "-"
    return str(digest) if full else f"sha256:{digest.short}"


def image_text(spec: ImageSpec) -> str:
    """The image as docker names it; a pinned tag without its digest (the digest column and
    the lock file carry it), a digest alone shortened."""
    source = spec.source
    if source.tag:
        return f"{source.familiar_name}:{source.tag}"
    return f"{source.familiar_name}@{digest_text(source.digest, full=False)}"


def result_fields(result: ImageResult | PushResult, *, full_digest: bool) -> list[str]:
    """Status, image, digest, platform, size, and where it went or why it failed: the same
    facts in a finished line, a summary line and a summary table row. A push has no platform
    column: its image goes where the last field says."""
    if isinstance(result, PushResult):
        return push_fields(result, full_digest=full_digest)
    if result.error is not None:
        outcome = error_text(result.error)
    elif result.archive is not None:
        # a path the user chose, shown escaped
        outcome = printable(str(result.archive)) + narrowed_text(result.narrowed)
    else:
        outcome = "-"
    return [
        result.status.value,
        image_text(result.spec),
        digest_text(result.manifest_digest, full=full_digest),
        str(result.platform) if result.platform else "-",
        size_text(result.size) if result.manifest_digest else "-",
        outcome,
    ]


def push_fields(result: PushResult, *, full_digest: bool) -> list[str]:
    """Status, image, digest, size, and its name at the target with what its blobs cost
    (or why it failed)."""
    if result.error is not None:
        outcome = error_text(result.error)
    elif result.status is PushStatus.MISSING:
        lacking = f"{size_text(result.missing)} of blobs" if result.missing else "its manifest"
        outcome = f"{result.spec.target} (lacks {lacking})"
    else:
        counts = blob_counts_text(result.blobs)
        outcome = f"{result.spec.target}" + (f" ({counts})" if counts else "")
        outcome += narrowed_text(result.narrowed)
    return [
        result.status.value,
        image_text(result.spec),
        digest_text(result.digest, full=full_digest),
        size_text(result.size) if result.digest and result.size else "-",
        outcome,
    ]


def narrowed_text(narrowed: tuple[int, int] | None) -> str:
    """`` (index narrowed to 2 of 5 manifests)``, or nothing: the one digest bulkpull makes,
    never left unsaid in a row, whether the index went into an archive or a registry."""
    if not narrowed:
        return ""
    kept, listed = narrowed
    return f" (index narrowed to {kept} of {listed} manifests)"


def blob_counts_text(counts: BlobCounts) -> str:
    """``2 blobs uploaded, 1 mounted, 3 skipped``: what happened to blobs, zeros left out."""
    parts = [
        f"{count} {what}"
        for count, what in (
            (counts.uploaded, "uploaded"),
            (counts.mounted, "mounted"),
            (counts.skipped, "skipped"),
        )
        if count
    ]
    if parts:
        number, _, what = parts[0].partition(" ")
        parts[0] = f"{count_text(int(number), 'blob')} {what}"
    return ", ".join(parts)


def retry_text(event: Retrying, seconds: float, reason: str) -> str:
    """``in 2.0 s (try 1 of 4 failed): 503 UNAVAILABLE``: when the next attempt is, which
    try failed of how many, and why."""
    tries = f"try {event.attempt} of {event.attempts} failed"
    return f"in {seconds:.1f} s ({tries}): {reason}"


def text_width(text: str) -> int:
    """Terminal cells ``text`` takes: East Asian wide characters two, combining marks none."""
    return sum(
        0 if unicodedata.combining(char) else 2 if unicodedata.east_asian_width(char) in "WF" else 1
        for char in text
    )


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` cells, an ellipsis marking the cut."""
    if text_width(text) <= width:
        return text
    kept = ""
    for char in text:
        if text_width(kept + char) > width - 1:
            break
        kept += char
    return kept + ELLIPSIS if width > 0 else ""


def shorten_middle(name: str, width: int) -> str:
    """``ghcr.io/acme/…/service:1.2``: an image name cut in its middle to ``width``.

    The tag stays whole (it is what tells ``app:1`` from ``app:2``), and more of the end of the
    repository than of its start, since names that share a registry differ at the end.
    """
    if len(name) <= width:
        return name
    repository, tag = _split_tag(name)
    room = width - len(tag) - 1
    if room < 4:
        return fit(name, width)
    head = room // 3
    return repository[:head] + ELLIPSIS + repository[len(repository) - (room - head) :] + tag


def _split_tag(name: str) -> tuple[str, str]:
    if "@" in name:
        repository, at, digest = name.partition("@")
        return repository, at + digest
    repository, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:
        return name, ""
    return repository, colon + tag


def shared_prefix(names: Sequence[str]) -> str:
    """The leading ``registry/namespace/`` every name shares, up to a ``/``; rows leave it
    out (the headline says it once), so what differs is what rows show."""
    if len(names) < 2:
        return ""
    first, last = min(names), max(names)
    length = 0
    while length < min(len(first), len(last)) and first[length] == last[length]:
        length += 1
    return first[: first.rfind("/", 0, length) + 1]


@dataclass(frozen=True)
class Labels:
    """Row labels for the images of a run: the shared prefix left out, then cut in the
    middle to ``width``; the platform added when the image is pulled for several."""

    prefix: str
    several_platforms: frozenset[ImageSpec]

    @classmethod
    def for_run(cls, specs: Sequence[ImageSpec], platforms: Sequence[Platform]) -> Labels:
        several = frozenset(spec for spec in specs if len(spec.platforms or platforms) > 1)
        return cls(shared_prefix([image_text(spec) for spec in specs]), several)

    def name(self, spec: ImageSpec) -> str:
        """The image's name without the prefix every image of the run shares."""
        return image_text(spec).removeprefix(self.prefix)

    def label(self, stage: ImageStage, width: int) -> str:
        name = self.name(stage.spec)
        platform = ""
        if stage.spec in self.several_platforms and len(stage.platforms) == 1:
            platform = f" {stage.platforms[0]}"
        return shorten_middle(name, width - len(platform)) + platform


# The total line's bar: as wide as this when there is room, and left out below the minimum.
MAX_BAR = 30
MIN_BAR = 10
# A row's own bar, and the room its note keeps before the bar gets any.
MAX_ROW_BAR = 20
MIN_ROW_BAR = 6
NOTE_ROOM = 36  # "waiting for another image's download", whole
GAP = 2  # cells between columns


def overall_layout(fields: Sequence[str], width: int) -> tuple[int, str]:
    """The total line in ``width`` cells: the bar's width (0: no bar) and the text beside it.

    As many fields as fit (they come most telling first), with a bar if there is room left for
    one: the line never wraps, and numbers go before decoration.
    """
    for count in range(len(fields), 0, -1):
        text = "  ".join(fields[:count])
        room = width - text_width(text) - GAP
        if room >= MIN_BAR:
            return min(MAX_BAR, room), text
        if text_width(text) <= width:
            return 0, text
    return 0, fit(fields[0] if fields else "", width)


@dataclass(frozen=True)
class RowLayout:
    """Column widths of the rows in flight: label, counts, the row's bar (0: none), note."""

    label: int
    counts: int
    bar: int
    note: int


def row_layout(width: int, label: int, counts: int, note: int = 0) -> RowLayout:
    """Columns for ``width`` cells, given the widest label, counts and note.

    Labels get up to two fifths of the line (names longer than that are cut in the middle),
    the note what the others leave; a bar only the room the longest note can spare.
    """
    label = min(label, max(16, width * 2 // 5))
    rest = width - label - GAP - (counts + GAP if counts else 0)
    bar = min(MAX_ROW_BAR, rest - max(NOTE_ROOM, note) - GAP)
    bar = bar if bar >= MIN_ROW_BAR else 0
    return RowLayout(label, counts, bar, max(rest - (bar + GAP if bar else 0), 0))
