"""``bulkpull verify --verify-key``: the cosign signatures an archive or layout carries, checked
offline, as a pull with ``--verify-key`` checks them at the registry.

A bundle or layout carries each image's cosign signature manifest as an ``index.json`` entry
marked as travelling with the image (``contents.REFERRER_OF``) under the tag
``sha256-<hex>.sig`` (``contents.REFERRER_TAG``); its payloads are blobs beside it. An image is
signed when such a signature verifies for the manifest its entry names, or for the index that
entry was chosen from (a pull checks what the reference resolved to: the index of a
multi-platform image, of which the archive may hold one platform or a narrowed index).
Per-image archives carry no referrers, so their images have no signature to check.
Imports ``digest``,
``errors``, ``manifest``, ``referrers``, ``signatures``, ``contents`` and ``verify``.
"""

from __future__ import annotations

from collections.abc import Iterator

from bulkpull.digest import Digest
from bulkpull.errors import ContentError
from bulkpull.manifest import ImageIndex, parse_manifest
from bulkpull.output.contents import REFERRER_OF, REFERRER_TAG
from bulkpull.output.verify import ArchiveCheck, ArchiveEntry
from bulkpull.referrers import CosignKind, cosign_link
from bulkpull.signatures import (
    Outcome,
    PublicKey,
    SignatureCheck,
    check_signatures,
    payloads_to_fetch,
)


def verify_signatures(check: ArchiveCheck, key: PublicKey) -> list[tuple[str, SignatureCheck]]:
    """For each named image of ``check``'s archive: its name and the verdict on its cosign
    signature with ``key``; nothing is asked of any registry."""
    verdicts = []
    for entry in check.entries:
        if entry.name is None or entry.descriptor.annotation(REFERRER_OF) is not None:
            continue
        verdicts.append((entry.name, _verdict(check, entry, key)))
    return verdicts


def _verdict(check: ArchiveCheck, entry: ArchiveEntry, key: PublicKey) -> SignatureCheck:
    image = entry.descriptor.digest
    found = [
        (subject, manifest)
        for subject, manifest in _signatures_of(check, entry.name or "")
        if _covers(check, subject, image)
    ]
    if not found:
        return check_signatures(image, None, {}, key)
    verdicts = [_checked(check, subject, manifest, key) for subject, manifest in found]
    return next((verdict for verdict in verdicts if verdict.verified), verdicts[0])


def _signatures_of(check: ArchiveCheck, name: str) -> Iterator[tuple[Digest, bytes | None]]:
    """The cosign signature entries travelling with image ``name``: the digest each is for
    (from its tag) and the manifest's bytes (None when they are not in the archive)."""
    for entry in check.entries:
        if entry.descriptor.annotation(REFERRER_OF) != name:
            continue
        link = cosign_link(entry.descriptor.annotation(REFERRER_TAG) or "")
        if link is not None and link.kind is CosignKind.SIGNATURE:
            yield link.subject, check.document(entry.descriptor.digest)


def _covers(check: ArchiveCheck, subject: Digest, image: Digest) -> bool:
    """Whether a signature for ``subject`` vouches for the entry naming ``image``: the same
    manifest, the index ``image`` was chosen from, or an index of which ``image`` is a
    narrowed copy (every entry it keeps is one of ``subject``'s)."""
    if subject == image:
        return True
    signed = _children(check, subject)
    if not signed:
        return False
    return image in signed or (bool(_children(check, image)) and _children(check, image) <= signed)


def _children(check: ArchiveCheck, digest: Digest) -> set[Digest]:
    raw = check.document(digest)
    if raw is None:
        return set()
    try:
        parsed = parse_manifest(raw, "", str(digest))
    except ContentError:
        return set()
    return {child.digest for child in parsed.manifests} if isinstance(parsed, ImageIndex) else set()


def _checked(
    check: ArchiveCheck, subject: Digest, manifest: bytes | None, key: PublicKey
) -> SignatureCheck:
    """The signature check of ``subject`` with the payloads the archive holds; a payload
    that is missing or a signature manifest that is none does not verify."""
    payloads = {}
    try:
        if manifest is not None:
            for layer in payloads_to_fetch(manifest, subject):
                data = check.document(layer.digest)
                if data is not None:
                    payloads[layer.digest] = data
        return check_signatures(subject, manifest, payloads, key)
    except ContentError as exc:
        return SignatureCheck(subject, Outcome.NOT_VERIFIED, str(exc), key)
