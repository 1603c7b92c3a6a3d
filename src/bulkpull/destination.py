"""Where a pull writes: archives in a directory, one bundle, or an OCI layout directory.

A destination is a value, made before anything on disk is looked at; the outputs check and
create it when a pull starts (a file in the way is a ``DestinationError`` then, before any
request). It also says where the blob store of a pull into it lives (a layout's), so that a
dry run, or any other tool, finds what earlier pulls verified there. A pull may take several
destinations, each blob fetched once for all of them. Imports ``errors``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from bulkpull.errors import InvalidOptionError

DestinationKind = Literal["archives", "bundle", "oci-layout"]


@dataclass(frozen=True, slots=True)
class Destination:
    """Where pulled images go; made with :meth:`archives`, :meth:`bundle` or :meth:`oci_layout`.

    ``archives``: one archive per image (and platform) in the directory ``path``, named after
    the image. ``bundle``: every image in the one archive ``path``. ``oci-layout``: every image
    in the OCI image layout directory ``path`` (created, or added to); its ``blobs`` directory
    is the blob store itself.
    """

    kind: DestinationKind
    path: Path

    def __post_init__(self) -> None:
        if self.kind not in get_args(DestinationKind):
            kinds = ", ".join(get_args(DestinationKind))
            raise InvalidOptionError(f"destination kind {self.kind!r}: expected one of {kinds}")
        if not isinstance(self.path, Path):
            raise InvalidOptionError(f"destination path {self.path!r}: expected a pathlib.Path")

    @classmethod
    def archives(cls, directory: str | os.PathLike[str]) -> Destination:
        """One archive per image in ``directory``."""
        return cls("archives", Path(directory))

    @classmethod
    def bundle(cls, path: str | os.PathLike[str]) -> Destination:
        """Every image in the one archive at ``path``."""
        return cls("bundle", Path(path))

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
