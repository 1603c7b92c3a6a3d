"""One part of a list shared out among N processes: ``--shard K/N``.

A list of thousands of images outgrows one machine; a Kubernetes Indexed Job (or N cron jobs)
runs N processes on the same list, each told its index. Each image belongs to exactly one part,
chosen by a hash of its normalized source reference, so that the N parts are disjoint, their
union is the list, and every process computes the same partition without talking to the others.
The hash is SHA-256, not Python's ``hash`` (salted per process), and the reference is the
normalized one (``alpine`` and ``docker.io/library/alpine:latest`` are one image, one part).
Every line naming the same source lands in the same part, so its blobs are fetched once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from bulkpull.errors import InvalidOptionError
from bulkpull.imagelist import ImageSpec
from bulkpull.reference import Reference

FORM = "K/N, a part K (from 0) of N, such as 0/3"


@dataclass(frozen=True)
class Shard:
    """Part ``index`` of ``count``; ``Shard(0, 1)`` is the whole list."""

    index: int
    count: int

    def __post_init__(self) -> None:
        wrong = _out_of_range(self.index, self.count)
        if wrong:
            raise InvalidOptionError(f"shard {self.index}/{self.count}: {wrong}; expected {FORM}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``2/5`` (as ``--shard`` and ``BULKPULL_SHARD`` give it), in ASCII digits: ``int``
        would also read ``٣/5`` as 3/5, a part no other process of the Job was told."""
        index, slash, count = text.strip().partition("/")
        if not (slash and _is_number(index) and _is_number(count)):
            raise InvalidOptionError(f"shard {text!r}: expected {FORM}")
        return cls(int(index), int(count))

    def takes(self, reference: Reference) -> bool:
        """Whether the image ``reference`` names belongs to this part."""
        return part_of(reference, self.count) == self.index

    def select(self, specs: Iterable[ImageSpec]) -> list[ImageSpec]:
        """The specs whose source belongs to this part, in list order."""
        return [spec for spec in specs if self.takes(spec.source)]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdecimal()


def _out_of_range(index: int, count: int) -> str:
    """Which number of ``index/count`` is wrong, in words; "" when neither is. The usual
    slip is counting parts from 1 (pod 3 of 3 as ``3/3``)."""
    if count < 1:
        return "N must be at least 1"
    if not 0 <= index < count:
        return "K must be below N" if index >= count else "K must be at least 0"
    return ""


def part_of(reference: Reference, count: int) -> int:
    """The part (0 to ``count - 1``) the image belongs to, the same in every process."""
    digest = hashlib.sha256(str(reference).encode()).digest()
    return int.from_bytes(digest[:8], "big") % count
