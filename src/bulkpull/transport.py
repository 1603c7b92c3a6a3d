"""HTTP to registries: the one module that imports aiohttp.

It owns the shared session's settings, the choice of scheme (the ``/v2/`` ping), authentication
(anonymous, Basic, Bearer tokens shared per registry and repository), redirects (followed by hand so
``Authorization`` never leaves the registry's origin), bounded retries on temporary failures and
the translation of every aiohttp exception into :mod:`bulkpull.errors`. Callers see
:class:`Response`, never an aiohttp object. Imports ``errors``, ``auth`` and ``options``.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version
from typing import TypeVar
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp

from bulkpull.auth import (
    MAX_TOKEN_RESPONSE_BYTES,
    Challenge,
    Credentials,
    Token,
    may_send_credentials,
    parse_challenges,
    parse_token_response,
    pull_scope,
    token_url,
)
from bulkpull.errors import (
    AuthenticationError,
    BulkpullError,
    ContentError,
    NotFoundError,
    RegistryDiagnostic,
    RegistryError,
    TransportError,
    is_temporary,
)
from bulkpull.options import RetryPolicy

log = logging.getLogger("bulkpull")

T = TypeVar("T")

USER_AGENT = f"bulkpull/{version('bulkpull')}"
# Registries answer errors with a small JSON document; anything bigger is an HTML error page
# and only its start is worth showing.
MAX_ERROR_BODY_BYTES = 64 * 1024
MAX_REDIRECTS = 10
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# aiohttp reads sockets in buffers of this size; 64 KiB (its default) costs a Python-level
# round trip per 64 KiB on a fast link.
READ_BUFFER_BYTES = 1024 * 1024


def open_session(*, timeout: float, connections: int) -> aiohttp.ClientSession:
    """The one session of a run.

    ``auto_decompress`` is off because blobs must arrive as the registry's exact bytes: a proxy or
    CDN that adds ``Content-Encoding`` must not change what we hash and store. There is no total
    timeout: only connecting and read silence are bounded.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout),
        auto_decompress=False,
        read_bufsize=READ_BUFFER_BYTES,
        headers={"User-Agent": USER_AGENT},
    )


def redact(url: str) -> str:
    """A URL fit for messages: no userinfo, no query (presigned CDN URLs carry signatures)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def is_loopback(registry: str) -> bool:
    """Whether ``host[:port]`` names this machine, where plain HTTP is allowed without a flag."""
    host = urlsplit("//" + registry).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    Dates in the past and unparseable values mean "no advice" rather than "retry at once".
    """
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    delay = when.timestamp() - (time.time() if now is None else now)
    return delay if delay > 0 else None


class Response:
    """A response whose body is read through bulkpull's error types."""

    def __init__(self, response: aiohttp.ClientResponse, method: str) -> None:
        self._response = response
        self._method = method
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers
        self.url = redact(str(response.url))

    @property
    def content_type(self) -> str:
        """The media type without parameters, which the distribution spec says to ignore."""
        return self.headers.get("Content-Type", "").split(";")[0].strip()

    async def read(self, limit: int) -> bytes:
        """The whole body, refused when larger than ``limit`` bytes."""
        data = bytearray()
        async for chunk in self.iter_chunks():
            data += chunk
            if len(data) > limit:
                raise ContentError(f"{self._method} {self.url}: body larger than {limit} bytes")
        return bytes(data)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; a connection lost mid-body is a :class:`TransportError`."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"{self._method} {self.url}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if str(exc) else text


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """Where a registry answers and how it wants to be authenticated, learnt from ``/v2/``."""

    origin: str
    challenge: Challenge | None


def _pick_challenge(challenges: list[Challenge]) -> Challenge | None:
    by_scheme = {challenge.scheme: challenge for challenge in challenges}
    return by_scheme.get("bearer") or by_scheme.get("basic")


