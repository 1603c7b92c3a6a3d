"""cosign signatures checked with a public key: ``--verify-key``.

What ``cosign verify --key cosign.pub`` checks, without the transparency log (an air-gapped
site has none to ask): the image's ``sha256-<hex>.sig`` manifest holds one layer per
signature, each a simple-signing payload with the signature in its
``dev.cosignproject.cosign/signature`` annotation; the image passes when at least one
signature verifies over the payload's exact bytes with the key *and* the payload's
``critical.image.docker-manifest-digest`` is the image's digest. The schemes are sigstore's for
each kind of key: ECDSA P-256 (ASN.1 DER signature over SHA-256, cosign's default), RSA
(PKCS#1 v1.5 over SHA-256) and Ed25519 (over the payload itself).

When no signature passes, the reason says as much as can be known: none found, a signature
for another image, a payload that is no simple-signing document, a payload altered after
signing or a signature by another key (told apart by RSA's recoverable digest, or by the
Rekor entry cosign attaches, which chooses the words but never the verdict), or either of
the two. Keyless signatures (a Fulcio certificate in ``dev.sigstore.cosign/certificate``)
would need the sigstore trust root and Rekor; they are carried, and reported as not verified.

The I/O side fetches the ``.sig`` manifest and the payloads :func:`payloads_to_fetch` names,
then :func:`check_signatures` decides with a :class:`PublicKey` that ``keys`` loaded; the key's
cryptography sits behind its :class:`KeyVerifier`, so the ``cryptography`` library stays out of
runs without ``--verify-key``. Imports ``errors``, ``jsondoc``, ``digest``, ``manifest`` and
``referrers``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Protocol

from bulkpull.digest import Digest, DigestVerifier
from bulkpull.errors import ContentError, InvalidReferenceError, SignatureError
from bulkpull.jsondoc import load_object, required
from bulkpull.manifest import Descriptor, ImageManifest, parse_manifest
from bulkpull.referrers import COSIGN_SIMPLE_SIGNING, CosignKind, cosign_tag

SIGNATURE_ANNOTATION: Final = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION: Final = "dev.sigstore.cosign/certificate"
BUNDLE_ANNOTATION: Final = "dev.sigstore.cosign/bundle"
# A simple-signing payload is a few hundred bytes; a "signature" layer far larger than this is
# not one, and is not fetched.
MAX_PAYLOAD_BYTES: Final = 64 * 1024


class KeyVerifier(Protocol):
    """The cryptography behind a :class:`PublicKey` (``keys`` makes it), so that options,
    reports and checks name keys without importing the cryptography library."""

    @property
    def recovers_signed_digest(self) -> bool:
        """Whether :meth:`signed_digest` can tell what a signature signs (RSA's can)."""

    def verifies(self, signature: bytes, payload: bytes) -> bool:
        """Whether ``signature`` is the key's over exactly ``payload``, as sigstore signs."""

    def signed_digest(self, signature: bytes) -> Digest | None:
        """The SHA-256 digest an RSA ``signature`` of the key signs, None when it is not one
        of the key's (PKCS#1 v1.5 makes the signed digest recoverable with the public key)."""

    def fingerprint_of(self, pem: bytes) -> Digest:
        """The fingerprint of another public key, in PEM; raises ``ValueError`` when the bytes
        are no public key cosign signs with."""


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A cosign public key, ready to verify (``load_public_key`` reads one): ``algorithm``
    names it for messages, ``fingerprint`` is the digest of its DER SubjectPublicKeyInfo (what
    tells keys apart)."""

    algorithm: str
    fingerprint: Digest
    verifier: KeyVerifier = field(repr=False)

    def __str__(self) -> str:
        return f"{self.algorithm} key {self.fingerprint.short}"

    def verifies(self, signature: bytes, payload: bytes) -> bool:
        """Whether ``signature`` is this key's over exactly ``payload``, as sigstore signs."""
        return self.verifier.verifies(signature, payload)

    def signed_digest(self, signature: bytes) -> Digest | None:
        """What an RSA ``signature`` of this key signs (see :class:`KeyVerifier`)."""
        return self.verifier.signed_digest(signature)


class Outcome(StrEnum):
    """What the check of an image's signatures came to."""

    VERIFIED = "verified"
    OTHER_IMAGE = "signed for another image"
    NOT_SIMPLE_SIGNING = "not a simple-signing payload"
    TAMPERED = "payload altered"
    OTHER_KEY = "signed with another key"
    NOT_VERIFIED = "does not verify"
    KEYLESS = "keyless, not verified"
    NO_SIGNATURE = "no signature"


# When no signature passes, the one reported is the most telling: a signature that verifies
# but names another image says more than one that does not verify (whose cause is known, or
# not), which says more than a keyless one bulkpull cannot check.
_RANK: Final = {outcome: rank for rank, outcome in enumerate(Outcome)}


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """The verdict on one image's cosign signatures, for the report and the image's error.

    ``signature`` is the digest of the ``.sig`` manifest that was checked (None when there is
    none), ``signatures`` how many signatures it holds, ``key`` the key checked against.
    """

    image: Digest
    outcome: Outcome
    message: str
    key: PublicKey
    signature: Digest | None = None
    signatures: int = 0

    @property
    def verified(self) -> bool:
        return self.outcome is Outcome.VERIFIED

    def require(self, what: str) -> None:
        """Raise :class:`SignatureError` for image ``what`` unless a signature verified."""
        if not self.verified:
            raise SignatureError(f"{what}: {self.message}")

    def to_json(self) -> dict[str, object]:
        return {
            "image": str(self.image),
            "outcome": self.outcome.value,
            "message": self.message,
            "key": str(self.key.fingerprint),
            "signature": str(self.signature) if self.signature else None,
            "signatures": self.signatures,
        }


def payloads_to_fetch(manifest: bytes, image: Digest) -> tuple[Descriptor, ...]:
    """The payload blobs of a ``.sig`` manifest that :func:`check_signatures` reads: its
    simple-signing layers small enough to be payloads."""
    return tuple(
        layer for layer in _signature_layers(manifest, image) if layer.size <= MAX_PAYLOAD_BYTES
    )


def check_signatures(
    image: Digest, manifest: bytes | None, payloads: Mapping[Digest, bytes], key: PublicKey
) -> SignatureCheck:
    """Whether a signature in ``manifest`` (the bytes under ``sha256-<hex>.sig``, None when
    the tag is missing) verifies with ``key`` for ``image``.

    ``payloads`` holds the blobs :func:`payloads_to_fetch` named, by digest; they are checked
    against their descriptors here too. The result names the first signature that passes or,
    when none does, the most telling reason.
    """
    tag = cosign_tag(image, CosignKind.SIGNATURE)
    if manifest is None:
        return SignatureCheck(image, Outcome.NO_SIGNATURE, f"no signature found (no {tag})", key)
    layers = _signature_layers(manifest, image)
    found = Digest.of(manifest)
    if not layers:
        why = f"no signature found ({tag} holds no simple-signing layer)"
        return SignatureCheck(image, Outcome.NO_SIGNATURE, why, key, found)
    verdicts = [_verdict(layer, payloads, image, key, tag) for layer in layers]
    outcome, message = min(verdicts, key=lambda verdict: _RANK[verdict[0]])
    if outcome is not Outcome.VERIFIED and len(layers) > 1:
        message = f"none of the {len(layers)} signatures in {tag} passes; {message}"
    return SignatureCheck(image, outcome, message, key, found, len(layers))


def _signature_layers(manifest: bytes, image: Digest) -> tuple[Descriptor, ...]:
    tag = cosign_tag(image, CosignKind.SIGNATURE)
    parsed = parse_manifest(manifest, "", tag)
    if not isinstance(parsed, ImageManifest):
        raise ContentError(f"{tag}: is an index, not a cosign signature manifest")
    return tuple(layer for layer in parsed.layers if layer.media_type == COSIGN_SIMPLE_SIGNING)


def _verdict(
    layer: Descriptor, payloads: Mapping[Digest, bytes], image: Digest, key: PublicKey, tag: str
) -> tuple[Outcome, str]:
    """One signature layer's outcome and the sentence that says it."""
    if layer.size > MAX_PAYLOAD_BYTES:
        return Outcome.NOT_VERIFIED, f"{tag}: a layer of {layer.size} bytes is no signature payload"
    payload = _payload(layer, payloads, tag)
    signature = _signature(layer)
    if signature is None or not key.verifies(signature, payload):
        return _why_not(layer, Digest.of(payload), signature, key, tag)
    try:
        named = _signed_digest(payload, tag)
    except ContentError as exc:
        return Outcome.NOT_SIMPLE_SIGNING, f"payload is not a simple-signing document: {exc}"
    if named != str(image):
        return Outcome.OTHER_IMAGE, (
            f"payload names {named}, not {image}: {tag} holds a signature made for another image"
        )
    return Outcome.VERIFIED, f"signed: {tag} verifies with the {key}"


def _why_not(
    layer: Descriptor, payload: Digest, signature: bytes | None, key: PublicKey, tag: str
) -> tuple[Outcome, str]:
    """Why a signature does not verify, as far as can be told.

    A wrong key and an altered payload look alike to ECDSA and Ed25519. An RSA signature tells
    them apart: the key's own signature over other bytes still recovers (a digest that is
    not the payload's), another key's does not. Otherwise the Rekor entry cosign attaches
    (``dev.sigstore.cosign/bundle``) records the signed payload's digest and the signer's key;
    it is not verified here, so it only chooses the words, never the verdict.
    """
    if layer.annotation(CERTIFICATE_ANNOTATION) is not None:
        return Outcome.KEYLESS, (
            f"keyless signature, not verified: {tag} is signed with a certificate (Fulcio), "
            "and bulkpull checks signatures made with a key"
        )
    altered = f"payload {layer.digest} was altered after signing"
    if signature is not None and key.verifier.recovers_signed_digest:
        if key.signed_digest(signature) is not None:
            return Outcome.TAMPERED, f"{altered}: {tag} holds the {key}'s signature of other bytes"
        return Outcome.OTHER_KEY, f"signed with another key: {tag} holds no signature of the {key}"
    signed, signer = _logged(layer, key.verifier)
    if signed is not None and signed != payload:
        return Outcome.TAMPERED, f"{altered}: its log entry records the signed payload {signed}"
    if signer is not None and signer != key.fingerprint:
        return Outcome.OTHER_KEY, (
            f"signed with another key: {tag}'s log entry names key {signer.short}, not the {key}"
        )
    return Outcome.NOT_VERIFIED, (
        f"signature does not verify with the {key}: {tag} was signed with another key, "
        f"or its {altered}"
    )


def _logged(layer: Descriptor, keys: KeyVerifier) -> tuple[Digest | None, Digest | None]:
    """The payload digest and signer's key fingerprint the layer's Rekor bundle records
    (hashedrekord or rekord entry), each None when it records none that can be read; the
    signer's key is read by ``keys``."""
    try:
        bundle = json.loads(layer.annotation(BUNDLE_ANNOTATION) or "null")
        entry = json.loads(base64.b64decode(bundle["Payload"]["body"], validate=True))
        spec = entry["spec"]
        recorded = Digest(spec["data"]["hash"]["value"])
        signer = spec["signature"]["publicKey"]["content"]
    except (ValueError, KeyError, TypeError, InvalidReferenceError):
        return None, None
    try:
        return recorded, keys.fingerprint_of(base64.b64decode(signer))
    except (ValueError, TypeError):  # a certificate, or no key at all
        return recorded, None


def _payload(layer: Descriptor, payloads: Mapping[Digest, bytes], tag: str) -> bytes:
    """The payload blob, checked against the layer that names it."""
    payload = payloads.get(layer.digest)
    if payload is None:
        raise ContentError(f"{tag}: payload {layer.digest} was not fetched")
    verifier = DigestVerifier(layer.digest, layer.size)
    verifier.update(payload)
    verifier.verify(f"{tag}: payload {layer.digest}")
    return payload


def _signature(layer: Descriptor) -> bytes | None:
    """The layer's signature bytes; None when it has none, or none that base64 decodes."""
    text = layer.annotation(SIGNATURE_ANNOTATION)
    if not text:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return None


def _signed_digest(payload: bytes, tag: str) -> str:
    """``critical.image.docker-manifest-digest`` of a simple-signing payload."""
    body = load_object(payload, MAX_PAYLOAD_BYTES, f"{tag} payload")
    critical = required(body, "critical", dict, f"{tag} payload")
    image = required(critical, "image", dict, f"{tag} payload", "critical.image")
    where = "critical.image.docker-manifest-digest"
    return required(image, "docker-manifest-digest", str, f"{tag} payload", where)
