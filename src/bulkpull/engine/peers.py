"""Where the other shards of a list likely put a blob: one guessed mount source per repository.

N processes copying one list into one registry (``--shard K/N``, on N machines) share nothing
but that registry, yet each knows the whole list and, by the naming rule, the repository every
image of it goes to. So, without a request, a shard can name a repository of the target that
another shard writes, as the ``from`` of the ``POST`` that opens its first upload of a blob
(``uploads``): when the other shard got there first the registry mounts the blob, else it
opens the upload that was going to be opened anyway.

The guess for a repository is the repository of the nearest image of the list (earlier before
later at equal distance) that another shard copies into another repository: lists are written
by hand or generated in order, and images listed together tend to be built together, on the
same base. Every shard computes the same guesses from the same list. Imports ``imagelist`` and
``shard``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from bulkpull.imagelist import ImageSpec
from bulkpull.shard import Shard

# How far along the list a guess is looked for: past this, neighbours say little.
_REACH = 64


def mount_guesses(plan: Sequence[ImageSpec], shard: Shard | None) -> dict[str, str]:
    """For each repository of ``plan`` (images with their targets) that ``shard`` copies into,
    one repository of the same registry that another shard copies into; none without shards."""
    if shard is None or shard.count == 1:
        return {}
    mine = [shard.takes(spec.source) for spec in plan]
    guesses: dict[str, str] = {}
    for index, spec in enumerate(plan):
        repository = spec.target.path
        if not mine[index] or repository in guesses:
            continue
        for near in _nearest(index, len(plan)):
            other = plan[near].target.path
            if not mine[near] and other != repository:
                guesses[repository] = other
                break
    return guesses


def _nearest(index: int, count: int) -> Iterator[int]:
    """The positions around ``index``, nearest first, the earlier one first."""
    for distance in range(1, _REACH + 1):
        for near in (index - distance, index + distance):
            if 0 <= near < count:
                yield near
