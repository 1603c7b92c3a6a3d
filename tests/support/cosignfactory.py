"""Signatures, attestations and OCI 1.1 artifacts in the exact shapes cosign and oras write.

Each is an :class:`imagefactory.Image` (manifest bytes, config, layers), so the helpers that put
images into registries and layouts put these there too. The shapes follow cosign's
SIGNATURE_SPEC and ATTESTATION_SPEC (an OCI manifest under the ``sha256-<hex>.sig`` / ``.att``
tag, a ggcr-made config whose ``diff_ids`` are the layers, one layer per signature) and oras's
``attach`` (``artifactType``, the empty config descriptor, ``subject``). JSON is written as Go's
``encoding/json`` writes it: struct fields in declaration order, map keys sorted, no spaces.
Keys are made here with ``cryptography``; nothing is read from disk.
"""

from __future__ import annotations

import base64
import datetime
import json
from dataclasses import dataclass
from typing import TypedDict, Unpack

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from support.imagefactory import OCI_CONFIG, OCI_MANIFEST, Image, Index, Layer, sha256

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
IN_TOTO = "application/vnd.in-toto+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
SPDX_JSON = "application/spdx+json"
SPDX_PREDICATE = "https://spdx.dev/Document"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
TITLE_ANNOTATION = "org.opencontainers.image.title"
CREATED_ANNOTATION = "org.opencontainers.image.created"
REFERENCE = "registry.test/app"
# Go's zero time.Time, which ggcr writes into the config of an image made from nothing.
_ZERO_TIME = "0001-01-01T00:00:00Z"


def go_json(obj: object) -> bytes:
    """Compact JSON in the given key order, as ``json.Marshal`` writes structs."""
    return json.dumps(obj, separators=(",", ":")).encode()


PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class KeyPair:
    """A signing key as ``cosign generate-key-pair`` (or openssl) makes one: :meth:`sign`
    signs as sigstore does with that kind of key; ``public_pem`` is what ``cosign.pub`` holds
    (PKIX PEM), ``private_pem`` an encrypted PKCS#8 private key (password ``test``)."""

    private: PrivateKey

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.private, ec.EllipticCurvePrivateKey):
            return self.private.sign(data, ec.ECDSA(hashes.SHA256()))
        if isinstance(self.private, rsa.RSAPrivateKey):
            return self.private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return self.private.sign(data)

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def private_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"test"),
        )

    def certificate(self) -> str:
        """A self-signed PEM certificate of this key, standing in for Fulcio's short-lived
        one in keyless signatures."""
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sigstore-test")])
        start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.private.public_key())
            .serial_number(1)
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(minutes=10))
        )
        algorithm = None if isinstance(self.private, ed25519.Ed25519PrivateKey) else hashes.SHA256()
        cert = builder.sign(self.private, algorithm)
        return cert.public_bytes(serialization.Encoding.PEM).decode()


def ecdsa_key(curve: ec.EllipticCurve | None = None) -> KeyPair:
    """cosign's default: ECDSA P-256, ASN.1 DER signatures over SHA-256."""
    return KeyPair(ec.generate_private_key(curve or ec.SECP256R1()))


def rsa_key(bits: int = 2048) -> KeyPair:
    """An RSA key; sigstore signs with RSA as PKCS#1 v1.5 over SHA-256."""
    return KeyPair(rsa.generate_private_key(public_exponent=65537, key_size=bits))


def ed25519_key() -> KeyPair:
    """An Ed25519 key; sigstore signs the message itself, not a hash of it."""
    return KeyPair(ed25519.Ed25519PrivateKey.generate())


