"""Checking outputs against a lock file: every image it pins is there, under its name, with the
pinned digest.

The far side of an air gap receives archives and the lock file the connected side pulled them
from; this says whether what arrived is what was pinned. An image pinned to an index may arrive
as that index (every platform kept), as one platform's manifest, or as the index narrowed to the
locked platforms; bulkpull carries the registry's index next to the last two, so such an entry
is checked against the index itself. A lock line without ``platform=`` means the default
platform, as it does for a pull. Imports ``digest``, ``errors``, ``manifest``, ``platform``,
``reference``, ``imagelist`` and ``verify``; reading the lock file is its only I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bulkpull.digest import Digest
from bulkpull.errors import ContentError, InvalidReferenceError
from bulkpull.imagelist import ImageSpec, read_image_list
from bulkpull.manifest import ImageIndex, choose_platform, parse_manifest
from bulkpull.output.verify import ArchiveCheck, ArchiveEntry
from bulkpull.platform import DEFAULT_PLATFORM
from bulkpull.reference import parse_reference


@dataclass(frozen=True, slots=True)
class LockCheck:
    """One line per image of the lock: ``found`` where it matched, ``problems`` where not."""

    lock: Path
    found: tuple[str, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_lock(lock: Path | str, checks: Sequence[ArchiveCheck]) -> LockCheck:
    """Check every image of the lock file ``lock`` against the outputs that ``checks`` (from
    :func:`verify_archive`) describe. A lock that is not a valid image list raises
    :class:`ImageListError`."""
    found: list[str] = []
    problems: list[str] = []
    for spec in read_image_list(lock):
        problem, text = _check_spec(spec, checks)
        (problems if problem else found).append(text)
    return LockCheck(Path(lock), tuple(found), tuple(problems))


def _check_spec(spec: ImageSpec, checks: Sequence[ArchiveCheck]) -> tuple[bool, str]:
    """(whether it is a problem, what to say) for one lock line."""
    name = str(spec.target)
    holders = [
        (check, entry)
        for check in checks
        for entry in check.entries
        if _same_name(entry.name, name)
    ]
    if not holders:
        if any(_same_name(tag, name) for check in checks for tag in check.names):
            return True, f"{name}: only in a manifest.json, which records no digest to check"
        return True, f"{name}: not in {', '.join(str(check.path) for check in checks)}"
    locked = spec.source.digest
    places = ", ".join(dict.fromkeys(str(check.path) for check, _ in holders))
    if locked is None:
        return False, f"{name}: in {places} (the lock pins no digest for it)"
    try:
        reason = _mismatch(spec, locked, holders)
    except ContentError as exc:  # the locked index lacks a locked platform
        reason = f": {exc}"
    if reason is not None:
        return True, f"{name}{reason}"
    return False, f"{name}@{locked} in {places}"


def _same_name(candidate: str | None, name: str) -> bool:
    if candidate is None:
        return False
    try:
        return str(parse_reference(candidate)) == name
    except InvalidReferenceError:
        return False


def _mismatch(
    spec: ImageSpec, locked: Digest, holders: list[tuple[ArchiveCheck, ArchiveEntry]]
) -> str | None:
    """Why the entries of this name are not what the lock pins, or None when they are.

    Each entry must be the pinned digest, or (for a pinned index carried along) hold some of
    the manifests the lock asks of it; together they must hold all of them: per-image
    archives of several platforms have one entry each.
    """
    wanted: dict[str, Digest] = {}
    covered: set[Digest] = set()
    for check, entry in holders:
        written = entry.descriptor.digest
        upstream = _index(check.document(locked))
        if upstream is None:
            if written != locked:
                return f" in {check.path}: is {written}; the lock pins {locked}"
            continue  # the pinned manifest itself
        wanted = _platform_manifests(spec, upstream, locked)
        if written == locked:
            covered |= {digest for digest in wanted.values() if check.holds(digest)}
            continue
        if spec.all_platforms:
            return f" in {check.path}: is {written}, not the locked index {locked}"
        narrowed = _index(check.document(written))
        kept = {child.digest for child in narrowed.manifests} if narrowed else {written}
        if not kept <= set(wanted.values()):
            shown = ", ".join(f"{platform} {digest}" for platform, digest in wanted.items())
            return f" in {check.path}: is {written}, not the locked index's {shown}"
        covered |= kept
    missing = [f"{what} ({digest})" for what, digest in wanted.items() if digest not in covered]
    return f": the manifests for {', '.join(missing)} are missing" if missing else None


def _platform_manifests(spec: ImageSpec, index: ImageIndex, locked: Digest) -> dict[str, Digest]:
    """What the lock line asks of its index: every entry, or each locked platform's manifest
    (:class:`ContentError` when the index has none for one)."""
    if spec.all_platforms:
        return {str(entry.platform or entry.digest): entry.digest for entry in index.manifests}
    what = f"the locked index {locked}"
    return {
        str(platform): choose_platform(index, platform, what).digest
        for platform in spec.platforms or (DEFAULT_PLATFORM,)
    }


def _index(document: bytes | None) -> ImageIndex | None:
    if document is None:
        return None
    try:
        parsed = parse_manifest(document, "", "index")
    except ContentError:
        return None
    return parsed if isinstance(parsed, ImageIndex) else None
