"""Finding what refers to images, as a flow of requests without I/O.

:func:`discover` is a generator, as the registry's auth flow is: it yields the next request
(:class:`ListReferrers` or :class:`GetManifest`, in the images' repository) and is sent back
the :class:`Answer`; when it is done it returns what it found. The registry client executes
the requests (authentication, retries and the status gate as for any request, handing over
200, 400, 404 and 406 answers); the tests drive the flow by hand.

The order, for each subject (the image's manifest, or an index and each platform manifest):

1. The Referrers API. A 404, 400 or 406, or a 200 that is not an OCI index, means the
   registry has none: the referrers tag schema index (tag ``sha256-<hex>``) is read instead,
   now and for every later subject in the repository; its 404 or a non-index means none.
   A list that says ``Link: <...>; rel="next"`` is read page by page.
2. cosign's tags ``sha256-<hex>.sig``, ``.att`` and ``.sbom``.
3. Each referrer found is fetched by digest (listed ones) and checked, and becomes a subject
   itself, down to :data:`MAX_DEPTH` levels: a signature on an SBOM on an image is found.

Referrers that ``--referrers-type`` leaves out are not carried and not looked into further.
Listed referrers that are gone, or of a type bulkpull cannot carry, are returned as
:class:`Skipped`, so the report can say so. Imports ``errors``, ``digest``, ``manifest`` and
``referrers``.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Final, TypeVar

from bulkpull.digest import Digest, DigestVerifier
from bulkpull.errors import ContentError, RegistryError, UnsupportedMediaTypeError
from bulkpull.manifest import (
    IMAGE_MANIFEST_TYPES,
    OCI_INDEX,
    Descriptor,
    ImageIndex,
    ImageManifest,
    parse_manifest,
)
from bulkpull.referrers import (
    CosignKind,
    ReferrerFilter,
    cosign_tag,
    is_referrers_list,
    next_page,
    parse_referrers,
    referrers_tag,
)

# Levels of referrers looked into: the image's (1), theirs (2), and theirs (3). Signatures on
# SBOMs are two levels deep; a third allows for a countersignature, and the bound keeps a
# registry from sending a pull down an endless chain.
MAX_DEPTH: Final = 3
# Pages of one referrers list followed before the list counts as endless.
MAX_PAGES: Final = 64
# Answers of the Referrers API that mean "not here": the spec's 404, and what registries
# that do not know the route send (go-containerregistry's list).
_NO_API_STATUSES: Final = frozenset({400, 404, 406})
# Manifest types a referrer can be carried as (other types, such as the withdrawn OCI artifact
# manifest, are skipped and reported).
_CARRIED_TYPES: Final = IMAGE_MANIFEST_TYPES | {OCI_INDEX}


class Source(StrEnum):
    """Where a referrer was found."""

    REFERRERS_API = "referrers API"
    TAG_SCHEMA = "referrers tag schema"
    COSIGN_TAG = "cosign tag"


@dataclass(frozen=True, slots=True)
class ListReferrers:
    """``GET /v2/<name>/referrers/<subject>`` with ``Accept: application/vnd.oci.image.index.v1
    +json``; or, when ``page`` is set, that absolute URL (the next page of the same list)."""

    subject: Digest
    page: str = ""


@dataclass(frozen=True, slots=True)
class GetManifest:
    """``GET /v2/<name>/manifests/<reference>`` (a tag or a digest) with the usual Accept."""

    reference: str


Request = ListReferrers | GetManifest


@dataclass(frozen=True, slots=True)
class Answer:
    """What a request got: status, the URL it went to, ``Content-Type``, body, ``Link``."""

    status: int
    url: str
    content_type: str = ""
    body: bytes = field(default=b"", repr=False)
    link: str = ""


@dataclass(frozen=True, slots=True)
class Referrer:
    """One manifest that refers to ``subject``: its bytes (digest-checked) and parsed value,
    its entry as a referrers list writes it, where it was found, and its cosign ``tag`` if it
    has one. ``depth`` 1 refers to an image, 2 to a referrer of one, and so on. An index
    referrer's children are the caller's to fetch, as for any index."""

    subject: Digest
    entry: Descriptor
    raw: bytes = field(repr=False)
    manifest: ImageManifest | ImageIndex
    source: Source
    tag: str = ""
    depth: int = 1

    @property
    def digest(self) -> Digest:
        return self.entry.digest


@dataclass(frozen=True, slots=True)
class Skipped:
    """A listed referrer that is not carried, and why."""

    subject: Digest
    entry: Descriptor
    reason: str


@dataclass(frozen=True, slots=True)
class Found:
    """What :func:`discover` returns; ``api`` is what it learnt of the repository (whether it
    has the Referrers API; None when it never asked)."""

    referrers: tuple[Referrer, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    api: bool | None = None


_T = TypeVar("_T")
Step = Generator[Request, Answer, _T]
Flow = Step[Found]


@dataclass(slots=True)
class _State:
    """What one discovery learns as it goes: whether the repository has the Referrers API
    (None until asked), which manifests it has met, and the results so far."""

    keep: ReferrerFilter
    what: str
    api: bool | None = None
    seen: set[Digest] = field(default_factory=set)
    referrers: list[Referrer] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def first_meeting(self, digest: Digest) -> bool:
        """Whether ``digest`` is new (then it is met now): each manifest is looked at once,
        however many lists name it."""
        if digest in self.seen:
            return False
        self.seen.add(digest)
        return True

    def keep_if_wanted(self, referrer: Referrer) -> None:
        if self.keep.keeps(referrer.manifest):
            self.referrers.append(referrer)


def discover(
    subjects: Sequence[Digest], keep: ReferrerFilter, what: str, api: bool | None = None
) -> Flow:
    """Find the referrers of ``subjects`` (the module's description gives the order).

    ``what`` names the image in messages; ``api`` is what an earlier discovery in the same
    repository learnt (see :class:`Found`), so that a registry without the Referrers API is
    asked once per repository, not once per image. Referrers come back level by level, and
    within a level subject by subject, listed ones before cosign's.
    """
    state = _State(keep, what, api, seen=set(subjects))
    level = list(subjects)
    for depth in range(1, MAX_DEPTH + 1):
        known = len(state.referrers)
        for subject in level:
            yield from _listed_referrers(subject, depth, state)
            yield from _cosign_referrers(subject, depth, state)
        level = [referrer.digest for referrer in state.referrers[known:]]
        if not level:
            break
    return Found(tuple(state.referrers), tuple(state.skipped), state.api)


def _listed_referrers(subject: Digest, depth: int, state: _State) -> Step[None]:
    """Fetch and check each referrer the registry lists for ``subject``."""
    entries, source = yield from _listing(subject, state)
    for entry in entries:
        if not state.first_meeting(entry.digest):
            continue
        if entry.media_type not in _CARRIED_TYPES:
            why = f"{entry.media_type} is not carried"
            state.skipped.append(Skipped(subject, entry, why))
            continue
        answer = yield GetManifest(str(entry.digest))
        if _missing(answer):
            why = "listed, but the registry has no such manifest"
            state.skipped.append(Skipped(subject, entry, why))
            continue
        where = f"{state.what}: referrer {entry.digest}"
        raw = _verified(answer.body, entry, where)
        manifest = parse_manifest(raw, answer.content_type, where)
        if manifest.subject is None or manifest.subject.digest != subject:
            why = f"listed for {subject}, but it does not name that subject"
            state.skipped.append(Skipped(subject, entry, why))
            continue
        state.keep_if_wanted(Referrer(subject, entry, raw, manifest, source, depth=depth))


def _cosign_referrers(subject: Digest, depth: int, state: _State) -> Step[None]:
    """Fetch what cosign keeps for ``subject`` under its three tags."""
    for kind in CosignKind:
        tag = cosign_tag(subject, kind)
        answer = yield GetManifest(tag)
        if _missing(answer) or not state.first_meeting(Digest.of(answer.body)):
            continue
        entry = Descriptor(answer.content_type, Digest.of(answer.body), len(answer.body))
        try:
            manifest = parse_manifest(answer.body, answer.content_type, f"{state.what}: {tag}")
        except UnsupportedMediaTypeError as exc:
            state.skipped.append(Skipped(subject, entry, f"{tag}: {exc.media_type} is not carried"))
            continue
        entry = replace(
            entry,
            media_type=manifest.media_type,
            annotations=manifest.annotations,
            artifact_type=manifest.artifact_type,
        )
        source = Source.COSIGN_TAG
        state.keep_if_wanted(Referrer(subject, entry, answer.body, manifest, source, tag, depth))


def _listing(subject: Digest, state: _State) -> Step[tuple[tuple[Descriptor, ...], Source]]:
    """What the registry lists for ``subject``: the Referrers API's answer while the
    repository has the API, else the tag schema index."""
    if state.api is not False:
        entries = yield from _api_listing(subject, state.what)
        state.api = entries is not None
        if entries is not None:
            return entries, Source.REFERRERS_API
    answer = yield GetManifest(referrers_tag(subject))
    if _missing(answer):
        return (), Source.TAG_SCHEMA
    where = f"{state.what}: {referrers_tag(subject)}"
    try:
        listed = parse_manifest(answer.body, answer.content_type, where)
    except UnsupportedMediaTypeError:
        return (), Source.TAG_SCHEMA  # the tag holds something else: no referrers
    if not isinstance(listed, ImageIndex) or listed.media_type != OCI_INDEX:
        return (), Source.TAG_SCHEMA
    return listed.manifests, Source.TAG_SCHEMA


def _api_listing(subject: Digest, what: str) -> Step[tuple[Descriptor, ...] | None]:
    """Every page of the Referrers API's list for ``subject``, or None: no API here."""
    answer = yield ListReferrers(subject)
    if answer.status in _NO_API_STATUSES or (
        answer.status == 200 and not is_referrers_list(answer.content_type)
    ):
        return None
    entries: list[Descriptor] = []
    pages: set[str] = set()
    while True:
        _require_answered(answer)
        where = f"{what}: referrers of {subject}"
        entries.extend(parse_referrers(answer.body, answer.content_type, where))
        page = next_page(answer.link, answer.url)
        if page is None:
            return tuple(entries)
        if page in pages or len(pages) >= MAX_PAGES:
            raise ContentError(f"{where}: the list goes on past {len(pages) + 1} pages")
        pages.add(page)
        answer = yield ListReferrers(subject, page)


def _missing(answer: Answer) -> bool:
    """Whether a manifest GET found nothing (404); any status but 200 and 404 is an error."""
    if answer.status == 404:
        return True
    _require_answered(answer)
    return False


def _require_answered(answer: Answer) -> None:
    if answer.status != 200:
        raise RegistryError("GET", answer.url, answer.status)


def _verified(raw: bytes, entry: Descriptor, where: str) -> bytes:
    """``raw`` if it is the listed manifest: the list's digest and size are promises."""
    verifier = DigestVerifier(entry.digest, entry.size)
    verifier.update(raw)
    verifier.verify(where)
    return raw
