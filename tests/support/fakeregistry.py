"""An in-process registry (aiohttp.web on loopback) for exact HTTP assertions and fault injection.

It speaks enough of the distribution API for a pull: ``/v2/`` with an anonymous, Basic or Bearer
challenge, a token endpoint, manifests by tag or digest, the Referrers API (which can be switched
off, as distribution 2.8 has none), and blobs, optionally redirected to a
second server (a "CDN") that records whether ``Authorization`` reached it. A bearer token is good
only for the scopes it was issued for, as with a real token server, so a request carrying another
repository's token is refused. Every request is logged, so tests can count what was asked for.
Knobs inject faults: statuses before success, a reset after K bytes, corrupted bytes, ignored
``Range``, tokens revoked under requests in flight.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler

from support.imagefactory import OCI_INDEX, Image, Index, sha256


@dataclass(frozen=True)
class Seen:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, list[str]]
    at: float = field(default_factory=time.monotonic)


@dataclass
class Faults:
    """Faults for one blob digest (or every path, under the key ``"*"``)."""

    statuses: list[int] = field(default_factory=list)  # answered in turn before success
    retry_after: str | None = None
    reset_after: int | None = None  # close the connection after this many body bytes...
    reset_times: int = 1  # ...in this many responses
    stall_after: int | None = None  # go silent after this many bytes, once, then close
    stall_seconds: float = 0.0
    truncate_to: int | None = None  # a short body with a matching Content-Length, once
    corrupt_times: int = 0  # flip a byte in this many responses
    ignore_range: bool = False
    expire_tokens: int = 0  # forget every token and answer 401, this many times
    chunk_delay: float = 0.0  # pause between 256 KiB chunks: a slow link


@dataclass
class RefusedTogether:
    """Requests refused together, their token revoked under them: the first request for each
    of ``digests`` waits until all have arrived (with a good token); then every token is
    revoked and they are answered 401, the first at once and the others only once a request
    with a new token has come, so that their refusals arrive after the renewal."""

    digests: frozenset[str]
    arrived: set[str] = field(default_factory=set)
    all_in: asyncio.Event = field(default_factory=asyncio.Event)
    renewed: asyncio.Event = field(default_factory=asyncio.Event)
    first_refused: bool = False


class FakeRegistry:
    """State and handlers; :func:`serve` puts it on a loopback port."""

    def __init__(
        self,
        *,
        auth: str = "none",
        username: str = "",
        password: str = "",
    ) -> None:
        self.auth = auth
        self.username = username
        self.password = password
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.blobs: dict[str, bytes] = {}
        self.seen: list[Seen] = []
        self.faults: dict[str, Faults] = {}
        self.cdn_url: str | None = None
        # Each token issued, and the scopes it was issued for.
        self.tokens: dict[str, frozenset[str]] = {}
        self.refused_together: RefusedTogether | None = None
        self.bytes_sent: Counter[str] = Counter()
        self.omit_content_digest = False
        self.content_digest_override: str | None = None
        # The token realm to announce; by default this server's own /token.
        self.realm: str | None = None
        # OAuth2 (POST /token): the refresh token it accepts, or None to answer 404 as GCR does.
        self.refresh_token: str | None = None
        self.token_forms: list[dict[str, str]] = []
        # Whether GET /v2/<name>/referrers/<digest> is served (else 404, as distribution 2.8),
        # and in pages of how many entries (None: all at once).
        self.referrers_api = True
        self.referrers_page: int | None = None

    # --- content -------------------------------------------------------------------------
    def put_manifest(self, repo: str, reference: str, raw: bytes, media_type: str) -> None:
        self.manifests[(repo, reference)] = (raw, media_type)
        self.manifests[(repo, sha256(raw))] = (raw, media_type)

    def add(self, repo: str, tag: str, item: Image | Index) -> None:
        """Serve ``item`` as ``repo:tag`` with every manifest and blob it refers to."""
        images = item.children if isinstance(item, Index) else (item,)
        for image in images:
            self.put_manifest(repo, image.digest, image.manifest, image.media_type)
            self.blobs.update(image.blobs)
        self.put_manifest(repo, tag, item.manifest, item.media_type)

    # --- observation ---------------------------------------------------------------------
    def count(self, method: str, path_suffix: str) -> int:
        return sum(1 for s in self.seen if s.method == method and s.path.endswith(path_suffix))

    def paths(self) -> Counter[str]:
        return Counter(f"{s.method} {s.path}" for s in self.seen)

    # --- the application -----------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/v2/", self._ping)
        app.router.add_get("/token", self._token)
        app.router.add_post("/token", self._oauth_token)
        app.router.add_route("*", "/v2/{repo:.+}/manifests/{reference}", self._manifest)
        app.router.add_get("/v2/{repo:.+}/blobs/{digest}", self._blob)
        app.router.add_get("/v2/{repo:.+}/referrers/{digest}", self._referrers)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        query: dict[str, list[str]] = {}
        for key, value in request.query.items():
            query.setdefault(key, []).append(value)
        self.seen.append(Seen(request.method, request.path, dict(request.headers), query))
        return await handler(request)

    def _challenge(self, request: web.Request) -> str:
        if self.auth == "basic":
            return 'Basic realm="fake"'
        realm = self.realm or f"http://{request.host}/token"
        return f'Bearer realm="{realm}",service="fake-registry"'

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if self.auth == "none":
            return True
        if self.auth == "basic":
            return header == _basic(self.username, self.password)
        scopes = self.tokens.get(header.removeprefix("Bearer "))
        if scopes is None:
            return False
        repository = request.match_info.get("repo")
        return repository is None or _grants(scopes, repository, "pull")

    def _unauthorized(self, request: web.Request) -> web.Response:
        body = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
        return web.json_response(
            body, status=401, headers={"WWW-Authenticate": self._challenge(request)}
        )

    async def _ping(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized(request)
        return web.json_response({})

    async def _token(self, request: web.Request) -> web.StreamResponse:
        if self.username and request.headers.get("Authorization") != _basic(
            self.username, self.password
        ):
            return web.json_response({"details": "incorrect username or password"}, status=401)
        token = self._issue(request.query.getall("scope", []))
        return web.json_response({"token": token, "expires_in": 300})

    async def _oauth_token(self, request: web.Request) -> web.Response:
        if self.refresh_token is None:
            return web.json_response({"details": "not found"}, status=404)
        form = {key: str(value) for key, value in (await request.post()).items()}
        self.token_forms.append(form)
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != (
            self.refresh_token
        ):
            return web.json_response({"error": "invalid_grant"}, status=400)
        token = self._issue(form.get("scope", "").split())
        return web.json_response({"access_token": token, "expires_in": 300})

    def _issue(self, scopes: list[str]) -> str:
        token = secrets.token_hex(8)
        self.tokens[token] = frozenset(scopes)
        return token

    def _fault_response(self, key: str) -> web.Response | None:
        faults = self.faults.get(key) or self.faults.get("*")
        if faults and faults.statuses:
            status = faults.statuses.pop(0)
            headers = {"Retry-After": faults.retry_after} if faults.retry_after else {}
            code = "TOOMANYREQUESTS" if status == 429 else "UNAVAILABLE"
            body = {"errors": [{"code": code, "message": f"injected {status}"}]}
            return web.json_response(body, status=status, headers=headers)
        return None

    async def _manifest(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._unauthorized(request)
        repo, reference = request.match_info["repo"], request.match_info["reference"]
        fault = self._fault_response(f"{repo}:{reference}")
        if fault:
            return fault
        found = self.manifests.get((repo, reference))
        if found is None:
            body = {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}
            return web.json_response(body, status=404)
        raw, media_type = found
        headers = {"Content-Type": media_type}
        if not self.omit_content_digest:
            headers["Docker-Content-Digest"] = self.content_digest_override or sha256(raw)
        return web.Response(body=None if request.method == "HEAD" else raw, headers=headers)

    async def _referrers(self, request: web.Request) -> web.Response:
        """The Referrers API: an OCI index of the repository's manifests whose ``subject`` is
        the digest, each entry with its artifactType (else its config's media type) and
        annotations, as the distribution spec lists them."""
        if not self._authorized(request):
            return self._unauthorized(request)
        if not self.referrers_api:
            return web.Response(status=404, text="404 page not found\n")
        repo, subject = request.match_info["repo"], request.match_info["digest"]
        entries = [
            _referrer_entry(raw, media_type)
            for (name, reference), (raw, media_type) in sorted(self.manifests.items())
            if name == repo and reference == sha256(raw) and _subject_of(raw) == subject
        ]
        headers = {}
        if self.referrers_page:  # a page of that many, the next one named by Link
            start = int(request.query.get("from", "0"))
            end = start + self.referrers_page
            if end < len(entries):
                headers["Link"] = f'<{request.path}?from={end}>; rel="next"'
            entries = entries[start:end]
        body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        return web.json_response(body, content_type=OCI_INDEX, headers=headers)

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._unauthorized(request)
        digest = request.match_info["digest"]
        faults = self.faults.get(digest)
        if faults and faults.expire_tokens:
            faults.expire_tokens -= 1
            self.tokens.clear()
            return self._unauthorized(request)
        together = self.refused_together
        if together is not None and digest in together.digests - together.arrived:
            return await self._refuse_together(request, together, digest)
        if together is not None and together.all_in.is_set():
            together.renewed.set()  # a request with a token issued since: it was renewed
        if digest not in self.blobs:
            body = {"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown"}]}
            return web.json_response(body, status=404)
        if self.cdn_url:
            raise web.HTTPTemporaryRedirect(f"{self.cdn_url}/cdn/{digest}?X-Signature=abc")
        return await self.send_blob(request, digest)

    async def _refuse_together(
        self, request: web.Request, together: RefusedTogether, digest: str
    ) -> web.Response:
        together.arrived.add(digest)
        if together.arrived == together.digests:
            self.tokens.clear()
            together.all_in.set()
        await together.all_in.wait()
        if together.first_refused:
            await together.renewed.wait()
        together.first_refused = True
        return self._unauthorized(request)

    async def send_blob(self, request: web.Request, digest: str) -> web.StreamResponse:
        """Answer with the blob, honouring ``Range`` and the faults set for it."""
        fault = self._fault_response(digest)
        if fault:
            return fault
        data = self.blobs[digest]
        faults = self.faults.get(digest, Faults())
        if faults.corrupt_times:
            faults.corrupt_times -= 1
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        start = _range_start(request.headers.get("Range", ""))
        status, headers = 200, {"Content-Type": "application/octet-stream"}
        if start is not None and not faults.ignore_range:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            data = data[start:]
        if faults.truncate_to is not None:
            data, faults.truncate_to = data[: faults.truncate_to], None
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = len(data)
        await response.prepare(request)
        cut = faults.reset_after if faults.reset_after is not None else faults.stall_after
        if cut is not None:
            await self._send(response, digest, data[:cut], faults.chunk_delay)
            if faults.stall_after is not None:
                faults.stall_after = None
                await asyncio.sleep(faults.stall_seconds)
            faults.reset_times -= 1
            if faults.reset_times <= 0:
                faults.reset_after = None
            # Let the client read what was sent: a reset discards unread buffers, and the
            # tests count the bytes a client managed to keep.
            await asyncio.sleep(0.2)
            assert request.transport is not None
            request.transport.close()
            return response
        await self._send(response, digest, data, faults.chunk_delay)
        await response.write_eof()
        return response

    async def _send(
        self, response: web.StreamResponse, digest: str, data: bytes, delay: float
    ) -> None:
        step = 256 * 1024 if delay else max(len(data), 1)
        for offset in range(0, len(data), step):
            await response.write(data[offset : offset + step])
            self.bytes_sent[digest] += len(data[offset : offset + step])
            if delay:
                await asyncio.sleep(delay)


class FakeCDN:
    """A second host blobs are redirected to; it never needs (and must never get) credentials."""

    def __init__(self, registry: FakeRegistry) -> None:
        self.registry = registry
        self.seen: list[Seen] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/cdn/{digest}", self._blob)
        return app

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(Seen(request.method, request.path, dict(request.headers), {}))
        return await self.registry.send_blob(request, request.match_info["digest"])


def _subject_of(raw: bytes) -> str | None:
    document = json.loads(raw)
    subject = document.get("subject") if isinstance(document, dict) else None
    return subject.get("digest") if isinstance(subject, dict) else None


def _referrer_entry(raw: bytes, media_type: str) -> dict[str, object]:
    document = json.loads(raw)
    entry: dict[str, object] = {"mediaType": media_type, "digest": sha256(raw), "size": len(raw)}
    artifact_type = document.get("artifactType") or document.get("config", {}).get("mediaType")
    if artifact_type:
        entry["artifactType"] = artifact_type
    if document.get("annotations"):
        entry["annotations"] = document["annotations"]
    return entry


def _grants(scopes: frozenset[str], repository: str, action: str) -> bool:
    """Whether ``scopes`` (``repository:NAME:ACTIONS`` each) allow ``action`` on ``repository``."""
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind == "repository" and name == repository and action in actions.split(","):
            return True
    return False


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _range_start(header: str) -> int | None:
    if not header.startswith("bytes=") or not header.endswith("-"):
        return None
    return int(header.removeprefix("bytes=").removesuffix("-"))


Start = Callable[[web.Application], Awaitable[str]]
"""The ``start`` fixture: runs an app on a free loopback port for the test; ``host:port``."""


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Run ``app`` on a free loopback port; yields ``host:port``."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        await server.close()


def schema1_manifest() -> tuple[bytes, str]:
    body = json.dumps({"schemaVersion": 1, "name": "x", "tag": "1", "fsLayers": []}).encode()
    return body, "application/vnd.docker.distribution.manifest.v1+prettyjws"
