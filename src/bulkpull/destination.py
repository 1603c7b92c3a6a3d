"""Where a pull writes: archives in a directory, one bundle, or an OCI layout directory.

A destination is a value, made before anything on disk is looked at; the outputs check and
create it when a pull starts (a file in the way is a ``DestinationError`` then, before any
request). It also says where the blob store of a pull into it lives (a layout's), so that a
dry run, or any other tool, finds what earlier pulls verified there. A pull may take several
destinations, each blob fetched once for all of them. A bundle may be split into volumes of at
most a given size (``--split 4GiB``), for media and gateways that limit the size of a file:
:func:`parse_size` reads such sizes in SI (``700MB``) and IEC (``4GiB``) units. Imports
``errors``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from bulkpull.errors import InvalidOptionError

DestinationKind = Literal["archives", "bundle", "oci-layout"]

# The smallest volume a bundle is split into: smaller ones would be thousands of files for a
# bundle of a few GB, and no medium limits a file to less.
MIN_VOLUME_BYTES = 1024 * 1024
_UNITS = {
    "": 1,
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "K": 1024,
    "M": 1024**2,
    "G": 1024**3,
    "T": 1024**4,
    "KIB": 1024,
    "MIB": 1024**2,
    "GIB": 1024**3,
    "TIB": 1024**4,
}
_SIZE = re.compile(r"\s*(\d{1,15})\s*([A-Za-z]*)\s*")


def parse_size(text: str) -> int:
    """Bytes in ``text``: a whole number with an SI unit (``700MB``: 700·1000²) or an IEC one
    (``4GiB``: 4·1024³; ``K``, ``M``, ``G`` and ``T`` alone are IEC, as ``split -b`` reads
    them), or none (bytes). Anything else is an :class:`InvalidOptionError`."""
    found = _SIZE.fullmatch(text)
    unit = _UNITS.get(found.group(2).upper()) if found else None
    if found is None or unit is None:
        raise InvalidOptionError(
            f"size {text!r}: expected a number and a unit such as 4GiB, 700MB or 10MiB "
            "(SI: kB MB GB TB; IEC: KiB MiB GiB TiB)"
        )
    return int(found.group(1)) * unit


@dataclass(frozen=True, slots=True)
class Destination:
    """Where pulled images go; made with :meth:`archives`, :meth:`bundle` or :meth:`oci_layout`.

    ``archives``: one archive per image (and platform) in the directory ``path``, named after
    the image. ``bundle``: every image in the one archive ``path``. ``oci-layout``: every image
    in the OCI image layout directory ``path`` (created, or added to); its ``blobs`` directory
    is the blob store itself. ``split``: a bundle's volumes, at most this many bytes each
    (``PATH.001``, ``PATH.002``, … and their sha256 list ``PATH.sha256``); None for one file.
    """

    kind: DestinationKind
    path: Path
    split: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in get_args(DestinationKind):
            kinds = ", ".join(get_args(DestinationKind))
            raise InvalidOptionError(f"destination kind {self.kind!r}: expected one of {kinds}")
        if not isinstance(self.path, Path):
            raise InvalidOptionError(f"destination path {self.path!r}: expected a pathlib.Path")
        if self.split is not None and self.kind != "bundle":
            raise InvalidOptionError("only a bundle is split into volumes")
        if self.split is not None and self.split < MIN_VOLUME_BYTES:
            raise InvalidOptionError(
                f"volumes of {self.split} bytes: a bundle is split into volumes of at least "
                f"{MIN_VOLUME_BYTES} bytes (1MiB)"
            )

    @classmethod
    def archives(cls, directory: str | os.PathLike[str]) -> Destination:
        """One archive per image in ``directory``."""
        return cls("archives", Path(directory))

    @classmethod
    def bundle(cls, path: str | os.PathLike[str], *, split: int | None = None) -> Destination:
        """Every image in the one archive at ``path``; with ``split``, in volumes of at most
        that many bytes that ``cat`` joins into that archive."""
        return cls("bundle", Path(path), split)

    @classmethod
    def oci_layout(cls, directory: str | os.PathLike[str]) -> Destination:
        """Every image in the OCI image layout ``directory``."""
        return cls("oci-layout", Path(directory))

    @classmethod
    def of(cls, given: Destination | str | os.PathLike[str]) -> Destination:
        """``given`` as a destination: a path stands for a directory of archives."""
        return given if isinstance(given, Destination) else cls.archives(given)

    def store_path(self) -> Path | None:
        """The blob store a pull into this destination keeps: a layout's own ``blobs``
        directory; archives and bundles keep none (their blobs are in them; ``--cache`` keeps
        one elsewhere)."""
        return self.path / "blobs" if self.kind == "oci-layout" else None

    def __str__(self) -> str:
        return str(self.path)
