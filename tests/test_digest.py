"""Digests: only sha256 with 64 lowercase hex digits, and the streaming verifier."""

from __future__ import annotations

import hashlib

import pytest

from bulkpull.digest import Digest, DigestVerifier
from bulkpull.errors import DigestMismatchError, InvalidReferenceError

HELLO = b"hello world\n"
HELLO_HEX = hashlib.sha256(HELLO).hexdigest()


def test_parse_accepts_sha256_with_64_lowercase_hex() -> None:
    digest = Digest.parse(f"sha256:{HELLO_HEX}")

    assert digest.hex == HELLO_HEX
    assert str(digest) == f"sha256:{HELLO_HEX}"
    assert digest.short == HELLO_HEX[:12]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(f"sha256:{HELLO_HEX.upper()}", id="uppercase-hex"),
        pytest.param(f"SHA256:{HELLO_HEX}", id="uppercase-algorithm"),
        pytest.param(f"sha256:{HELLO_HEX[:63]}", id="63-digits"),
        pytest.param(f"sha256:{HELLO_HEX}0", id="65-digits"),
        pytest.param("sha256:", id="empty-hex"),
        pytest.param(f"sha256:../../{HELLO_HEX[:58]}", id="path-traversal"),
        pytest.param("sha256:../../etc/passwd", id="path"),
        pytest.param(f"sha256:{HELLO_HEX[:62]}/x", id="slash"),
        pytest.param(f"sha256:{HELLO_HEX}\n", id="trailing-newline"),
        pytest.param(f" sha256:{HELLO_HEX}", id="leading-space"),
        pytest.param("sha512:" + "a" * 128, id="sha512"),
        pytest.param("md5:" + "a" * 32, id="md5"),
        pytest.param(HELLO_HEX, id="missing-algorithm"),
        pytest.param(f":{HELLO_HEX}", id="empty-algorithm"),
        pytest.param("", id="empty"),
    ],
)
def test_parse_refuses_everything_but_sha256_lowercase_hex(text: str) -> None:
    with pytest.raises(InvalidReferenceError):
        Digest.parse(text)


@pytest.mark.parametrize("hex_part", ["", "../" * 21 + "a", HELLO_HEX.upper(), "g" * 64])
def test_constructor_validates_like_parse(hex_part: str) -> None:
    with pytest.raises(InvalidReferenceError):
        Digest(hex_part)


@pytest.mark.parametrize(
    ("data", "hex_part"),
    [
        (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        (HELLO, HELLO_HEX),
    ],
)
def test_of_hashes_bytes_with_sha256(data: bytes, hex_part: str) -> None:
    assert Digest.of(data) == Digest(hex_part)


def test_digests_compare_by_value_and_hash_alike() -> None:
    assert Digest.parse(f"sha256:{HELLO_HEX}") == Digest.of(HELLO)
    assert len({Digest.of(HELLO), Digest.of(HELLO), Digest.of(b"other")}) == 2


def test_verifier_accepts_matching_chunks_and_counts_size() -> None:
    verifier = DigestVerifier(Digest.of(HELLO), len(HELLO))
    for chunk in (HELLO[:3], memoryview(HELLO[3:7]), HELLO[7:]):
        verifier.update(chunk)

    verifier.verify("blob")

    assert verifier.size == len(HELLO)
    assert verifier.actual == Digest.of(HELLO)


def test_verifier_without_expected_size_checks_only_the_digest() -> None:
    verifier = DigestVerifier(Digest.of(HELLO))
    verifier.update(HELLO)

    verifier.verify("blob")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            HELLO[:-1],
            f"layer x: digest mismatch: expected sha256:{HELLO_HEX} ({len(HELLO)} bytes), "
            f"got sha256:{hashlib.sha256(HELLO[:-1]).hexdigest()} ({len(HELLO) - 1} bytes)",
            id="short-body-reports-sizes",
        ),
        pytest.param(
            HELLO + b"!",
            f"layer x: digest mismatch: expected sha256:{HELLO_HEX} ({len(HELLO)} bytes), "
            f"got sha256:{hashlib.sha256(HELLO + b'!').hexdigest()} ({len(HELLO) + 1} bytes)",
            id="long-body-reports-sizes",
        ),
        pytest.param(
            HELLO.upper(),
            f"layer x: digest mismatch: expected sha256:{HELLO_HEX}, "
            f"got sha256:{hashlib.sha256(HELLO.upper()).hexdigest()} ({len(HELLO)} bytes)",
            id="same-size-different-bytes",
        ),
    ],
)
def test_verifier_checks_size_first_then_digest(body: bytes, message: str) -> None:
    verifier = DigestVerifier(Digest.of(HELLO), len(HELLO))
    verifier.update(body)

    with pytest.raises(DigestMismatchError) as caught:
        verifier.verify("layer x")

    assert str(caught.value) == message
    assert caught.value.size == len(body)
    assert caught.value.actual == str(Digest.of(body))
