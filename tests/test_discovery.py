"""The discovery flow driven by hand: which requests it makes in which order, how it falls back
from the Referrers API to the tag schema, pages, depth, ``--referrers-type``, and what it does
with answers that are wrong."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from support import cosignfactory, imagefactory

from bulkpull.digest import Digest
from bulkpull.discovery import (
    MAX_DEPTH,
    Answer,
    Found,
    GetManifest,
    ListReferrers,
    Request,
    Source,
    discover,
)
from bulkpull.errors import ContentError, DigestMismatchError, RegistryError
from bulkpull.manifest import OCI_INDEX, OCI_MANIFEST
from bulkpull.referrers import (
    COSIGN_SIMPLE_SIGNING,
    ReferrerFilter,
    merge_referrer,
    referrer_entry,
    referrers_tag,
)

WHAT = "registry.test/app:1"
BASE = "https://registry.test/v2/app"
IMAGE = imagefactory.make_image([imagefactory.make_layer({"a": b"b"})])
SUBJECT = Digest.parse(IMAGE.digest)
KEY = cosignfactory.ecdsa_key()
SIGNATURE = cosignfactory.make_signature(IMAGE.digest, KEY)
ATTESTATION = cosignfactory.make_sbom_attestation(IMAGE.digest, KEY)
SBOM = cosignfactory.make_oras_sbom(IMAGE)
SBOM_SIGNATURE = cosignfactory.make_signature(SBOM.digest, KEY)
NOTHING = ReferrerFilter()

Responder = Callable[[Request], Answer]


@dataclass
class Repository:
    """One repository as a registry serves it: manifests by tag and digest, and the Referrers
    API (listing every manifest whose subject is the digest) when ``api`` is set."""

    api: bool = True
    page_size: int = 0
    manifests: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    no_api_answer: Answer = field(default_factory=lambda: Answer(404, ""))

    def put(self, image: imagefactory.Image, tag: str = "") -> None:
        self.manifests[image.digest] = (image.manifest, image.media_type)
        if tag:
            self.manifests[tag] = (image.manifest, image.media_type)

    def attach(self, image: imagefactory.Image) -> None:
        """Push an OCI referrer as a client does: by digest, and into the tag schema index
        when the registry has no API."""
        self.put(image)
        if not self.api:
            entry = referrer_entry(image.manifest, image.media_type, WHAT)
            subject = json.loads(image.manifest)["subject"]["digest"]
            tag = referrers_tag(subject)
            existing = self.manifests.get(tag, (None, ""))[0]
            merged = merge_referrer(existing, entry, WHAT)
            assert merged is not None
            self.manifests[tag] = (merged, OCI_INDEX)

    def sign(self, image: imagefactory.Image, kind: str, subject: str) -> None:
        self.put(image, f"{referrers_tag(subject)}.{kind}")

    def answer(self, request: Request) -> Answer:
        if isinstance(request, GetManifest):
            url = f"{BASE}/manifests/{request.reference}"
            if request.reference not in self.manifests:
                return Answer(404, url)
            raw, media_type = self.manifests[request.reference]
            return Answer(200, url, media_type, raw)
        if not self.api:
            return self.no_api_answer
        return self._referrers(request)

    def _referrers(self, request: ListReferrers) -> Answer:
        listed = [
            referrer_entry(raw, media_type, WHAT).to_json()
            for key, (raw, media_type) in sorted(self.manifests.items())
            if key.startswith("sha256:")
            and json.loads(raw).get("subject", {}).get("digest") == str(request.subject)
        ]
        start = int(request.page.rpartition("=")[2]) if request.page else 0
        size = self.page_size or len(listed) or 1
        body = json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": listed[start : start + size]}
        ).encode()
        url = request.page or f"{BASE}/referrers/{request.subject}"
        more = start + size < len(listed)
        link = f'</v2/app/referrers/{request.subject}?start={start + size}>; rel="next"'
        return Answer(200, url, OCI_INDEX, body, link if more else "")


def run(
    responder: Responder, subjects: list[Digest] | None = None, keep: ReferrerFilter = NOTHING
) -> tuple[Found, list[Request]]:
    """Drive the flow to its end, as the registry client will; the requests it made, in order."""
    flow = discover(subjects or [SUBJECT], keep, WHAT)
    requests: list[Request] = []
    request = next(flow)
    while True:
        requests.append(request)
        try:
            request = flow.send(responder(request))
        except StopIteration as stop:
            return stop.value, requests


def cosign_requests(digest: Digest | str) -> list[Request]:
    tag = referrers_tag(digest)
    return [GetManifest(f"{tag}.sig"), GetManifest(f"{tag}.att"), GetManifest(f"{tag}.sbom")]


def full_repository(api: bool) -> Repository:
    """The image with a cosign signature and SBOM attestation, an oras SBOM, and a signature
    on that SBOM."""
    repository = Repository(api=api)
    repository.put(IMAGE, "1")
    repository.sign(SIGNATURE, "sig", IMAGE.digest)
    repository.sign(ATTESTATION, "att", IMAGE.digest)
    repository.attach(SBOM)
    repository.sign(SBOM_SIGNATURE, "sig", SBOM.digest)
    return repository


def found_as(found: Found) -> list[tuple[str, str, Source, int]]:
    return [(str(r.subject), str(r.digest), r.source, r.depth) for r in found.referrers]


# --- order ---------------------------------------------------------------------------------------


def test_the_referrers_api_comes_first_then_cosign_tags_then_their_referrers() -> None:
    found, requests = run(full_repository(api=True).answer)

    sbom, signature, attestation = (Digest.parse(i.digest) for i in (SBOM, SIGNATURE, ATTESTATION))
    assert requests == [
        ListReferrers(SUBJECT),
        GetManifest(SBOM.digest),
        *cosign_requests(SUBJECT),
        ListReferrers(sbom),
        *cosign_requests(sbom),
        ListReferrers(signature),
        *cosign_requests(signature),
        ListReferrers(attestation),
        *cosign_requests(attestation),
        ListReferrers(Digest.parse(SBOM_SIGNATURE.digest)),
        *cosign_requests(SBOM_SIGNATURE.digest),
    ]
    assert found_as(found) == [
        (IMAGE.digest, SBOM.digest, Source.REFERRERS_API, 1),
        (IMAGE.digest, SIGNATURE.digest, Source.COSIGN_TAG, 1),
        (IMAGE.digest, ATTESTATION.digest, Source.COSIGN_TAG, 1),
        (SBOM.digest, SBOM_SIGNATURE.digest, Source.COSIGN_TAG, 2),
    ]
    assert found.skipped == ()


def test_without_the_api_the_tag_schema_is_read_and_the_api_not_asked_again() -> None:
    found, requests = run(full_repository(api=False).answer)

    assert requests[:4] == [
        ListReferrers(SUBJECT),
        GetManifest(referrers_tag(SUBJECT)),
        GetManifest(SBOM.digest),
        *cosign_requests(SUBJECT)[:1],
    ]
    assert [r for r in requests if isinstance(r, ListReferrers)] == [ListReferrers(SUBJECT)]
    assert GetManifest(referrers_tag(SBOM.digest)) in requests
    assert found_as(found) == [
        (IMAGE.digest, SBOM.digest, Source.TAG_SCHEMA, 1),
        (IMAGE.digest, SIGNATURE.digest, Source.COSIGN_TAG, 1),
        (IMAGE.digest, ATTESTATION.digest, Source.COSIGN_TAG, 1),
        (SBOM.digest, SBOM_SIGNATURE.digest, Source.COSIGN_TAG, 2),
    ]


def test_found_referrers_carry_their_exact_bytes_entry_and_tag() -> None:
    found, _ = run(full_repository(api=True).answer)

    sbom, signature = found.referrers[0], found.referrers[1]
    assert sbom.raw == SBOM.manifest
    assert sbom.entry == referrer_entry(SBOM.manifest, OCI_MANIFEST, WHAT)
    assert sbom.tag == ""
    assert signature.raw == SIGNATURE.manifest
    assert signature.tag == f"{referrers_tag(SUBJECT)}.sig"
    assert (signature.entry.digest, signature.entry.size) == (
        Digest.parse(SIGNATURE.digest),
        len(SIGNATURE.manifest),
    )


@pytest.mark.parametrize(
    "no_api",
    [
        Answer(404, f"{BASE}/referrers/x"),
        Answer(400, f"{BASE}/referrers/x"),
        Answer(406, f"{BASE}/referrers/x"),
        Answer(200, f"{BASE}/referrers/x", "text/html", b"<html>sign in</html>"),
        Answer(200, f"{BASE}/referrers/x", "application/json", b"{}"),
    ],
    ids=["404", "400", "406", "html", "json"],
)
def test_answers_that_mean_no_api_fall_back_to_the_tag_schema(no_api: Answer) -> None:
    repository = full_repository(api=False)
    repository.no_api_answer = no_api

    found, requests = run(repository.answer)

    assert requests[1] == GetManifest(referrers_tag(SUBJECT))
    assert found.referrers[0].source is Source.TAG_SCHEMA


def test_every_subject_of_an_index_is_looked_at() -> None:
    images = [
        imagefactory.make_image([imagefactory.make_layer({"a": b"b"})], arch=arch, label=arch)
        for arch in ("amd64", "arm64")
    ]
    digests = [imagefactory.make_index(images).digest, *(image.digest for image in images)]
    repository = Repository(api=False)
    for digest in digests:
        repository.sign(cosignfactory.make_signature(digest, KEY), "sig", digest)
    subjects = [Digest.parse(digest) for digest in digests]

    found, requests = run(repository.answer, subjects)

    assert [str(r.subject) for r in found.referrers] == [str(s) for s in subjects]
    assert sum(isinstance(r, ListReferrers) for r in requests) == 1


# --- tag schema content --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "media_type"),
    [
        (IMAGE.manifest, OCI_MANIFEST),
        (imagefactory.make_index([IMAGE], docker_types=True).manifest, ""),
        (b"<html>", "text/html"),
    ],
    ids=["image", "docker-list", "html"],
)
def test_a_tag_schema_tag_holding_no_index_means_no_referrers(held: bytes, media_type: str) -> None:
    repository = Repository(api=False)
    repository.manifests[referrers_tag(SUBJECT)] = (held, media_type)

    found, _ = run(repository.answer)

    assert found == Found(api=False)


# --- pages ---------------------------------------------------------------------------------------


def test_a_paged_list_is_read_to_its_end() -> None:
    repository = Repository(api=True, page_size=2)
    sboms = [
        cosignfactory.make_oras_sbom(IMAGE, created=f"2024-01-0{i}T00:00:00Z") for i in range(1, 6)
    ]
    for sbom in sboms:
        repository.attach(sbom)

    found, requests = run(repository.answer)

    pages = [r for r in requests if isinstance(r, ListReferrers) and r.subject == SUBJECT]
    assert pages == [
        ListReferrers(SUBJECT),
        ListReferrers(SUBJECT, f"https://registry.test/v2/app/referrers/{SUBJECT}?start=2"),
        ListReferrers(SUBJECT, f"https://registry.test/v2/app/referrers/{SUBJECT}?start=4"),
    ]
    assert sorted(str(r.digest) for r in found.referrers) == sorted(s.digest for s in sboms)


def endless(link: str) -> Responder:
    def answer(request: Request) -> Answer:
        if isinstance(request, GetManifest):
            return Answer(404, "")
        url = request.page or f"{BASE}/referrers/{request.subject}"
        return Answer(
            200, url, OCI_INDEX, json.dumps({"schemaVersion": 2, "manifests": []}).encode(), link
        )

    return answer


@pytest.mark.parametrize(
    ("link", "message"),
    [
        ('</v2/app/referrers/x?same=1>; rel="next"', "past 2 pages"),
        ('<https://elsewhere.test/v2/app/referrers/x>; rel="next"', "another host"),
    ],
    ids=["loop", "elsewhere"],
)
def test_a_list_that_loops_or_leaves_the_registry_is_refused(link: str, message: str) -> None:
    with pytest.raises(ContentError, match=message):
        run(endless(link))


def test_a_list_with_endless_distinct_pages_is_refused() -> None:
    def answer(request: Request) -> Answer:
        if isinstance(request, GetManifest):
            return Answer(404, "")
        number = int(request.page.rpartition("=")[2]) if request.page else 0
        link = f'</v2/app/referrers/x?page={number + 1}>; rel="next"'
        body = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
        return Answer(200, request.page or f"{BASE}/referrers/x", OCI_INDEX, body, link)

    with pytest.raises(ContentError, match="past 65 pages"):
        run(answer)


# --- depth and filters ---------------------------------------------------------------------------


def test_referrers_of_referrers_are_followed_to_the_fixed_depth() -> None:
    repository = Repository(api=False)
    chain = [IMAGE]
    for _ in range(MAX_DEPTH + 2):
        signature = cosignfactory.make_signature(chain[-1].digest, KEY)
        repository.sign(signature, "sig", chain[-1].digest)
        chain.append(signature)

    found, requests = run(repository.answer)

    assert [r.depth for r in found.referrers] == list(range(1, MAX_DEPTH + 1))
    assert [str(r.digest) for r in found.referrers] == [i.digest for i in chain[1 : MAX_DEPTH + 1]]
    assert GetManifest(f"{referrers_tag(chain[MAX_DEPTH].digest)}.sig") not in requests


def test_referrers_type_leaves_out_the_rest_and_what_refers_to_it() -> None:
    keep = ReferrerFilter(frozenset({COSIGN_SIMPLE_SIGNING}))

    found, requests = run(full_repository(api=True).answer, keep=keep)

    assert [str(r.digest) for r in found.referrers] == [SIGNATURE.digest]
    assert GetManifest(f"{referrers_tag(SBOM.digest)}.sig") not in requests


def test_a_referrer_both_listed_and_tagged_is_found_once() -> None:
    repository = Repository(api=True)
    repository.attach(SBOM)
    repository.sign(SBOM, "sbom", IMAGE.digest)

    found, _ = run(repository.answer)

    assert found_as(found) == [(IMAGE.digest, SBOM.digest, Source.REFERRERS_API, 1)]


# --- wrong answers -------------------------------------------------------------------------------


def listing(*entries: dict[str, object]) -> Repository:
    """A registry whose tag schema index lists ``entries``, whatever it holds."""
    repository = Repository(api=False)
    body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(entries)}
    repository.manifests[referrers_tag(SUBJECT)] = (json.dumps(body).encode(), OCI_INDEX)
    return repository


def test_listed_referrers_that_are_gone_or_foreign_are_skipped_with_a_reason() -> None:
    unrelated = cosignfactory.make_oras_sbom(SIGNATURE)
    gone = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "0" * 64, "size": 5}
    artifact = {
        "mediaType": "application/vnd.oci.artifact.manifest.v1+json",
        "digest": "sha256:" + "1" * 64,
        "size": 5,
    }
    repository = listing(
        gone, artifact, referrer_entry(unrelated.manifest, OCI_MANIFEST, WHAT).to_json()
    )
    repository.put(unrelated)

    found, requests = run(repository.answer)

    assert found.referrers == ()
    assert [(str(s.entry.digest), s.reason) for s in found.skipped] == [
        (gone["digest"], "listed, but the registry has no such manifest"),
        (artifact["digest"], "application/vnd.oci.artifact.manifest.v1+json is not carried"),
        (unrelated.digest, f"listed for {SUBJECT}, but it does not name that subject"),
    ]
    assert GetManifest(str(artifact["digest"])) not in requests


def test_a_listed_referrer_with_other_bytes_is_a_digest_mismatch() -> None:
    repository = listing(referrer_entry(SBOM.manifest, OCI_MANIFEST, WHAT).to_json())
    repository.manifests[SBOM.digest] = (SBOM.manifest + b" ", OCI_MANIFEST)

    with pytest.raises(DigestMismatchError, match=f"referrer {SBOM.digest}"):
        run(repository.answer)


def test_a_cosign_tag_of_a_type_bulkpull_cannot_carry_is_skipped() -> None:
    repository = Repository(api=False)
    held = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.artifact.manifest.v1+json"}
    )
    repository.manifests[f"{referrers_tag(SUBJECT)}.sbom"] = (
        held.encode(),
        "application/vnd.oci.artifact.manifest.v1+json",
    )

    found, _ = run(repository.answer)

    assert found.referrers == ()
    tag = f"{referrers_tag(SUBJECT)}.sbom"
    assert [s.reason for s in found.skipped] == [
        f"{tag}: application/vnd.oci.artifact.manifest.v1+json is not carried"
    ]


@pytest.mark.parametrize(
    "failing",
    [ListReferrers(SUBJECT), GetManifest(referrers_tag(SUBJECT)), cosign_requests(SUBJECT)[1]],
    ids=["api", "tag-schema", "cosign-tag"],
)
def test_a_server_error_is_a_registry_error(failing: Request) -> None:
    repository = Repository(api=False, no_api_answer=Answer(404, ""))

    def answer(request: Request) -> Answer:
        return Answer(500, f"{BASE}/broken") if request == failing else repository.answer(request)

    with pytest.raises(RegistryError, match="500"):
        run(answer)
