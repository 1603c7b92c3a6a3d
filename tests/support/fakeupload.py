"""The push side of the fake registry: uploads, mounts and manifest PUTs, with faults.

It adds routes to a :class:`FakeRegistry`'s app and keeps what a push needs beyond a pull: the
blobs each repository holds (a ``HEAD`` answers for the repository asked), upload sessions kept
on disk (a 512 MiB layer costs no memory), and the manifests stored. Sessions behave as the
distribution spec describes them: a ``PATCH`` must start where the upload stands
(``Content-Range``), a ``GET`` of the upload says how much it holds (``Range``), and bytes of a
``PATCH`` that broke off are kept, so a client can resume from there. Faults: statuses answered
to ``POST``, ``PATCH`` or ``PUT`` before success (with ``Retry-After``), a connection reset in
the middle of a ``PATCH`` body, a session forgotten after some chunks, a wrong
``Docker-Content-Digest``, mounts declined. A manifest with a ``subject`` is answered with
``OCI-Subject`` while the registry serves the Referrers API, as the distribution spec says.
Every body byte received is counted.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from support.fakeregistry import FakeRegistry, _grants, _subject_of
from support.imagefactory import sha256

_WRONG_DIGEST = "sha256:" + "0" * 64
# Committed blobs up to this size are kept in memory, so that pulls can fetch them back.
_KEPT_IN_MEMORY = 16 * 1024 * 1024


@dataclass
class UploadFaults:
    """Faults of the upload path; each is used up as it strikes."""

    # "POST", "PATCH", "PUT" (a blob's) or "PUT manifest" -> statuses answered in turn
    statuses: dict[str, list[int]] = field(default_factory=dict)
    retry_after: str | None = None
    reset_patch_after: int | None = None  # close the connection after this many PATCH bytes
    vanish_after_patches: int | None = None  # forget the session after this many PATCHes
    # digest -> commits of it answered with another Docker-Content-Digest
    wrong_blob_digest: dict[str, int] = field(default_factory=dict)
    wrong_manifest_digest: int = 0
    decline_mounts: bool = False
    foreign_location: str | None = None  # an upload that continues at another host
    redirect_patch_to: str | None = None  # a PATCH redirected (307) to another host


@dataclass
class Session:
    repository: str
    path: Path
    size: int = 0
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)


class FakeUploads:
    """Upload state and handlers on top of ``registry``; :meth:`app` serves both."""

    def __init__(self, registry: FakeRegistry, storage: Path) -> None:
        self.registry = registry
        self.storage = storage
        self.sessions: dict[str, Session] = {}
        self.linked: dict[str, set[str]] = {}  # repository -> digests it holds
        self.sizes: dict[str, int] = {}
        self.faults = UploadFaults()
        self.received = 0  # body bytes of PATCH and PUT requests, broken ones included
        self.received_by_method: Counter[str] = Counter()
        self.mounts: list[tuple[str, str, str]] = []  # (repository, digest, from), mounted
        self.started = 0
        self.pushed_manifests: list[tuple[str, str, str]] = []  # (repository, reference, type)
        self.patches = 0

    def app(self) -> web.Application:
        app = self.registry.app()
        app.middlewares.append(self._intercept)
        app.router.add_post("/v2/{repo:.+}/blobs/uploads/", self._start)
        uploads = "/v2/{repo:.+}/blobs/uploads/{uuid}"
        app.router.add_patch(uploads, self._patch)
        app.router.add_put(uploads, self._put)
        app.router.add_get(uploads, self._status)
        app.router.add_delete(uploads, self._cancel)
        return app

    def holds(self, repository: str, digest: str) -> bool:
        return digest in self.linked.get(repository, set())

    def link(self, repository: str, digest: str, size: int) -> None:
        self.linked.setdefault(repository, set()).add(digest)
        self.sizes[digest] = size

    # --- routing -------------------------------------------------------------------------
    @web.middleware
    async def _intercept(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """What the pull side's routes would answer otherwise: a blob's ``HEAD`` for the
        repository asked, and manifest ``PUT``s."""
        parts = request.path.split("/")
        if request.method == "HEAD" and len(parts) > 4 and parts[-2] == "blobs":
            return await self._head_blob(request, "/".join(parts[2:-2]), parts[-1])
        if request.method == "PUT" and len(parts) > 4 and parts[-2] == "manifests":
            return await self._put_manifest(request, "/".join(parts[2:-2]), parts[-1])
        return await handler(request)

    def _refusal(self, request: web.Request, repository: str, action: str) -> web.Response | None:
        """401 unless the request's token (or login) allows ``action`` on ``repository``."""
        registry = self.registry
        if registry.auth != "bearer":
            return None if registry._authorized(request) else registry._unauthorized(request)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        scopes = registry.tokens.get(token)
        if scopes is None or not _grants(scopes, repository, action):
            return registry._unauthorized(request)
        return None

    def _fault(self, method: str) -> web.Response | None:
        statuses = self.faults.statuses.get(method)
        if not statuses:
            return None
        status = statuses.pop(0)
        retry_after = self.faults.retry_after
        headers = {"Retry-After": retry_after} if retry_after and status == 429 else {}
        code = "TOOMANYREQUESTS" if status == 429 else "UNAVAILABLE"
        body = {"errors": [{"code": code, "message": f"injected {status}"}]}
        return web.json_response(body, status=status, headers=headers)

    # --- blobs ---------------------------------------------------------------------------
    async def _head_blob(self, request: web.Request, repository: str, digest: str) -> web.Response:
        refused = self._refusal(request, repository, "pull")
        if refused:
            return refused
        if not self.holds(repository, digest):
            return web.Response(status=404)
        headers = {"Docker-Content-Digest": digest, "Content-Length": str(self.sizes[digest])}
        return web.Response(status=200, headers=headers)

    async def _start(self, request: web.Request) -> web.Response:
        repository = request.match_info["repo"]
        mount, source = request.query.get("mount"), request.query.get("from")
        action_refused = self._refusal(request, repository, "push")
        if action_refused:
            return action_refused
        if mount and source:
            refused = self._refusal(request, source, "pull")
            if refused:
                return refused
            if not self.faults.decline_mounts and self.holds(source, mount):
                self.link(repository, mount, self.sizes[mount])
                self.mounts.append((repository, mount, source))
                headers = {
                    "Location": f"/v2/{repository}/blobs/{mount}",
                    "Docker-Content-Digest": mount,
                }
                return web.Response(status=201, headers=headers)
        fault = self._fault("POST")
        if fault:
            return fault
        uuid = secrets.token_hex(8)
        self.storage.mkdir(parents=True, exist_ok=True)
        path = self.storage / f"upload-{uuid}"
        path.write_bytes(b"")
        self.sessions[uuid] = Session(repository, path)
        self.started += 1
        answer = self._session_answer(202, repository, uuid)
        if self.faults.foreign_location:
            answer.headers["Location"] = f"{self.faults.foreign_location}/v2/{repository}/x"
        return answer

    def _session_answer(self, status: int, repository: str, uuid: str) -> web.Response:
        session = self.sessions[uuid]
        end = max(session.size - 1, 0)
        headers = {
            "Location": f"/v2/{repository}/blobs/uploads/{uuid}",
            "Range": f"0-{end}",
            "Docker-Upload-UUID": uuid,
        }
        return web.Response(status=status, headers=headers)

    def _session(self, request: web.Request) -> Session | web.Response:
        session = self.sessions.get(request.match_info["uuid"])
        if session is None or session.repository != request.match_info["repo"]:
            body = {"errors": [{"code": "BLOB_UPLOAD_UNKNOWN", "message": "upload unknown"}]}
            return web.json_response(body, status=404)
        return session

    def _writable(self, request: web.Request, method: str | None) -> Session | web.Response:
        """The upload session a request goes on with, or the answer that refuses it: no push
        permission, no such session, or the fault ``method`` is set to answer with."""
        refused = self._refusal(request, request.match_info["repo"], "push")
        if refused:
            return refused
        found = self._session(request)
        if isinstance(found, web.Response):
            return found
        fault = self._fault(method) if method else None
        return fault or found

    async def _status(self, request: web.Request) -> web.Response:
        found = self._writable(request, None)
        if isinstance(found, web.Response):
            return found
        return self._session_answer(204, found.repository, request.match_info["uuid"])

    async def _patch(self, request: web.Request) -> web.Response:
        found = self._writable(request, "PATCH")
        if isinstance(found, web.Response):
            return found
        if self.faults.redirect_patch_to:
            raise web.HTTPTemporaryRedirect(f"{self.faults.redirect_patch_to}{request.path}")
        start = _range_start(request.headers.get("Content-Range", ""))
        if start is not None and start != found.size:
            body = {"errors": [{"code": "RANGE_INVALID", "message": "invalid content range"}]}
            return web.json_response(body, status=416)
        if not await self._receive(request, found, "PATCH"):
            return web.Response(status=400)  # the connection is gone; nobody reads this
        self.patches += 1
        uuid = request.match_info["uuid"]
        answer = self._session_answer(202, found.repository, uuid)
        vanish = self.faults.vanish_after_patches
        if vanish is not None and self.patches >= vanish:
            self.faults.vanish_after_patches = None
            del self.sessions[uuid]  # as a registry that expired or lost it would
        return answer

    async def _receive(self, request: web.Request, session: Session, method: str) -> bool:
        """Append the body to the session; whether it arrived whole. What arrived of a body
        that broke off (a reset, a client killed) is kept, as the spec lets registries do."""
        cut = self.faults.reset_patch_after if method == "PATCH" else None
        got = 0
        with session.path.open("ab") as out:
            try:
                async for data in request.content.iter_chunked(256 * 1024):
                    if cut is not None and got + len(data) > cut:
                        data = data[: cut - got]
                    out.write(data)
                    session.hasher.update(data)
                    session.size += len(data)
                    got += len(data)
                    self.received += len(data)
                    self.received_by_method[method] += len(data)
                    if cut is not None and got >= cut:
                        self.faults.reset_patch_after = None
                        assert request.transport is not None
                        request.transport.close()
                        return False
            except Exception:  # the client went away mid-body
                return False
        return True

    async def _put(self, request: web.Request) -> web.Response:
        repository = request.match_info["repo"]
        found = self._writable(request, "PUT")
        if isinstance(found, web.Response):
            return found
        if not await self._receive(request, found, "PUT"):
            return web.Response(status=400)
        uuid = request.match_info["uuid"]
        digest = request.query.get("digest", "")
        actual = "sha256:" + found.hasher.hexdigest()
        del self.sessions[uuid]
        if digest != actual:
            body = {"errors": [{"code": "DIGEST_INVALID", "message": "digest did not match"}]}
            return web.json_response(body, status=400)
        if found.size <= _KEPT_IN_MEMORY:
            self.registry.blobs[digest] = found.path.read_bytes()
        found.path.unlink()
        self.link(repository, digest, found.size)
        said = digest
        if self.faults.wrong_blob_digest.get(digest):
            self.faults.wrong_blob_digest[digest] -= 1
            said = _WRONG_DIGEST
        headers = {"Location": f"/v2/{repository}/blobs/{digest}", "Docker-Content-Digest": said}
        return web.Response(status=201, headers=headers)

    async def _cancel(self, request: web.Request) -> web.Response:
        self.sessions.pop(request.match_info["uuid"], None)
        return web.Response(status=204)

    # --- manifests -----------------------------------------------------------------------
    async def _put_manifest(
        self, request: web.Request, repository: str, reference: str
    ) -> web.Response:
        refused = self._refusal(request, repository, "push")
        if refused:
            return refused
        fault = self._fault("PUT manifest")
        if fault:
            return fault
        raw = await request.read()
        media_type = request.headers.get("Content-Type", "")
        digest = sha256(raw)
        if reference.startswith("sha256:") and reference != digest:
            body = {"errors": [{"code": "DIGEST_INVALID", "message": "manifest digest"}]}
            return web.json_response(body, status=400)
        self.registry.put_manifest(repository, reference, raw, media_type)
        self.pushed_manifests.append((repository, reference, media_type))
        said = digest
        if self.faults.wrong_manifest_digest:
            self.faults.wrong_manifest_digest -= 1
            said = _WRONG_DIGEST
        headers = {
            "Location": f"/v2/{repository}/manifests/{digest}",
            "Docker-Content-Digest": said,
        }
        subject = _subject_of(raw)
        if subject is not None and self.registry.referrers_api:
            headers["OCI-Subject"] = subject  # what a registry with the Referrers API says
        return web.Response(status=201, headers=headers)


def _range_start(header: str) -> int | None:
    start, dash, _ = header.partition("-")
    return int(start) if dash and start.isdigit() else None