class Transport:
    """Authenticated, retried requests to registries, shared by every image of a run.

    The ping of each registry and each bearer token are single-flight: concurrent requests for
    the same registry or repository wait for one exchange instead of starting their own.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        retry: RetryPolicy,
        credentials: Credentials | None = None,
        plain_http: bool = False,
        skip_tls_verify: bool = False,
    ) -> None:
        self._session = session
        self._retry = retry
        self._credentials = credentials
        self._plain_http = plain_http
        self._ssl: ssl.SSLContext | bool = not skip_tls_verify
        self._endpoints: dict[str, asyncio.Task[_Endpoint]] = {}
        # origin → monotonic time before which no new request goes there (after a 429).
        self._paused_until: dict[str, float] = {}
        self._tokens: dict[tuple[str, str], Token] = {}
        self._token_locks: dict[tuple[str, str], asyncio.Lock] = {}

    @asynccontextmanager
    async def request(
        self,
        method: str,
        registry: str,
        repository: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        *,
        retry: bool = True,
    ) -> AsyncIterator[Response]:
        """Send ``method`` to ``path`` on ``registry`` as a pull of ``repository``.

        Yields a successful (2xx) response; error statuses raise. With ``retry``, temporary
        failures before the body is handed out are retried here; a caller that streams a body
        (and so must retry failures while reading it anyway) passes ``retry=False`` and wraps
        the whole exchange in :meth:`retrying` instead, so attempts are never multiplied.
        """
        endpoint = await self._endpoint(registry)
        url = endpoint.origin + path

        def send() -> Awaitable[aiohttp.ClientResponse]:
            return self._send_authenticated(method, url, endpoint, repository, headers or {})

        response = await (self.retrying(send) if retry else send())
        try:
            yield Response(response, method)
        finally:
            response.release()

    async def retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` until it succeeds, fails permanently, or the retry policy runs out.

        The wait grows exponentially with jitter; a server's ``Retry-After`` lengthens it (up
        to the policy's cap). The error that ends the loop notes how many tries it took.
        """
        tries = 0
        while True:
            tries += 1
            try:
                return await attempt()
            except BulkpullError as exc:
                exc.tries = tries
                if not is_temporary(exc) or tries > self._retry.retries:
                    raise
                delay = self._retry.backoff(tries)
                advised = getattr(exc, "retry_after", None)
                if advised is not None:
                    delay = max(delay, min(advised, self._retry.max_delay))
                log.info("retrying in %.1fs (try %d failed): %s", delay, tries, exc)
                await asyncio.sleep(delay)

    async def _endpoint(self, registry: str) -> _Endpoint:
        task = self._endpoints.get(registry)
        if task is None:
            task = asyncio.ensure_future(self.retrying(lambda: self._ping(registry)))
            self._endpoints[registry] = task
        try:
            return await asyncio.shield(task)
        except BaseException:
            # A failed handshake must not poison the registry for the rest of the run.
            if task.done() and self._endpoints.get(registry) is task:
                del self._endpoints[registry]
            raise

    async def _ping(self, registry: str) -> _Endpoint:
        """``GET /v2/`` to learn the scheme and the auth challenge.

        HTTPS first; plain HTTP only when asked for, or as a fallback for loopback registries
        (what Docker does for ``localhost``).
        """
        if self._plain_http:
            schemes = ["http"]
        elif is_loopback(registry):
            schemes = ["https", "http"]
        else:
            schemes = ["https"]
        for scheme in schemes:
            origin = f"{scheme}://{registry}"
            try:
                response = await self._open("GET", origin + "/v2/", {})
            except TransportError:
                if scheme == schemes[-1]:
                    raise
                continue
            async with response:
                if response.status == 401:
                    challenges = parse_challenges(response.headers.getall("WWW-Authenticate", []))
                    return _Endpoint(origin, _pick_challenge(challenges))
                if response.status >= 500:
                    raise await self._error("GET", response)
                return _Endpoint(origin, None)
        raise AssertionError("unreachable: at least one scheme is tried")

    async def _send_authenticated(
        self,
        method: str,
        url: str,
        endpoint: _Endpoint,
        repository: str,
        headers: Mapping[str, str],
    ) -> aiohttp.ClientResponse:
        """One try, plus one repeat with a fresh token when the registry refuses the cached one."""
        authorization = await self._authorization(endpoint, repository)
        response = await self._follow(method, url, endpoint.origin, headers, authorization)
        if response.status == 401 and endpoint.challenge and endpoint.challenge.scheme == "bearer":
            response.release()
            self._tokens.pop((endpoint.origin, pull_scope(repository)), None)
            authorization = await self._authorization(endpoint, repository)
            response = await self._follow(method, url, endpoint.origin, headers, authorization)
        if response.status >= 400:
            raise await self._error(method, response)
        return response

    async def _authorization(self, endpoint: _Endpoint, repository: str) -> str | None:
        challenge = endpoint.challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return self._credentials.basic_header() if self._credentials else None
        if challenge.scheme != "bearer":
            raise AuthenticationError(
                "GET", endpoint.origin + "/v2/", 401, text=f"unsupported auth {challenge.scheme}"
            )
        token = await self._token(endpoint.origin, challenge, pull_scope(repository))
        return token.header

    async def _token(self, origin: str, challenge: Challenge, scope: str) -> Token:
        key = (origin, scope)
        lock = self._token_locks.setdefault(key, asyncio.Lock())
        async with lock:
            token = self._tokens.get(key)
            if token is None or not token.is_fresh():
                token = await self._fetch_token(origin, challenge, scope)
                self._tokens[key] = token
            return token

    async def _fetch_token(self, origin: str, challenge: Challenge, scope: str) -> Token:
        url = token_url(challenge, [scope])
        headers = {}
        if self._credentials and may_send_credentials(challenge.realm, origin):
            headers["Authorization"] = self._credentials.basic_header()
        response = await self._follow("GET", url, _origin_of(url), {}, headers.get("Authorization"))
        async with response:
            if response.status != 200:
                raise await self._error("GET", response)
            body = await Response(response, "GET").read(MAX_TOKEN_RESPONSE_BYTES)
        return parse_token_response(body, redact(url))

    async def _follow(
        self,
        method: str,
        url: str,
        origin: str,
        headers: Mapping[str, str],
        authorization: str | None,
    ) -> aiohttp.ClientResponse:
        """Send and follow redirects by hand, attaching ``Authorization`` only on ``origin``.

        Blob redirects go to storage or a CDN; a registry token there is a leak, and S3-style
        presigned URLs refuse requests that carry a second credential.
        """
        for _ in range(MAX_REDIRECTS + 1):
            sent = dict(headers)
            if authorization and _origin_of(url) == origin:
                sent["Authorization"] = authorization
            response = await self._open(method, url, sent)
            location = response.headers.get("Location")
            if response.status not in _REDIRECT_STATUSES or not location:
                return response
            response.release()
            url = urljoin(url, location)
        raise TransportError(f"{method} {redact(url)}: more than {MAX_REDIRECTS} redirects")

    async def _open(
        self, method: str, url: str, headers: Mapping[str, str]
    ) -> aiohttp.ClientResponse:
        await self._wait_while_paused(_origin_of(url))
        try:
            return await self._session.request(
                method, url, headers=headers, allow_redirects=False, ssl=self._ssl
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"{method} {redact(url)}: {_describe(exc)}") from exc

    async def _wait_while_paused(self, origin: str) -> None:
        # A loop, not an Event: another 429 may extend the pause while we sleep.
        while (wait := self._paused_until.get(origin, 0.0) - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait)

    def _pause(self, origin: str, seconds: float) -> None:
        """Hold back every new request to ``origin``: a registry that throttles one worker
        would otherwise be hammered by all the others until each got its own 429."""
        until = time.monotonic() + min(seconds, self._retry.max_delay)
        if until > self._paused_until.get(origin, 0.0):
            self._paused_until[origin] = until
            log.warning("%s is throttling: pausing requests to it for %.1fs", origin, seconds)

    async def _error(self, method: str, response: aiohttp.ClientResponse) -> RegistryError:
        """Turn an error status into the matching :class:`RegistryError`, body capped."""
        try:
            body = await response.content.read(MAX_ERROR_BODY_BYTES)
        except (aiohttp.ClientError, TimeoutError):
            body = b""
        finally:
            response.release()
        diagnostics = _diagnostics(body)
        url = redact(str(response.url))
        text = "" if diagnostics else body.decode("utf-8", "replace")
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        status = response.status
        if status == 429:
            origin = _origin_of(str(response.url))
            self._pause(origin, retry_after if retry_after is not None else self._retry.backoff(1))
        kind: type[RegistryError] = RegistryError
        if status in (401, 403):
            kind = AuthenticationError
        elif status == 404:
            kind = NotFoundError
        return kind(method, url, status, diagnostics, text, retry_after)


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _diagnostics(body: bytes) -> list[RegistryDiagnostic]:
    """The ``{"errors": [{code, message, detail}]}`` body of the distribution spec, if it is one."""
    try:
        document = json.loads(body)
    except ValueError:
        return []
    entries = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        return []
    found = []
    for entry in entries:
        if isinstance(entry, dict):
            detail = entry.get("detail", "")
            found.append(
                RegistryDiagnostic(
                    str(entry.get("code", "UNKNOWN")),
                    str(entry.get("message", "")),
                    detail if isinstance(detail, str) else json.dumps(detail),
                )
            )
    return found
