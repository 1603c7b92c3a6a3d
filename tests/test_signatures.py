"""cosign signatures checked with a public key: keys that load and keys that do not, and each
way an image's signatures can pass or fail, with its own message."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448
from support import cosignfactory, imagefactory

from bulkpull.digest import Digest
from bulkpull.errors import ContentError, DigestMismatchError, SignatureError, VerifyKeyError
from bulkpull.keys import load_public_key
from bulkpull.signatures import (
    MAX_PAYLOAD_BYTES,
    Outcome,
    PublicKey,
    SignatureCheck,
    check_signatures,
    payloads_to_fetch,
)

IMAGE = imagefactory.make_image([imagefactory.make_layer({"a": b"b"})])
DIGEST = Digest.parse(IMAGE.digest)
OTHER = imagefactory.make_image([imagefactory.make_layer({"c": b"d"})])
TAG = f"sha256-{DIGEST.hex}.sig"
ECDSA = cosignfactory.ecdsa_key()
RSA = cosignfactory.rsa_key()
ED25519 = cosignfactory.ed25519_key()
KEYS = {"ecdsa": ECDSA, "rsa": RSA, "ed25519": ED25519}
NEW_KEYS: dict[str, Callable[[], cosignfactory.KeyPair]] = {
    "ecdsa": cosignfactory.ecdsa_key,
    "rsa": cosignfactory.rsa_key,
    "ed25519": cosignfactory.ed25519_key,
}

# A signature cosign made with a key cosign generated, over the simple-signing payload of
# registry-testing.svc.lan/busybox (sigstore-rs, src/cosign/signature_layers.rs, test data).
REAL_PUBLIC_KEY = b"""-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAENptdY/l3nB0yqkXLBWkZWQwo6+cu
OSWS1X9vPavpiQOoTTGC0xX57OojUadxF1cdQmrsiReWg2Wn4FneJfa8xw==
-----END PUBLIC KEY-----
"""
REAL_SIGNATURE = (
    "MEUCIQD6q/COgzOyW0YH1Dk+CCYSt4uAhm3FDHUwvPI55zwnlwIg"
    "E0ZK58ZOWpZw8YVmBapJhBqCfdPekIknimuO0xH8Jh8="
)
REAL_DIGEST = "sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b"


def key_of(pair: cosignfactory.KeyPair) -> PublicKey:
    return load_public_key(pair.public_pem, "cosign.pub")


def check(
    signature: imagefactory.Image | None, pair: cosignfactory.KeyPair = ECDSA
) -> SignatureCheck:
    """The verdict on ``signature`` (the ``.sig`` manifest, None when there is none)."""
    manifest = None if signature is None else signature.manifest
    payloads = {} if signature is None else {Digest.parse(d): b for d, b in signature.blobs.items()}
    return check_signatures(DIGEST, manifest, payloads, key_of(pair))


# --- keys ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pair", "algorithm"),
    [(ECDSA, "ECDSA P-256"), (RSA, "RSA-2048"), (ED25519, "Ed25519")],
    ids=["ecdsa", "rsa", "ed25519"],
)
def test_cosign_public_keys_load(pair: cosignfactory.KeyPair, algorithm: str) -> None:
    key = key_of(pair)

    assert key.algorithm == algorithm
    assert str(key) == f"{algorithm} key {key.fingerprint.short}"


def test_the_fingerprint_tells_keys_apart() -> None:
    assert key_of(ECDSA).fingerprint == key_of(ECDSA).fingerprint
    assert key_of(ECDSA).fingerprint != key_of(cosignfactory.ecdsa_key()).fingerprint


def test_text_around_the_pem_block_is_ignored() -> None:
    assert key_of(ECDSA) == load_public_key(b"cosign.pub\n" + ECDSA.public_pem + b"\n", "f")


def pem(label: str, der: bytes = b"\x00") -> bytes:
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n".encode()


def public_pem(private: object) -> bytes:
    return private.public_key().public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a PEM file"),
        (b"ssh-ed25519 AAAAC3Nza... user@host", "not a PEM file"),
        (
            serialization.load_pem_public_key(ECDSA.public_pem).public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            "not a PEM file",
        ),
        (ECDSA.private_pem, r"holds a private key \(ENCRYPTED PRIVATE KEY\); --verify-key takes"),
        (pem("ENCRYPTED SIGSTORE PRIVATE KEY"), r"private key \(ENCRYPTED SIGSTORE PRIVATE KEY\)"),
        (pem("ENCRYPTED COSIGN PRIVATE KEY"), r"private key \(ENCRYPTED COSIGN PRIVATE KEY\)"),
        (pem("EC PRIVATE KEY"), r"private key \(EC PRIVATE KEY\)"),
        (ECDSA.certificate().encode(), "holds a CERTIFICATE, not a PUBLIC KEY"),
        (pem("RSA PUBLIC KEY"), "holds a RSA PUBLIC KEY, not a PUBLIC KEY"),
        (pem("PUBLIC KEY", b"not der"), "the public key cannot be read"),
        (public_pem(ec.generate_private_key(ec.SECP384R1())), "ECDSA key on secp384r1; cosign"),
        (cosignfactory.rsa_key(1024).public_pem, "RSA key of 1024 bits; at least 2048"),
        (public_pem(dsa.generate_private_key(2048)), "DSAPublicKey; cosign keys are ECDSA P-256"),
        (public_pem(ed448.Ed448PrivateKey.generate()), "Ed448PublicKey; cosign keys are"),
        (b"x" * 70_000, "too large for a public key file"),
    ],
    ids=[
        "empty",
        "ssh",
        "der",
        "encrypted-pkcs8",
        "cosign-private",
        "old-cosign-private",
        "ec-private",
        "certificate",
        "pkcs1-public",
        "garbage",
        "p384",
        "rsa-1024",
        "dsa",
        "ed448",
        "huge",
    ],
)
def test_files_that_are_not_a_usable_public_key_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(VerifyKeyError, match=f"^cosign.pub: .*{message}"):
        load_public_key(data, "cosign.pub")


def test_a_refused_key_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="not a PEM file"):
        load_public_key(b"", "k")


# --- a real cosign signature ---------------------------------------------------------------------


def test_a_signature_cosign_made_verifies() -> None:
    payload = cosignfactory.simple_signing(REAL_DIGEST, "registry-testing.svc.lan/busybox")
    key = load_public_key(REAL_PUBLIC_KEY, "cosign.pub")

    assert key.verifies(base64.b64decode(REAL_SIGNATURE), payload)
    assert not key.verifies(
        base64.b64decode(REAL_SIGNATURE), payload.replace(b"busybox", b"busyb0x")
    )


def test_a_real_signature_manifest_is_checked_end_to_end() -> None:
    payload = cosignfactory.simple_signing(REAL_DIGEST, "registry-testing.svc.lan/busybox")
    layer = cosignfactory.Payload(
        payload, cosignfactory.SIMPLE_SIGNING, {cosignfactory.SIGNATURE_ANNOTATION: REAL_SIGNATURE}
    )
    signature = cosignfactory.cosign_manifest([layer])
    payloads = {Digest.of(payload): payload}
    key = load_public_key(REAL_PUBLIC_KEY, "cosign.pub")

    result = check_signatures(Digest.parse(REAL_DIGEST), signature.manifest, payloads, key)

    assert result.outcome is Outcome.VERIFIED


# --- outcomes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", KEYS)
def test_a_signature_with_the_key_verifies(name: str) -> None:
    pair = KEYS[name]
    signature = cosignfactory.make_signature(IMAGE.digest, pair)

    result = check(signature, pair)

    assert result.verified
    assert result.message == f"signed: {TAG} verifies with the {key_of(pair)}"
    assert (result.signature, result.signatures) == (Digest.parse(signature.digest), 1)
    result.require("registry.test/app:1")


# A wrong key and an altered payload: what each kind of key (and the Rekor entry, when cosign
# uploaded one) lets the message say.
EITHER = (
    "signature does not verify with the {key}: {tag} was signed with another key, "
    "or its payload {payload} was altered after signing"
)
RSA_OTHER_KEY = "signed with another key: {tag} holds no signature of the {key}"
LOGGED_OTHER_KEY = "signed with another key: {tag}'s log entry names key {signer}, not the {key}"
RSA_ALTERED = (
    "payload {payload} was altered after signing: {tag} holds the {key}'s signature of other bytes"
)
LOGGED_ALTERED = (
    "payload {payload} was altered after signing: its log entry records the signed payload {signed}"
)
SIGNED_WITH_ANOTHER_KEY = [
    ("ecdsa", False, Outcome.NOT_VERIFIED, EITHER),
    ("ed25519", False, Outcome.NOT_VERIFIED, EITHER),
    ("rsa", False, Outcome.OTHER_KEY, RSA_OTHER_KEY),
    ("ecdsa", True, Outcome.OTHER_KEY, LOGGED_OTHER_KEY),
    ("ed25519", True, Outcome.OTHER_KEY, LOGGED_OTHER_KEY),
]
ALTERED = [
    ("ecdsa", False, Outcome.NOT_VERIFIED, EITHER),
    ("ed25519", False, Outcome.NOT_VERIFIED, EITHER),
    ("rsa", False, Outcome.TAMPERED, RSA_ALTERED),
    ("ecdsa", True, Outcome.TAMPERED, LOGGED_ALTERED),
    ("rsa", True, Outcome.TAMPERED, RSA_ALTERED),
]


def ids(cases: list[tuple[str, bool, Outcome, str]]) -> list[str]:
    return [f"{name}-logged" if logged else name for name, logged, _, _ in cases]


@pytest.mark.parametrize(
    ("name", "logged", "outcome", "message"),
    SIGNED_WITH_ANOTHER_KEY,
    ids=ids(SIGNED_WITH_ANOTHER_KEY),
)
def test_a_signature_with_another_key_fails(
    name: str, logged: bool, outcome: Outcome, message: str
) -> None:
    pair, signer = KEYS[name], NEW_KEYS[name]()
    signature = cosignfactory.make_signature(IMAGE.digest, signer, logged=logged)

    result = check(signature, pair)

    payload = signature.layers[0].digest
    fingerprint = key_of(signer).fingerprint.short
    assert result.outcome is outcome
    assert result.message == message.format(
        key=key_of(pair), tag=TAG, payload=payload, signer=fingerprint
    )


@pytest.mark.parametrize(("name", "logged", "outcome", "message"), ALTERED, ids=ids(ALTERED))
def test_a_tampered_payload_fails(name: str, logged: bool, outcome: Outcome, message: str) -> None:
    pair = KEYS[name]
    tampered = cosignfactory.simple_signing(IMAGE.digest, "evil.test/app")
    signature = cosignfactory.make_signature(IMAGE.digest, pair, payload=tampered, logged=logged)

    result = check(signature, pair)

    signed = Digest.of(cosignfactory.simple_signing(IMAGE.digest))
    assert result.outcome is outcome
    assert result.message == message.format(
        key=key_of(pair), tag=TAG, payload=Digest.of(tampered), signed=signed
    )


def test_wrong_key_tampered_payload_and_another_image_each_have_their_own_message() -> None:
    stranger = cosignfactory.ecdsa_key()
    tampered = cosignfactory.simple_signing(IMAGE.digest, "evil.test/app")
    cases = [
        cosignfactory.make_signature(IMAGE.digest, stranger, logged=True),
        cosignfactory.make_signature(IMAGE.digest, ECDSA, payload=tampered, logged=True),
        cosignfactory.make_signature(OTHER.digest, ECDSA, logged=True),
    ]

    outcomes = [check(case).outcome for case in cases]

    assert outcomes == [Outcome.OTHER_KEY, Outcome.TAMPERED, Outcome.OTHER_IMAGE]


def entry_body(**spec: object) -> str:
    body = json.dumps({"kind": "hashedrekord", "spec": spec}).encode()
    return json.dumps({"Payload": {"body": base64.b64encode(body).decode()}})


@pytest.mark.parametrize(
    "bundle",
    [
        "not json",
        "[]",
        '{"Payload": {"body": "not base64!"}}',
        json.dumps({"Payload": {"body": base64.b64encode(b"not json").decode()}}),
        entry_body(),
        entry_body(data={"hash": {"value": "abc"}}),
        entry_body(data={"hash": {"value": 7}}),
    ],
)
def test_a_log_entry_that_cannot_be_read_changes_no_words(bundle: str) -> None:
    layer = cosignfactory.signed_payload(IMAGE.digest, cosignfactory.ecdsa_key())
    layer.annotations[cosignfactory.BUNDLE_ANNOTATION] = bundle

    result = check(cosignfactory.cosign_manifest([layer]))

    assert result.outcome is Outcome.NOT_VERIFIED


def test_a_log_entry_naming_a_certificate_still_tells_an_altered_payload() -> None:
    stranger = cosignfactory.ecdsa_key()
    layer = cosignfactory.signed_payload(IMAGE.digest, ECDSA, payload=b"{}")
    certificate = base64.b64encode(stranger.certificate().encode()).decode()
    layer.annotations[cosignfactory.BUNDLE_ANNOTATION] = entry_body(
        data={"hash": {"value": Digest.of(b"signed").hex}},
        signature={"publicKey": {"content": certificate}},
    )

    result = check(cosignfactory.cosign_manifest([layer]))

    assert result.outcome is Outcome.TAMPERED


@pytest.mark.parametrize("name", KEYS)
def test_a_payload_naming_another_image_fails(name: str) -> None:
    pair = KEYS[name]

    result = check(cosignfactory.make_signature(OTHER.digest, pair), pair)

    assert result.outcome is Outcome.OTHER_IMAGE
    assert result.message == (
        f"payload names {OTHER.digest}, not {DIGEST}: {TAG} holds a signature made for another "
        "image"
    )


def test_no_signature_manifest_is_no_signature() -> None:
    result = check(None)

    assert result.outcome is Outcome.NO_SIGNATURE
    assert result.message == f"no signature found (no {TAG})"
    assert (result.signature, result.signatures) == (None, 0)


def test_a_signature_manifest_without_signature_layers_is_no_signature() -> None:
    attestation = cosignfactory.make_sbom_attestation(IMAGE.digest, ECDSA)

    result = check(attestation)

    assert result.outcome is Outcome.NO_SIGNATURE
    assert result.message == f"no signature found ({TAG} holds no simple-signing layer)"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"critical":{}}', "critical.image is missing"),
        (b'{"critical":{"image":{"docker-manifest-digest":7}}}', "docker-manifest-digest is not"),
    ],
)
def test_a_signed_payload_that_is_not_simple_signing_fails(payload: bytes, message: str) -> None:
    layer = cosignfactory.Payload(
        payload,
        cosignfactory.SIMPLE_SIGNING,
        {cosignfactory.SIGNATURE_ANNOTATION: base64.b64encode(ECDSA.sign(payload)).decode()},
    )

    result = check(cosignfactory.cosign_manifest([layer]))

    assert result.outcome is Outcome.NOT_SIMPLE_SIGNING
    assert result.message.startswith("payload is not a simple-signing document: ")
    assert message in result.message


def test_a_keyless_signature_is_reported_as_not_verified() -> None:
    signature = cosignfactory.make_signature(IMAGE.digest, cosignfactory.ecdsa_key(), keyless=True)

    result = check(signature)

    assert result.outcome is Outcome.KEYLESS
    assert result.message.startswith("keyless signature, not verified")


def test_a_keyless_signature_by_the_key_verifies() -> None:
    assert check(cosignfactory.make_signature(IMAGE.digest, ECDSA, keyless=True)).verified


@pytest.mark.parametrize(
    "annotation", [None, "", "not base64!", base64.b64encode(b"short").decode()]
)
def test_a_layer_without_a_usable_signature_does_not_verify(annotation: str | None) -> None:
    payload = cosignfactory.simple_signing(IMAGE.digest)
    annotations = {} if annotation is None else {cosignfactory.SIGNATURE_ANNOTATION: annotation}
    layer = cosignfactory.Payload(payload, cosignfactory.SIMPLE_SIGNING, annotations)

    assert check(cosignfactory.cosign_manifest([layer])).outcome is Outcome.NOT_VERIFIED


def test_one_good_signature_among_several_is_enough() -> None:
    layers = [
        cosignfactory.signed_payload(IMAGE.digest, cosignfactory.ecdsa_key()),
        cosignfactory.signed_payload(OTHER.digest, ECDSA),
        cosignfactory.signed_payload(IMAGE.digest, ECDSA),
    ]

    result = check(cosignfactory.cosign_manifest(layers))

    assert result.verified
    assert result.signatures == 3


def test_when_none_passes_the_most_telling_reason_is_given() -> None:
    layers = [
        cosignfactory.signed_payload(IMAGE.digest, cosignfactory.ecdsa_key(), keyless=True),
        cosignfactory.signed_payload(IMAGE.digest, cosignfactory.ecdsa_key()),
        cosignfactory.signed_payload(OTHER.digest, ECDSA),
    ]

    result = check(cosignfactory.cosign_manifest(layers))

    assert result.outcome is Outcome.OTHER_IMAGE
    assert result.message.startswith(f"none of the 3 signatures in {TAG} passes; payload names")
    with pytest.raises(SignatureError, match=r"^registry\.test/app:1: none of the 3 signatures"):
        result.require("registry.test/app:1")


# --- payloads ------------------------------------------------------------------------------------


def test_only_simple_signing_payloads_of_payload_size_are_fetched() -> None:
    big = cosignfactory.Payload(b"x" * (MAX_PAYLOAD_BYTES + 1), cosignfactory.SIMPLE_SIGNING, {})
    other = cosignfactory.Payload(b"{}", "application/vnd.example+json", {})
    good = cosignfactory.signed_payload(IMAGE.digest, ECDSA)
    signature = cosignfactory.cosign_manifest([big, other, good])

    fetched = payloads_to_fetch(signature.manifest, DIGEST)

    assert [str(d.digest) for d in fetched] == [imagefactory.sha256(good.data)]
    payloads = {d.digest: good.data for d in fetched}
    result = check_signatures(DIGEST, signature.manifest, payloads, key_of(ECDSA))
    assert result.verified
    assert result.signatures == 2


def test_a_payload_that_is_not_the_layer_is_a_digest_mismatch() -> None:
    signature = cosignfactory.make_signature(IMAGE.digest, ECDSA)
    (layer,) = payloads_to_fetch(signature.manifest, DIGEST)

    with pytest.raises(DigestMismatchError, match=f"{TAG}: payload {layer.digest}"):
        check_signatures(DIGEST, signature.manifest, {layer.digest: b"{}"}, key_of(ECDSA))


def test_a_payload_not_fetched_is_a_content_error() -> None:
    signature = cosignfactory.make_signature(IMAGE.digest, ECDSA)

    with pytest.raises(ContentError, match="was not fetched"):
        check_signatures(DIGEST, signature.manifest, {}, key_of(ECDSA))


def test_an_index_under_the_signature_tag_is_a_content_error() -> None:
    index = imagefactory.make_index([IMAGE])

    with pytest.raises(ContentError, match="is an index, not a cosign signature manifest"):
        check_signatures(DIGEST, index.manifest, {}, key_of(ECDSA))


def test_the_result_renders_for_the_report() -> None:
    signature = cosignfactory.make_signature(IMAGE.digest, ECDSA)

    assert check(signature).to_json() == {
        "image": str(DIGEST),
        "outcome": "verified",
        "message": f"signed: {TAG} verifies with the {key_of(ECDSA)}",
        "key": str(key_of(ECDSA).fingerprint),
        "signature": signature.digest,
        "signatures": 1,
    }


# --- the attestation factory, checked with the same verifier -----------------------------------


def test_dsse_pae_matches_the_spec_vector() -> None:
    assert cosignfactory.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


@pytest.mark.parametrize("name", KEYS)
def test_the_sbom_attestation_is_a_dsse_envelope_signed_over_pae(name: str) -> None:
    pair = KEYS[name]
    attestation = cosignfactory.make_sbom_attestation(IMAGE.digest, pair)
    envelope = json.loads(attestation.layers[0].compressed)
    statement = base64.b64decode(envelope["payload"])

    signature = base64.b64decode(envelope["signatures"][0]["sig"])

    assert key_of(pair).verifies(signature, cosignfactory.pae(envelope["payloadType"], statement))
    assert json.loads(statement)["subject"][0]["digest"] == {"sha256": DIGEST.hex}
    assert json.loads(statement)["predicateType"] == "https://spdx.dev/Document"
