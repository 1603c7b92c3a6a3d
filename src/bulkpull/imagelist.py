"""The image list: what to pull, what to call it, and which archive it goes to.

One image per line, ``SOURCE [NEW_NAME]``; blank lines and ``#`` comments are ignored. The whole
list is parsed before any network I/O, so a typo on line 300 stops the run at once with
``FILE:LINE: reason`` instead of after an hour of downloads. Imports ``errors``, ``digest`` and
``reference``; reading the file (or stdin) is its only I/O.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bulkpull.errors import ImageListError, InvalidReferenceError
from bulkpull.reference import Reference, parse_reference

STDIN = "-"
_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """One image to pull: where from (``source``) and under which name (``target``).

    ``target`` always has a tag and never a digest: it is the name loaders give the image.
    ``origin`` says where the spec came from (``FILE:LINE``) for messages.
    """

    source: Reference
    target: Reference
    origin: str = ""

    @property
    def archive_filename(self) -> str:
        """``<familiar target>.tar`` with ``/`` and ``:`` (and anything unsafe) as ``_``."""
        return _UNSAFE_FILENAME_CHARS.sub("_", self.target.familiar()) + ".tar"


def digest_tag(reference: Reference) -> str:
    """The tag an image pulled by digest alone gets: ``sha256-<hex>``.

    ``docker load`` refuses ``RepoTags`` without a tag, and this one says exactly which image
    it is (the same convention cosign uses for its companion tags).
    """
    if reference.digest is None:
        raise ValueError(f"{reference} has no digest")
    return f"sha256-{reference.digest.hex}"


def image_spec(source: str, new_name: str | None = None, origin: str = "") -> ImageSpec:
    """Parse a source reference and an optional new name into an :class:`ImageSpec`.

    A ``NEW_NAME`` without a tag keeps the source's tag, as ``skopeo copy`` users expect when
    moving ``alpine:3.19`` to ``registry.example/alpine``.
    """
    parsed = parse_reference(source)
    if new_name is None:
        target = parsed if parsed.tag else parsed.with_tag(digest_tag(parsed))
        return ImageSpec(parsed, Reference(target.domain, target.path, target.tag), origin)
    renamed = parse_reference(new_name)
    if renamed.digest is not None:
        raise InvalidReferenceError(new_name, "a new name cannot carry a digest")
    if not _has_explicit_tag(new_name):
        renamed = renamed.with_tag(parsed.tag or digest_tag(parsed))
    return ImageSpec(parsed, renamed, origin)


def _has_explicit_tag(text: str) -> bool:
    return ":" in text.rpartition("/")[2]


def parse_image_list(lines: Iterable[str], name: str) -> list[ImageSpec]:
    """Parse every line; the first bad line raises :class:`ImageListError` (``FILE:LINE``).

    Two lines that would write the same archive are refused too: the second would silently
    overwrite the first.
    """
    specs: list[ImageSpec] = []
    claimed: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) > 2:
            raise ImageListError(
                name, number, f"expected 'SOURCE [NEW_NAME]', got {line.strip()!r}"
            )
        try:
            spec = image_spec(
                fields[0], fields[1] if len(fields) == 2 else None, f"{name}:{number}"
            )
        except InvalidReferenceError as exc:
            raise ImageListError(name, number, str(exc)) from exc
        earlier = claimed.setdefault(spec.archive_filename, number)
        if earlier != number:
            raise ImageListError(
                name, number, f"{spec.target} would overwrite the archive of line {earlier}"
            )
        specs.append(spec)
    return specs


def read_image_list(path: str | Path) -> list[ImageSpec]:
    """Read and parse a list file, or standard input for ``-``."""
    if str(path) == STDIN:
        return parse_image_list(sys.stdin, "<stdin>")
    try:
        with Path(path).open(encoding="utf-8-sig") as handle:  # tolerate a BOM
            return parse_image_list(handle, str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise ImageListError(str(path), 0, f"cannot read: {exc}") from exc
