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
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from bulkpull.digest import Digest
from bulkpull.errors import ImageListError, InvalidPlatformError, InvalidReferenceError
from bulkpull.platform import Platform
from bulkpull.reference import Reference, parse_reference

STDIN = "-"
PLATFORM_FIELD = "platform="
# Keeps every manifest an index lists (skopeo's --all, hauler's default), attestations included.
ALL_PLATFORMS = "all"
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
        try:
            spec = _parse_line(fields, f"{name}:{number}")
        except (InvalidReferenceError, InvalidPlatformError) as exc:
            raise ImageListError(name, number, str(exc)) from exc
        except ValueError as exc:
            raise ImageListError(name, number, f"{exc}, got {line.strip()!r}") from exc
        earlier = claimed.setdefault(spec.archive_filename, number)
        if earlier != number:
            raise ImageListError(
                name, number, f"{spec.target} would overwrite the archive of line {earlier}"
            )
        specs.append(spec)
    return specs


def _parse_line(fields: list[str], origin: str) -> ImageSpec:
    names = [field for field in fields if not field.startswith(PLATFORM_FIELD)]
    settings = [field.removeprefix(PLATFORM_FIELD) for field in fields if field not in names]
    if not 1 <= len(names) <= 2 or len(settings) > 1:
        raise ValueError("expected 'SOURCE [NEW_NAME] [platform=OS/ARCH[,...]|platform=all]'")
    spec = image_spec(names[0], names[1] if len(names) == 2 else None, origin)
    if settings and wants_all_platforms(settings[0]):
        spec = replace(spec, all_platforms=True)
    elif settings:
        spec = replace(spec, platforms=parse_platforms(settings[0]))
    return spec


def wants_all_platforms(text: str) -> bool:
    """Whether a platform setting (``--platform``, ``platform=``) is ``all``.

    ``all`` next to other platforms is refused rather than guessed at.
    """
    items = [item.strip().lower() for item in text.replace(" ", ",").split(",") if item.strip()]
    if ALL_PLATFORMS not in items:
        return False
    if len(items) > 1:
        raise InvalidPlatformError(
            f"platform {ALL_PLATFORMS!r} keeps every platform; it cannot be combined with "
            f"others, got {text!r}"
        )
    return True


def parse_platforms(text: str) -> tuple[Platform, ...]:
    """``linux/amd64,linux/arm64`` as platforms, in order and without repeats."""
    platforms = tuple(Platform.parse(item) for item in text.split(",") if item)
    if not platforms:
        raise InvalidPlatformError("no platform given")
    return tuple(dict.fromkeys(platforms))


def read_image_list(path: str | Path) -> list[ImageSpec]:
    """Read and parse a list file, or standard input for ``-``."""
    if str(path) == STDIN:
        return parse_image_list(sys.stdin, "<stdin>")
    try:
        with Path(path).open(encoding="utf-8-sig") as handle:  # tolerate a BOM
            return parse_image_list(handle, str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise ImageListError(str(path), 0, f"cannot read: {exc}") from exc
