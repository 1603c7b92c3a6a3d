"""cosign public keys: ``--verify-key``'s file read, checked and made ready to verify.

A key file can be the wrong one in many ways (not PEM, a private key, a certificate, a key
type, curve or size cosign does not sign with), each with its own message. The schemes are
sigstore's for each kind of key: ECDSA P-256 (ASN.1 DER signature over SHA-256), RSA (PKCS#1
v1.5 over SHA-256) and Ed25519 (over the payload itself).

This is the ``cryptography`` library's only importer, and only runs that load a key import
it: its import is a noticeable part of bulkpull's start-up. What it loads is a
``signatures.PublicKey``, its cryptography behind the key's verifier, so that everything else
names keys without the library. Imports ``errors``, ``digest`` and ``signatures``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from bulkpull.digest import Digest
from bulkpull.errors import VerifyKeyError
from bulkpull.signatures import PublicKey

# A public key PEM is under 1 KiB (RSA-4096 included); a larger file is not one.
MAX_KEY_FILE_BYTES: Final = 64 * 1024
# sigstore refuses RSA keys below this size (cryptoutils.ValidatePubKey).
MIN_RSA_BITS: Final = 2048
_PEM_BLOCK: Final = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)

VerifyingKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True, slots=True)
class _Verifier:
    """A key of the cryptography library, verifying as sigstore signs (see the module)."""

    key: VerifyingKey

    @property
    def recovers_signed_digest(self) -> bool:
        return isinstance(self.key, rsa.RSAPublicKey)

    def verifies(self, signature: bytes, payload: bytes) -> bool:
        try:
            if isinstance(self.key, ec.EllipticCurvePublicKey):
                self.key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
            elif isinstance(self.key, rsa.RSAPublicKey):
                self.key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
            else:
                self.key.verify(signature, payload)
        except (InvalidSignature, ValueError):  # a wrong signature, or one that is no DER
            return False
        return True

    def signed_digest(self, signature: bytes) -> Digest | None:
        if not isinstance(self.key, rsa.RSAPublicKey):
            return None
        try:
            signed = self.key.recover_data_from_signature(
                signature, padding.PKCS1v15(), hashes.SHA256()
            )
        except (InvalidSignature, ValueError):
            return None
        return Digest(signed.hex())

    def fingerprint_of(self, pem: bytes) -> Digest:
        return load_public_key(pem, "log entry").fingerprint


def load_public_key(data: bytes, source: str) -> PublicKey:
    """The cosign public key in ``data`` (PKIX PEM, as ``cosign.pub``), read from ``source``.

    Each way a file can be the wrong one has its own message: not PEM at all, a private key
    (``cosign.key``, encrypted or not), another PEM (a certificate), a key type or curve that
    cosign does not sign with, an RSA key too small to trust.
    """
    if len(data) > MAX_KEY_FILE_BYTES:
        raise VerifyKeyError(f"{source}: {len(data)} bytes is too large for a public key file")
    block = _PEM_BLOCK.search(data)
    if block is None:
        raise VerifyKeyError(
            f"{source}: not a PEM file; a cosign public key begins with -----BEGIN PUBLIC KEY-----"
        )
    label = block[1].decode("ascii")
    if "PRIVATE KEY" in label:
        raise VerifyKeyError(
            f"{source}: holds a private key ({label}); --verify-key takes the public key, "
            "cosign.pub"
        )
    if label != "PUBLIC KEY":
        raise VerifyKeyError(f"{source}: holds a {label}, not a PUBLIC KEY")
    try:
        key = serialization.load_pem_public_key(block[0])
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise VerifyKeyError(f"{source}: the public key cannot be read: {exc}") from exc
    if isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        return PublicKey(_algorithm(key, source), _fingerprint(key), _Verifier(key))
    raise VerifyKeyError(
        f"{source}: a {type(key).__name__.removeprefix('_')}; cosign keys are ECDSA P-256, "
        "RSA or Ed25519"
    )


def _algorithm(key: VerifyingKey, source: str) -> str:
    """The name of a key cosign verifies with; a curve or size it does not use is refused."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise VerifyKeyError(
                f"{source}: an ECDSA key on {key.curve.name}; cosign keys are P-256 (secp256r1)"
            )
        return "ECDSA P-256"
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise VerifyKeyError(
                f"{source}: an RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} are needed"
            )
        return f"RSA-{key.key_size}"
    return "Ed25519"


def _fingerprint(key: VerifyingKey) -> Digest:
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Digest(hashlib.sha256(der).hexdigest())
