"""The image list: what to pull, what to call it, and which archive it goes to.

One image per line, ``SOURCE [NEW_NAME] [platform=OS/ARCH[/VARIANT][,...]|platform=all]``; blank
lines and ``#`` comments are ignored. The whole list is parsed before any network I/O, so a typo
on line 300 stops the run at once with ``FILE:LINE: reason`` instead of after an hour of
downloads. Imports
``errors``, ``reference`` and ``platform``; reading the file (or stdin) is its only I/O.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bulkpull.digest import Digest
from bulkpull.errors import ImageListError, InvalidPlatformError, InvalidReferenceError
from bulkpull.platform import (
    ALL_PLATFORMS,
    Platform,
    parse_platforms,
    wants_all_platforms,
)
from bulkpull.reference import Reference, parse_reference

STDIN = "-"
STDIN_NAME = "<stdin>"
PLATFORM_FIELD = "platform="
# The fields of a line, as an error message shows them.
_LINE_FORM = "'SOURCE [NEW_NAME] [platform=OS/ARCH[,...]|platform=all]'"
_BOM = "\ufeff"
_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """One image to pull: where from (``source``) and under which name (``target``).

    ``target`` always has a tag and never a digest: it is the name loaders give the image.
    ``platforms`` overrides the run's platforms for this image when not empty;
    ``all_platforms`` (``platform=all``) overrides them with every manifest an index lists.
    ``origin`` says where the spec came from (``FILE:LINE``) for messages.
    """

    source: Reference
    target: Reference
    origin: str = ""
    platforms: tuple[Platform, ...] = ()
    all_platforms: bool = False

    def choosing(self, platforms: tuple[Platform, ...], all_platforms: bool) -> ImageSpec:
        """This spec with the run's platform choice where its line made none.

        Under ``platform=all`` the run's platforms still say which one ``docker load`` gets.
        """
        if self.platforms:
            return self
        if self.all_platforms:
            return replace(self, platforms=platforms)
        return replace(self, platforms=platforms, all_platforms=all_platforms)

    def pinned(self, digest: Digest | None) -> str:
        """This spec as a list line with its source pinned to ``digest`` (a lock-file line).

        The new name and platforms are kept; a new name is written out only where the
        pinned source would not give the same one by itself.
        """
        source = self.source if digest is None else replace(self.source, digest=digest)
        fields = [str(source)]
        if image_spec(str(source)).target != self.target:
            fields.append(str(self.target))
        if self.all_platforms:
            fields.append(PLATFORM_FIELD + ALL_PLATFORMS)
        elif self.platforms:
            fields.append(PLATFORM_FIELD + ",".join(str(p) for p in self.platforms))
        return " ".join(fields)

    @property
    def archive_filename(self) -> str:
        """``<familiar target>.tar`` with ``/`` and ``:`` (and anything unsafe) as ``_``."""
        return _UNSAFE_FILENAME_CHARS.sub("_", self.target.familiar()) + ".tar"


def archive_name(chosen: ImageSpec, platform: Platform | None) -> str:
    """The file name of the image's own archive for ``platform``, one of the platforms of
    ``chosen`` (the spec with the run's platform choice made, :meth:`ImageSpec.choosing`).

    The platform is part of the name only when several were asked for
    (``nginx_1.27_linux_arm64.tar``), since each then gets an archive of its own; with
    ``platform=all`` the one archive holds the whole index and keeps the plain name. The one
    naming rule: outputs name their files with it, and :func:`check_archive_names` predicts
    them with it, so a list is refused for exactly the overwrites a pull would make.
    """
    if platform is None or chosen.all_platforms or len(chosen.platforms) <= 1:
        return chosen.archive_filename
    suffix = "_" + str(platform.normalized()).replace("/", "_")
    return chosen.archive_filename.removesuffix(".tar") + suffix + ".tar"


def archive_names(chosen: ImageSpec) -> frozenset[str]:
    """Every name :func:`archive_name` may give the image's archives: one per platform asked
    for, and the plain name an image that is not multi-platform gets whatever was asked."""
    return frozenset(archive_name(chosen, platform) for platform in (None, *chosen.platforms))


def check_archive_names(
    specs: Sequence[ImageSpec], platforms: Sequence[Platform], all_platforms: bool = False
) -> None:
    """Refuse two images that would write the same archive: the second would silently
    overwrite the first. ``platforms`` and ``all_platforms`` are the run's choice, for images
    whose line makes none. A line repeating an earlier image is no such second image: it is
    pulled once (:func:`distinct_targets`), so it writes no archive of its own.

    Raises :class:`ImageListError` at the later image: its ``FILE:LINE``, else its position.
    """
    claimed: dict[str, int] = {}
    for index, spec in enumerate(specs):
        chosen = spec.choosing(tuple(platforms), all_platforms)
        for name in sorted(archive_names(chosen)):
            first = claimed.setdefault(name, index)
            if first != index and not _repeats(specs[first], spec):
                source, line = _origin(spec, index)
                before, before_line = _origin(specs[first], first)
                named = f"line {before_line}" if before == source and before_line else before
                raise ImageListError(
                    source, line, f"{spec.target} would overwrite {name}, the archive of {named}"
                )


def distinct_targets(specs: Sequence[ImageSpec]) -> list[ImageSpec]:
    """The images with each name once, as a bundle, a layout or a registry holds them: a line
    that repeats an earlier image (same source, same platforms) is dropped, and a line giving
    another image an earlier line's name is refused, since one of the two would be lost.

    Raises :class:`ImageListError` at the later image: its ``FILE:LINE``, else its position.
    """
    claimed: dict[Reference, tuple[int, ImageSpec]] = {}
    kept: list[ImageSpec] = []
    for index, spec in enumerate(specs):
        first_index, first = claimed.setdefault(spec.target, (index, spec))
        if first_index == index:
            kept.append(spec)
        elif _image_of(first) != _image_of(spec):
            source, line = _origin(spec, index)
            before, before_line = _origin(first, first_index)
            named = f"line {before_line}" if before == source and before_line else before
            raise ImageListError(source, line, f"{spec.target} is already the name of {named}")
    return kept


def _image_of(spec: ImageSpec) -> tuple[object, ...]:
    return spec.source, spec.platforms, spec.all_platforms


def _repeats(earlier: ImageSpec, later: ImageSpec) -> bool:
    """Whether ``later`` is ``earlier`` again: the same image under the same name."""
    return earlier.target == later.target and _image_of(earlier) == _image_of(later)


def _origin(spec: ImageSpec, index: int) -> tuple[str, int | None]:
    """Where ``spec`` came from as (list, line): its ``FILE:LINE`` split, else how it was
    given (``--image REF``) or its position among the images (``image 3 (REF)``)."""
    source, _, line = spec.origin.rpartition(":")
    if source and line.isdigit():
        return source, int(line)
    if spec.origin:
        return f"{spec.origin} {spec.source}", None
    return f"image {index + 1} ({spec.source})", None


def digest_tag(reference: Reference) -> str:
    """The tag an image pulled by digest alone gets: ``sha256-<hex>``.

    ``docker load`` refuses ``RepoTags`` without a tag, and this one says exactly which image
    it is (the same convention cosign uses for its companion tags).
    """
    if reference.digest is None:
        raise InvalidReferenceError(str(reference), "no digest to name a tag after")
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

    A byte order mark before the first line is ignored, as Windows editors write one. Lines
    that would write the same archive are not refused here: only a pull into archives writes
    files named after its images, and it checks with :func:`check_archive_names` (a copy, a
    bundle or a layout takes such a list as it is).
    """
    specs: list[ImageSpec] = []
    for number, line in enumerate(lines, start=1):
        fields = line.removeprefix(_BOM if number == 1 else "").split("#", 1)[0].split()
        if not fields:
            continue
        names = [field for field in fields if not field.startswith(PLATFORM_FIELD)]
        settings = [field.removeprefix(PLATFORM_FIELD) for field in fields if field not in names]
        if not 1 <= len(names) <= 2 or len(settings) > 1:
            raise ImageListError(name, number, f"expected {_LINE_FORM}, got {line.strip()!r}")
        try:
            specs.append(_parse_line(names, settings, f"{name}:{number}"))
        except (InvalidReferenceError, InvalidPlatformError) as exc:
            raise ImageListError(name, number, str(exc)) from exc
    return specs


def _parse_line(names: list[str], settings: list[str], origin: str) -> ImageSpec:
    """The spec of a line's one or two names and at most one platform setting."""
    spec = image_spec(names[0], names[1] if len(names) == 2 else None, origin)
    if settings and wants_all_platforms(settings[0]):
        spec = replace(spec, all_platforms=True)
    elif settings:
        spec = replace(spec, platforms=parse_platforms(settings[0]))
    return spec


def read_image_list(path: str | Path) -> list[ImageSpec]:
    """Read and parse a list file, or standard input for ``-``."""
    if str(path) == STDIN:
        if sys.stdin is None:  # started with standard input closed (``<&-``)
            raise ImageListError(STDIN_NAME, None, "cannot read: standard input is closed")
        return _parse_stream(sys.stdin, STDIN_NAME)
    try:
        with Path(path).open(encoding="utf-8") as handle:
            return _parse_stream(handle, str(path))
    except OSError as exc:
        raise ImageListError(str(path), None, f"cannot read: {exc.strerror or exc}") from exc


def _parse_stream(lines: Iterable[str], name: str) -> list[ImageSpec]:
    try:
        return parse_image_list(lines, name)
    except UnicodeDecodeError as exc:
        raise ImageListError(name, None, f"cannot read: not UTF-8 text ({exc.reason})") from exc