def simple_signing(digest: str, reference: str = REFERENCE) -> bytes:
    """The payload ``cosign sign`` signs: the simple-signing document naming ``digest``."""
    return go_json(
        {
            "critical": {
                "identity": {"docker-reference": reference},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
    )


@dataclass(frozen=True)
class Payload:
    """One layer of a cosign manifest: the blob and the layer's annotations."""

    data: bytes
    media_type: str
    annotations: dict[str, str]


def rekor_bundle(signed: bytes, signature: bytes, key: KeyPair) -> str:
    """The ``dev.sigstore.cosign/bundle`` annotation cosign adds when it uploads a signature
    to Rekor: the hashedrekord entry (payload digest, signature, public key). The signed entry
    timestamp is made up: no test has Rekor's key to check it."""
    body = go_json(
        {
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": sha256(signed)[7:]}},
                "signature": {
                    "content": base64.b64encode(signature).decode(),
                    "publicKey": {"content": base64.b64encode(key.public_pem).decode()},
                },
            },
        }
    )
    payload = {
        "body": base64.b64encode(body).decode(),
        "integratedTime": 1704067200,
        "logIndex": 1,
        "logID": "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d",
    }
    timestamp = base64.b64encode(b"not a real signed entry timestamp").decode()
    return go_json({"SignedEntryTimestamp": timestamp, "Payload": payload}).decode()


def signed_payload(
    digest: str,
    key: KeyPair,
    *,
    payload: bytes | None = None,
    keyless: bool = False,
    logged: bool = False,
) -> Payload:
    """One signature layer for ``digest``; ``payload`` replaces the stored bytes after
    signing (a tampered payload); ``keyless`` adds the certificate annotations that keyless
    signing writes, with a certificate of ``key``; ``logged`` the Rekor bundle."""
    signed = simple_signing(digest)
    signature = key.sign(signed)
    annotations = {SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()}
    if logged:
        annotations[BUNDLE_ANNOTATION] = rekor_bundle(signed, signature, key)
    if keyless:
        certificate = key.certificate()
        annotations |= {CERTIFICATE_ANNOTATION: certificate, CHAIN_ANNOTATION: certificate}
    stored = signed if payload is None else payload
    return Payload(stored, SIMPLE_SIGNING, dict(sorted(annotations.items())))


def cosign_manifest(payloads: list[Payload]) -> Image:
    """The manifest cosign keeps under a ``.sig`` or ``.att`` tag: OCI types, a config whose
    ``diff_ids`` are the (uncompressed) payload digests, one layer per payload."""
    layers = tuple(Layer(p.data, sha256(p.data)) for p in payloads)
    config = go_json(
        {
            "architecture": "",
            "created": _ZERO_TIME,
            "history": [{"created": _ZERO_TIME} for _ in payloads],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "config": {},
        }
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": sha256(config)},
        "layers": [
            {
                "mediaType": p.media_type,
                "size": len(p.data),
                "digest": sha256(p.data),
                "annotations": p.annotations,
            }
            for p in payloads
        ],
    }
    return Image(go_json(manifest), OCI_MANIFEST, config, layers, ("", "", ""))


class SigningOptions(TypedDict, total=False):
    payload: bytes | None
    keyless: bool
    logged: bool


def make_signature(digest: str, key: KeyPair, **options: Unpack[SigningOptions]) -> Image:
    """``cosign sign --key`` of ``digest``: one signature in a ``.sig`` manifest (options as
    for :func:`signed_payload`)."""
    return cosign_manifest([signed_payload(digest, key, **options)])


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a DSSE signature signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def spdx_document(name: str = "app") -> dict[str, object]:
    """A minimal SPDX 2.3 document, as syft would write for an almost empty image."""
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": f"https://bulkpull.test/spdx/{name}",
        "creationInfo": {"created": "2024-01-01T00:00:00Z", "creators": ["Tool: bulkpull-tests"]},
        "packages": [{"SPDXID": "SPDXRef-Package-app", "name": name, "downloadLocation": "NONE"}],
    }


def sbom_envelope(digest: str, key: KeyPair) -> bytes:
    """A DSSE envelope of an in-toto statement whose predicate is an SPDX SBOM of ``digest``,
    as ``cosign attest --type spdxjson`` writes it."""
    statement = go_json(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": SPDX_PREDICATE,
            "subject": [{"name": REFERENCE, "digest": {"sha256": digest.removeprefix("sha256:")}}],
            "predicate": spdx_document(),
        }
    )
    signature = key.sign(pae(IN_TOTO, statement))
    return go_json(
        {
            "payloadType": IN_TOTO,
            "payload": base64.b64encode(statement).decode(),
            "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode()}],
        }
    )


def make_sbom_attestation(digest: str, key: KeyPair) -> Image:
    """``cosign attest --key --type spdxjson`` of ``digest``: the ``.att`` manifest, whose
    signature annotation is empty because the signature is inside the envelope."""
    annotations = {SIGNATURE_ANNOTATION: "", "predicateType": SPDX_PREDICATE}
    return cosign_manifest([Payload(sbom_envelope(digest, key), DSSE_ENVELOPE, annotations)])


def make_oras_sbom(subject: Image | Index, *, created: str = "2024-01-01T00:00:00Z") -> Image:
    """An OCI 1.1 artifact with the empty config, one layer and ``subject`` naming the image,
    as ``oras attach --artifact-type application/spdx+json IMAGE sbom.spdx.json:TYPE`` writes
    it (TYPE ``application/spdx+json``)."""
    sbom = go_json(spdx_document())
    empty = b"{}"
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SPDX_JSON,
        "config": {
            "mediaType": OCI_EMPTY,
            "digest": sha256(empty),
            "size": len(empty),
            "data": base64.b64encode(empty).decode(),
        },
        "layers": [
            {
                "mediaType": SPDX_JSON,
                "digest": sha256(sbom),
                "size": len(sbom),
                "annotations": {TITLE_ANNOTATION: "sbom.spdx.json"},
            }
        ],
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": len(subject.manifest),
        },
        "annotations": {CREATED_ANNOTATION: created},
    }
    return Image(go_json(manifest), OCI_MANIFEST, empty, (Layer(sbom, sha256(sbom)),), ("", "", ""))
