"""Content digests: the validated value and the hash-while-streaming verifier.

A digest from a manifest becomes a file name in the blob store and in archives, so only
``sha256:`` followed by exactly 64 lowercase hex digits is accepted (go-digest's rule for sha256);
anything else, ``../`` included, is refused before it reaches a path. Imports only ``errors``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from bulkpull.errors import DigestMismatchError, InvalidReferenceError

_SHA256_HEX = re.compile(r"[a-f0-9]{64}")


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    """A ``sha256:<hex>`` content digest, validated on construction."""

    hex: str

    def __post_init__(self) -> None:
        if not _SHA256_HEX.fullmatch(self.hex):
            raise InvalidReferenceError(f"sha256:{self.hex}", "not 64 lowercase hex digits")

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``sha256:<64 lowercase hex>``; every other algorithm or spelling is refused."""
        algorithm, sep, encoded = text.partition(":")
        if not sep:
            raise InvalidReferenceError(text, "digest has no algorithm")
        if algorithm != "sha256":
            raise InvalidReferenceError(text, f"unsupported digest algorithm {algorithm!r}")
        return cls(encoded)

    @classmethod
    def of(cls, data: bytes) -> Digest:
        """The digest of bytes already in memory (manifests and configs, never layers)."""
        return cls(hashlib.sha256(data).hexdigest())

    def __str__(self) -> str:
        return f"sha256:{self.hex}"

    @property
    def short(self) -> str:
        """The first 12 hex digits, as docker shows image IDs."""
        return self.hex[:12]


@dataclass(slots=True)
class DigestVerifier:
    """Hashes chunks as they stream past and checks digest and size at the end.

    The size is checked first so a truncated or overlong body reports the sizes, which is what
    a user can act on; the digest check catches everything else.
    """

    expected: Digest
    expected_size: int | None = None
    size: int = 0
    _hash: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    def restart(self) -> None:
        """Forget every byte seen: the body starts over from its first byte."""
        self._hash = hashlib.sha256()
        self.size = 0

    def copy(self) -> DigestVerifier:
        """An independent verifier that has seen the same bytes."""
        return DigestVerifier(self.expected, self.expected_size, self.size, self._hash.copy())

    @property
    def actual(self) -> Digest:
        return Digest(self._hash.hexdigest())

    def verify(self, what: str) -> None:
        """Raise :class:`DigestMismatchError` unless size and digest match the expectation."""
        if self.expected_size is not None and self.size != self.expected_size:
            raise DigestMismatchError(
                what,
                f"{self.expected} ({self.expected_size} bytes)",
                str(self.actual),
                self.size,
            )
        actual = self.actual
        if actual != self.expected:
            raise DigestMismatchError(what, str(self.expected), str(actual), self.size)
