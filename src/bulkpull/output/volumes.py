"""A bundle split into volumes: ``NAME.tar.001``, ``NAME.tar.002``, … that ``cat`` joins into the
plain bundle, and their sha256 list ``NAME.tar.sha256`` in the format ``sha256sum -c`` reads.

The writer (``filling``) lays the bundle out as usual and gives each volume a partial file of
its own, so the disk never holds the bundle twice and a volume may be written to a medium that
limits the size of a file (FAT32: 4 GiB). When every slot is verified, :func:`install_volumes`
hashes each volume, removes the old list, renames every volume into place, removes volumes an
earlier, larger set left past the new last one, and writes the list last; an unsplit bundle an
earlier run left under ``NAME.tar`` goes then, as a set does when a plain bundle is written
(:func:`remove_other_form`). The list is what
makes a set whole: volumes without one are an unfinished set (a run stopped while installing),
which a rerun writes anew, and a volume that does not hash to its line is damaged, and named.

The readers (``sources``, ``verify``, ``readback``) find a set from any of its names
(:func:`find_volumes`: ``NAME.tar.001``, ``NAME.tar.sha256``, or ``NAME.tar`` when only the
volumes are there) and read it as one file (:func:`joined`), never joined on disk.
Imports ``digest``, ``errors``, ``files`` and ``ranges``.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import threading
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from bulkpull.errors import OutputError, SourceError
from bulkpull.files import check, open_regular, temporary_name
from bulkpull.ranges import COPY_CHUNK, Spread, pieces, read_at

MAX_VOLUMES = 999
LIST_SUFFIX = ".sha256"
MAX_LIST_BYTES = 1024 * 1024
_NUMBER = re.compile(r"\.(\d{3})")
_LINE = re.compile(r"([0-9a-f]{64}) [ *](.+)")


def volume_path(final: Path, number: int) -> Path:
    """The name of volume ``number`` (from 1) of the bundle ``final``: ``NAME.tar.001``."""
    return final.with_name(f"{final.name}.{number:03d}")


def list_path(final: Path) -> Path:
    return final.with_name(final.name + LIST_SUFFIX)


def volume_sizes(total: int, volume: int, final: Path) -> tuple[int, ...]:
    """The size of each volume of a bundle of ``total`` bytes in volumes of ``volume``."""
    count = max(1, -(-total // volume))
    if count > MAX_VOLUMES:
        raise OutputError(
            f"bundle {final}: {total} bytes would be {count} volumes of {volume} bytes; at most "
            f"{MAX_VOLUMES} (split into larger volumes)"
        )
    return (volume,) * (count - 1) + (total - volume * (count - 1),)


def partial_base(final: Path) -> Path:
    """The name the partial volumes of ``final`` are made for (``NAME.tar.volumes``, made
    unique as any temporary is): never one that ``cat NAME.tar.0*`` would join."""
    return final.with_name(final.name + ".volumes")


def partial_paths(head: Path, count: int) -> list[Path]:
    """The partial files of a set being written: volume 1 is ``head`` (the partial that is
    locked and resumed, as an unsplit archive's is), volume N beside it as ``head.00N``."""
    return [head] + [head.with_name(f"{head.name}.{n:03d}") for n in range(2, count + 1)]


def partial_siblings(head: Path) -> list[Path]:
    """The further volumes of a partial set that an earlier run left beside ``head``."""
    try:
        with os.scandir(head.parent) as entries:
            names = [entry.name for entry in entries if entry.name.startswith(head.name + ".")]
    except OSError:
        return []
    return [head.with_name(n) for n in sorted(names) if _NUMBER.fullmatch(n[len(head.name) :])]


def install_volumes(
    final: Path, partials: Sequence[Path], spread: Spread, stop: threading.Event
) -> None:
    """Hash each verified volume and give the set its final names, the list last (see the
    module); ``stop`` is looked at between volumes, before anything is renamed."""
    lines = []
    for number, (fd, size) in enumerate(zip(spread.fds, spread.sizes, strict=True), 1):
        check(stop)
        lines.append(f"{_hash(fd, size)}  {volume_path(final, number).name}\n")
    listed = list_path(final)
    with suppress(FileNotFoundError):
        os.unlink(listed)
    # Last to first: until volume 1 (the partial a rerun finds) is renamed, the partials not
    # yet renamed are still found with it, and removed.
    for number in range(len(partials), 0, -1):
        os.replace(partials[number - 1], volume_path(final, number))
    _remove_beyond(final, len(partials))
    temporary = temporary_name(listed)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write("".join(lines).encode())
        os.replace(temporary, listed)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _hash(fd: int, size: int) -> str:
    digest = hashlib.sha256()
    for offset in range(0, size, COPY_CHUNK):
        digest.update(read_at(fd, offset, min(COPY_CHUNK, size - offset)))
    return digest.hexdigest()


_HASHED: dict[tuple[int, int, int, int, int], str] = {}


def _hash_once(fd: int) -> str:
    """A volume's sha256, hashed once per process while the file is unchanged: a push checks
    its volumes when the command line names its images, and again when it starts."""
    found = os.fstat(fd)
    key = (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)
    if key not in _HASHED:
        _HASHED[key] = _hash(fd, found.st_size)
    return _HASHED[key]


def remove_other_form(final: Path, *, split: bool) -> None:
    """Remove what an earlier run left of the bundle in its other form: the plain ``NAME.tar``
    beside a set of volumes, or a set beside a plain bundle (its list first, so that it is
    never taken for a whole set). Left there, it is what ``push NAME.tar`` or ``cat
    NAME.tar.0*`` would read: an older bundle under the name just written. A ``NAME.tar.sha256``
    that is not a list of volumes (``sha256sum NAME.tar``'s) is the user's, and stays."""
    if split:
        with suppress(FileNotFoundError):
            if not stat.S_ISDIR(os.lstat(final).st_mode):
                os.unlink(final)
        return
    try:
        found = find_volumes(list_path(final))
    except SourceError:
        return
    if found is not None:
        with suppress(FileNotFoundError):
            os.unlink(list_path(final))
        for volume in found.paths:
            with suppress(FileNotFoundError):
                os.unlink(volume)


def _remove_beyond(final: Path, count: int) -> None:
    """Remove volumes numbered past ``count`` that an earlier set of more volumes left: ``cat
    NAME.tar.0*`` would join them too."""
    number = count + 1
    while number <= MAX_VOLUMES:
        try:
            os.unlink(volume_path(final, number))
        except FileNotFoundError:
            if not volume_path(final, number + 1).exists():
                return
        number += 1


@dataclass(frozen=True, slots=True)
class VolumeSet:
    """A split bundle as its list names it: each volume's path and the sha256 it must have."""

    final: Path
    listed: tuple[tuple[Path, str], ...]

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(path for path, _ in self.listed)

    def problems(self) -> list[str]:
        """Each volume that is missing, or does not hash to its line (it is read whole)."""
        found = []
        for path, expected in self.listed:
            try:
                fd = open_regular(path)
            except FileNotFoundError:
                found.append(f"{path.name} is missing")
                continue
            except (OSError, OutputError) as exc:
                found.append(f"{path.name}: cannot read it: {exc}")
                continue
            try:
                actual = _hash_once(fd)
            finally:
                os.close(fd)
            if actual != expected:
                found.append(
                    f"{path.name}: sha256 {actual} does not match {list_path(self.final).name}"
                    f" ({expected})"
                )
        return found

    def open(self) -> Spread:
        """Every volume open for reading, as one file; a volume missing is a
        :class:`SourceError` that names each volume missing or damaged."""
        fds: list[int] = []
        try:
            for path in self.paths:
                try:
                    fds.append(open_regular(path))
                except FileNotFoundError:
                    found = self.problems()
                    raise SourceError("\n".join(f"{self.final}: {p}" for p in found)) from None
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return Spread(tuple(fds), tuple(os.fstat(fd).st_size for fd in fds))


def whole_set(final: Path, volume: int) -> BinaryIO | None:
    """The volumes of ``final`` open as one file, when they are a whole set of volumes of
    ``volume`` bytes: each but the last that size, the last no larger, none missing (a set of
    another size is written anew); else None. Not re-hashed here: ``verify`` does that."""
    try:
        found = find_volumes(volume_path(final, 1))
        spread = found.open() if found is not None else None
    except (SourceError, OSError, OutputError):
        return None
    if spread is None:
        return None
    if any(size != volume for size in spread.sizes[:-1]) or spread.sizes[-1] > volume:
        for fd in spread.fds:
            os.close(fd)
        return None
    return joined(spread)


def listed_volumes(final: Path, volume: int | None) -> list[Path]:
    """The volumes the list of the bundle ``final`` names, and the list last; none when it
    is not split (``volume`` None) or its list cannot be read."""
    try:
        found = find_volumes(list_path(final)) if volume is not None else None
    except SourceError:
        return []
    return [*found.paths, list_path(final)] if found is not None else []


def find_volumes(path: Path) -> VolumeSet | None:
    """The volume set ``path`` names: its list, one of its volumes, or the bundle's own name
    when only the volumes are there; None when ``path`` is anything else (a plain archive,
    a layout). A list that is not one is a :class:`SourceError`."""
    name = path.name
    if name.endswith(LIST_SUFFIX):
        final = path.with_name(name.removesuffix(LIST_SUFFIX))
    elif _NUMBER.fullmatch(name[-4:]) and len(name) > 4:
        final = path.with_name(name[:-4])
    elif not path.exists() and list_path(path).exists():
        final = path
    else:
        return None
    listed = list_path(final)
    try:
        fd = open_regular(listed)
    except FileNotFoundError:
        if name.endswith(LIST_SUFFIX) or not final.exists():
            raise SourceError(
                f"{path}: no {listed.name} beside it, so not a complete set of volumes "
                "(a run that wrote them was stopped; run it again)"
            ) from None
        return None
    except OutputError as exc:
        raise SourceError(str(exc)) from None
    with os.fdopen(fd, "rb") as handle:
        text = handle.read(MAX_LIST_BYTES).decode(errors="replace")
    return VolumeSet(final, _parse(text, final, listed))


def _parse(text: str, final: Path, listed: Path) -> tuple[tuple[Path, str], ...]:
    """The list's lines in volume order; each must name a volume of ``final`` beside it."""
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        found = _LINE.fullmatch(line.strip())
        expected = volume_path(final, number).name
        if found is None or found.group(2) != expected:
            raise SourceError(
                f"{listed}:{number}: expected '<sha256>  {expected}' (the list bulkpull writes "
                "with --split)"
            )
        entries.append((final.with_name(expected), found.group(1)))
    if not entries:
        raise SourceError(f"{listed}: names no volume")
    return tuple(entries)


def joined(spread: Spread) -> BinaryIO:
    """The volumes of ``spread`` as one read-only file, for ``tarfile``; closing it closes
    them."""
    return io.BufferedReader(_SpreadFile(spread), COPY_CHUNK)


class _SpreadFile(io.RawIOBase):
    def __init__(self, spread: Spread) -> None:
        super().__init__()
        self.spread = spread
        self.size = sum(spread.sizes)
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        wanted = min(len(buffer), max(0, self.size - self.position))
        data = read_at(self.spread, self.position, wanted)
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            for fd in self.spread.fds:
                os.close(fd)
        super().close()


def extents(
    sizes: Sequence[int], paths: Sequence[Path], offset: int, size: int
) -> list[tuple[Path, int, int]]:
    """Where ``size`` bytes from ``offset`` of a set are: (volume, offset in it, length)."""
    return [(paths[index], inside, n) for index, inside, n in pieces(sizes, offset, size)]
