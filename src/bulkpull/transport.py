"""HTTP to registries: the one module that imports aiohttp and aiohttp-socks.

It carries out what ``network`` decides and what ``auth`` describes: one session per proxy in use
(aiohttp-socks connectors for HTTP, HTTPS and SOCKS proxies), TLS verified against the system's
CAs plus a user's CA file, the choice of scheme (the ``/v2/`` ping), mirrors tried before the
registry they stand in for, authentication (anonymous, Basic, Bearer tokens shared per registry
and repository, identity tokens traded by OAuth2 POST), redirects (followed by hand so
``Authorization`` never leaves the registry's origin), bounded retries on temporary failures and
the translation of every aiohttp, TLS and proxy exception into :mod:`bulkpull.errors`. Callers
see :class:`Response`, never an aiohttp object.

Small requests (pings, tokens, manifests) are bounded by a deadline for the whole exchange as well
as by silence, so a registry trickling a byte a second cannot hold one for minutes; blob bodies
are bounded by silence only, since a large layer on a slow link may take hours and still be
moving. A registry whose ``/v2/`` handshake failed is written off: its remaining requests fail at
once with that same error; one whose pull limit ran out fails its remaining manifest GETs (what
the limit counts) at once, while blobs of manifests already fetched still come. Imports
``errors``, ``network``, ``ratelimit``, ``auth``, ``credentials`` and ``options``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from types import TracebackType
from typing import TypeVar
from urllib.parse import unquote, urljoin, urlsplit

import aiohttp
import aiohttp_socks

from bulkpull.auth import (
    MAX_TOKEN_RESPONSE_BYTES,
    OAUTH_UNSUPPORTED_STATUSES,
    Challenge,
    Credentials,
    Token,
    credentials_refusal,
    parse_challenges,
    parse_token_response,
    pull_scope,
    refresh_token_form,
    token_url,
    usable_realm,
)
from bulkpull.credentials import Keychain
from bulkpull.errors import (
    AuthenticationError,
    BulkpullError,
    ContentError,
    DigestMismatchError,
    NotFoundError,
    RateLimitError,
    RegistryDiagnostic,
    RegistryError,
    TransportError,
    UnknownHostError,
    is_temporary,
)
from bulkpull.network import Mirror, Proxies, SecurityPolicy, redact, registry_key
from bulkpull.options import DEFAULT_TIMEOUT, PullOptions, RetryPolicy
from bulkpull.ratelimit import MAX_RETRY_AFTER, PullLimit, RegistryUsage, limit_is_spent

log = logging.getLogger("bulkpull")

T = TypeVar("T")
# Told of each retry before its wait: the error, the try that failed, the most tries allowed and
# the seconds until the next; so a caller can show the wait instead of going silent.
RetryListener = Callable[[BulkpullError, int, int, float], None]

USER_AGENT = f"bulkpull/{version('bulkpull')}"
# Registries answer errors with a small JSON document; anything bigger is an HTML error page
# and only its start is worth showing.
MAX_ERROR_BODY_BYTES = 64 * 1024
MAX_REDIRECTS = 10
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# aiohttp reads sockets in buffers of this size; 64 KiB (its default) costs a Python-level
# round trip per 64 KiB on a fast link.
READ_BUFFER_BYTES = 1024 * 1024
# Connections per session when the caller does not say (aiohttp's own default).
DEFAULT_CONNECTIONS = 100

_PROXY_TYPES = {
    "http": aiohttp_socks.ProxyType.HTTP,
    "https": aiohttp_socks.ProxyType.HTTP,
    "socks4": aiohttp_socks.ProxyType.SOCKS4,
    "socks5": aiohttp_socks.ProxyType.SOCKS5,
    "socks5h": aiohttp_socks.ProxyType.SOCKS5,
}
# Go's defaults for a proxy URL without a port.
_PROXY_PORTS = {"http": 80, "https": 443, "socks4": 1080, "socks5": 1080, "socks5h": 1080}
# What a request can fail with below HTTP: aiohttp's errors, the proxy connector's (which are
# not aiohttp's), and OSError, which TLS errors raised inside a proxy tunnel arrive as.
_CONNECTION_ERRORS = (
    aiohttp.ClientError,
    aiohttp_socks.ProxyError,
    aiohttp_socks.ProxyConnectionError,
    aiohttp_socks.ProxyTimeoutError,
    OSError,
)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    A date in the past means the time has come (0); an unparseable value is no advice (None),
    which is not the same as no header at all only to a caller that saw the header.
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
    return max(delay, 0.0)


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
        except _CONNECTION_ERRORS as exc:
            raise TransportError(f"{self._method} {self.url}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    """A short reason for a failed request. aiohttp's connection errors print the TLS context
    object (``ssl:<ssl.SSLContext object at 0x…>``), which tells a user nothing."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"cannot connect to {exc.host}:{exc.port}: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, socket.gaierror):
            return f"cannot resolve {exc.host}: {_os_reason(exc.os_error)}"
        return f"cannot connect to {exc.host}:{exc.port}: {_os_reason(exc.os_error)}"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if str(exc) else text


def _os_reason(error: OSError) -> str:
    """``Connection refused`` rather than ``Connect call failed ('127.0.0.1', 9)``; TLS and
    name-resolution errors carry their own text (their errno is not an ``errno`` value)."""
    if isinstance(error, ssl.SSLError | socket.gaierror) or not error.errno or error.errno < 0:
        return error.strerror or str(error) or type(error).__name__
    return os.strerror(error.errno)


def _is_unknown_host(exc: BaseException) -> bool:
    """Whether a connection failed because the name does not resolve (directly, or through a
    SOCKS proxy that leaves resolving to us)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return isinstance(exc.os_error, socket.gaierror)
    return isinstance(exc, socket.gaierror)


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """Where a registry answers and how it wants to be authenticated, learnt from ``/v2/``."""

    host: str
    origin: str
    challenge: Challenge | None


def _pick_challenge(challenges: list[Challenge]) -> Challenge | None:
    by_scheme = {challenge.scheme: challenge for challenge in challenges}
    return by_scheme.get("bearer") or by_scheme.get("basic")


@dataclass(slots=True)
class _Attempts:
    """The count kept for one retried operation, and the decision after each failure.

    ``failures`` are those since the last progress: the retry budget. A failure after progress
    (new bytes kept) resumes at once and renews that budget, but only ``policy.resumes`` times,
    so a server that drops every connection after a few new bytes is still given up on.
    """

    policy: RetryPolicy
    made: int = 0
    failures: int = 0
    resumes: int = 0
    refetched: bool = False

    def delay_after(self, exc: BulkpullError, progressed: bool) -> float | None:
        """Seconds to wait before the next attempt, or None to give up on ``exc``.

        A body that arrived corrupted is fetched once more at once (the store has dropped its
        bytes); a second mismatch means the registry serves wrong bytes. Otherwise only
        temporary errors are retried: exponential backoff, lengthened by a ``Retry-After`` of
        up to five minutes.
        """
        if isinstance(exc, DigestMismatchError) and not self.refetched:
            self.refetched = True
            return 0.0
        if not is_temporary(exc):
            return None
        if progressed and self.resumes < self.policy.resumes:
            self.resumes += 1
            self.failures = 0
            return 0.0
        self.failures += 1
        if self.failures > self.policy.retries:
            return None
        delay = self.policy.backoff(self.failures)
        if exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, MAX_RETRY_AFTER))
        return delay


class Transport:
    """Authenticated, retried requests to registries, shared by every image of a run.

    Use it as an async context manager: it opens its sessions (one per proxy) as requests need
    them and closes them at the end. The ping of each registry, each login lookup and each
    bearer token are single-flight: concurrent requests for the same registry or repository
    wait for one exchange instead of starting their own.
    """

    def __init__(
        self,
        *,
        retry: RetryPolicy,
        timeout: float = DEFAULT_TIMEOUT,
        connections: int = DEFAULT_CONNECTIONS,
        keychain: Keychain | None = None,
        security: SecurityPolicy | None = None,
        ca_cert: Path | None = None,
        proxies: Proxies | None = None,
        mirrors: Sequence[Mirror] = (),
        on_retry: RetryListener | None = None,
    ) -> None:
        self._retry = retry
        self._on_retry = on_retry
        self._connections = connections
        # Blob bodies: connecting and silence. Everything else: the whole exchange as well.
        self._silence = aiohttp.ClientTimeout(sock_connect=timeout, sock_read=timeout)
        self._deadline = aiohttp.ClientTimeout(
            total=timeout, sock_connect=timeout, sock_read=timeout
        )
        self._keychain = keychain or Keychain()
        self._security = security or SecurityPolicy()
        self._verified_tls = _verified_tls(ca_cert)
        self._proxies = proxies or Proxies()
        self._mirrors = tuple(mirrors)
        self._mirror_hosts = frozenset(mirror.host for mirror in self._mirrors)
        # Mirrors that failed to answer: the rest of the run goes straight to the registries.
        self._unusable_mirrors: set[str] = set()
        self._sessions: dict[str | None, aiohttp.ClientSession] = {}
        # Kept when they fail: a registry that failed its handshake fails the rest of the run.
        self._endpoints: dict[str, asyncio.Task[_Endpoint]] = {}
        self._logins: dict[tuple[str, str], asyncio.Future[Credentials | None]] = {}
        # origin → monotonic time before which no new request goes there (after a 429).
        self._paused_until: dict[str, float] = {}
        # host → the error every further manifest GET to it fails with (its pull limit ran out).
        self._spent: dict[str, RateLimitError] = {}
        # registry origin → why its token server got no credentials, for a later refusal.
        self._withheld: dict[str, str] = {}
        self._usage: dict[str, RegistryUsage] = {}
        self._tokens: dict[tuple[str, str], Token] = {}
        self._token_locks: dict[tuple[str, str], asyncio.Lock] = {}

    @classmethod
    def from_options(
        cls, options: PullOptions, *, connections: int, on_retry: RetryListener | None = None
    ) -> Transport:
        """The transport a pull with ``options`` needs."""
        return cls(
            on_retry=on_retry,
            retry=options.retry,
            timeout=options.timeout,
            connections=connections,
            keychain=options.keychain,
            security=SecurityPolicy(
                plain_http=options.plain_http,
                skip_tls_verify=options.skip_tls_verify,
                insecure_registries=options.insecure_registries,
            ),
            ca_cert=options.ca_cert,
            proxies=options.proxies,
            mirrors=options.mirrors,
        )

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        sessions = list(self._sessions.values())
        self._sessions.clear()
        for session in sessions:
            await session.close()

    def usage(self) -> tuple[RegistryUsage, ...]:
        """What the run asked of each registry and mirror so far, in the order first asked."""
        return tuple(self._usage.values())

    @asynccontextmanager
    async def request(
        self,
        method: str,
        registry: str,
        repository: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        *,
        stream: bool = False,
    ) -> AsyncIterator[Response]:
        """Send ``method`` to ``path`` (below ``/v2/<repository>/``) as a pull of ``repository``
        from ``registry``, or from one of its mirrors.

        Yields a successful (2xx) response; error statuses raise. A caller that ``stream``s a
        large body (a blob) gets no whole-request deadline, and no retries here: a body can
        break after any byte, so it wraps the whole exchange in :meth:`retrying` instead and
        attempts are never multiplied. Other requests are retried here on temporary failures.
        A mirror whose answer breaks off is not asked again in this run.
        """
        sent = headers or {}
        answered = await self._first_answer(method, registry, repository, path, sent, stream)
        if answered is None:
            spent = self._spent.get(registry)
            if spent is not None and method == "GET" and "/manifests/" in path:
                raise spent
            endpoint = await self._endpoint(registry)

            def send() -> Awaitable[aiohttp.ClientResponse]:
                return self._send(method, path, endpoint, repository, sent, stream)

            answered = registry, await (send() if stream else self.retrying(send))
        host, response = answered
        try:
            yield Response(response, method)
        except TransportError as exc:
            if host != registry:
                self._drop_mirror(host, exc)
            raise
        finally:
            response.release()

    @asynccontextmanager
    async def request_url(
        self, method: str, url: str, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[Response]:
        """A request to a URL outside any registry (a foreign layer's ``urls``).

        No credentials are ever attached, redirects are followed, and error statuses raise.
        Only http(s) URLs are fetched: a manifest must not make us open ``file:`` or worse.
        """
        if urlsplit(url).scheme not in ("http", "https"):
            raise ContentError(f"{method} {redact(url)}: only http(s) URLs are fetched")
        response = await self._follow(method, url, "", headers or {}, None, stream=True)
        if response.status >= 400:
            raise await self._error(method, response)
        try:
            yield Response(response, method)
        finally:
            response.release()

    async def retrying(
        self, attempt: Callable[[], Awaitable[T]], progress: Callable[[], int] | None = None
    ) -> T:
        """Run ``attempt`` until it succeeds, fails permanently, or the retry policy runs out.

        The wait grows exponentially with jitter; a server's ``Retry-After`` lengthens it.
        ``progress`` counts what attempts achieved that is kept (new bytes of a blob beyond the
        most its partial file held): a temporary failure after progress, such as a reset in the
        middle of a large layer, is resumed at once, as containers/image does, so a long
        download over a flaky link is not abandoned while it is still moving. An error given
        up on says how many tries it took and is ``final``: no outer loop tries it again.
        """
        attempts = _Attempts(self._retry)
        while True:
            attempts.made += 1
            before = progress() if progress else 0
            try:
                return await attempt()
            except BulkpullError as exc:
                progressed = progress is not None and progress() > before
                counted = attempts.failures
                delay = attempts.delay_after(exc, progressed)
                if delay is None:
                    if not exc.final:  # an inner loop's count stands
                        exc.tries = attempts.made
                        exc.final = is_temporary(exc)
                    raise
                log.info("retrying in %.1fs (try %d failed): %s", delay, attempts.made, exc)
                if self._on_retry is not None and attempts.failures > counted:  # a backoff
                    self._on_retry(exc, attempts.failures, self._retry.retries + 1, delay)
                await asyncio.sleep(delay)

    async def _first_answer(
        self,
        method: str,
        registry: str,
        repository: str,
        path: str,
        headers: Mapping[str, str],
        stream: bool,
    ) -> tuple[str, aiohttp.ClientResponse] | None:
        """The first mirror of ``registry`` that has what was asked for, and its answer.

        Mirrors get one try each (the registry itself is the fallback); any failure moves on,
        and a mirror that cannot be reached (its ``/v2/`` fails, a request times out) or whose
        pull limit ran out is left out for the rest of the run.
        """
        for mirror in self._mirrors:
            if not mirror.serves(registry) or mirror.host in self._unusable_mirrors:
                continue
            try:
                endpoint = await self._endpoint(mirror.host)
            except BulkpullError as exc:
                self._drop_mirror(mirror.host, exc)
                continue
            mirrored = mirror.repository(repository)
            moved = f"/v2/{mirrored}/" + path.removeprefix(f"/v2/{repository}/")
            try:
                response = await self._send(method, moved, endpoint, mirrored, headers, stream)
            except (TransportError, RateLimitError) as exc:
                self._drop_mirror(mirror.host, exc)
            except BulkpullError as exc:
                log.info("mirror %s: %s; asking %s", mirror, exc, registry)
            else:
                return mirror.host, response
        return None

    def _drop_mirror(self, host: str, exc: BulkpullError) -> None:
        if host not in self._unusable_mirrors:
            self._unusable_mirrors.add(host)
            log.warning("mirror %s is not used in this run: %s", host, exc)

    async def _endpoint(self, host: str) -> _Endpoint:
        """The registry's scheme and challenge, learnt once per run.

        A failed handshake stays failed: every later request to that registry gets the same
        error at once instead of waiting out another round of retries.
        """
        task = self._endpoints.get(host)
        if task is None or task.cancelled():

            def ping() -> Awaitable[_Endpoint]:
                return self._ping(host)

            # A mirror gets one try: falling back to the registry is its retry.
            task = asyncio.ensure_future(
                ping() if host in self._mirror_hosts else self.retrying(ping)
            )
            self._endpoints[host] = task
        return await asyncio.shield(task)

    async def _ping(self, host: str) -> _Endpoint:
        """``GET /v2/`` to learn the scheme and the auth challenge.

        HTTPS first; HTTP when asked for, or as a fallback for insecure and loopback registries
        (what Docker does). A certificate that fails verification is reported as such, never
        hidden behind a plain-HTTP attempt.
        """
        schemes = self._security.schemes(host)
        for scheme in schemes:
            origin = f"{scheme}://{host}"
            try:
                challenge = await self._challenge_at(origin)
            except BulkpullError as exc:
                if scheme == schemes[-1] or _is_certificate_error(exc):
                    raise
                log.info("%s; trying %s", exc, schemes[-1])
                continue
            wants = f"{challenge.scheme} auth" if challenge else "no auth"
            log.info("%s answers at %s (%s)", host, origin, wants)
            return _Endpoint(host, origin, challenge)
        raise AssertionError("unreachable: at least one scheme is tried")

    async def _challenge_at(self, origin: str) -> Challenge | None:
        """The challenge ``/v2/`` answers 401 with, or None for a 200.

        Any other answer is not the registry API (go-containerregistry's ping says the same):
        a 400, for one, is what a TLS port answers to plain HTTP.
        """
        response = await self._open("GET", origin + "/v2/", {})
        async with response:
            if response.status == 200:
                return None
            if response.status != 401:
                raise await self._error("GET", response)
            return _pick_challenge(
                parse_challenges(response.headers.getall("WWW-Authenticate", []))
            )

    async def _send(
        self,
        method: str,
        path: str,
        endpoint: _Endpoint,
        repository: str,
        headers: Mapping[str, str],
        stream: bool,
    ) -> aiohttp.ClientResponse:
        """One try, plus one repeat with a fresh token when the registry refuses the cached one.

        A refusal that means the pull limit is spent writes the registry off (see
        :meth:`_write_off`), whether the registry or its token server said so.
        """
        url = endpoint.origin + path
        try:
            authorization = await self._authorization(endpoint, repository)
            response = await self._follow(
                method, url, endpoint.origin, headers, authorization, stream=stream
            )
            if (
                response.status == 401
                and endpoint.challenge
                and endpoint.challenge.scheme == "bearer"
            ):
                response.release()
                self._forget_token(endpoint, repository, authorization)
                authorization = await self._authorization(endpoint, repository)
                response = await self._follow(
                    method, url, endpoint.origin, headers, authorization, stream=stream
                )
            self._observe(endpoint.host, method, path, response)
            if response.status >= 400:
                raise await self._error(method, response, self._withheld.get(endpoint.origin, ""))
        except RegistryError as exc:
            if not limit_is_spent(exc):
                raise
            raise self._write_off(endpoint.host, repository, exc) from exc
        return response

    def _observe(self, host: str, method: str, path: str, response: aiohttp.ClientResponse) -> None:
        """Count manifest requests and note the pull limit a registry announces (-v shows it)."""
        usage = self._usage.get(host) or RegistryUsage(registry_key(host))
        if "/manifests/" in path:
            if method == "GET":
                usage = replace(usage, manifest_gets=usage.manifest_gets + 1)
            elif method == "HEAD":
                usage = replace(usage, manifest_heads=usage.manifest_heads + 1)
        limit = PullLimit.from_headers(response.headers)
        if limit is not None and limit != usage.pull_limit:
            left = "unknown" if limit.remaining is None else limit.remaining
            log.info("%s: pull limit %s, %s left", usage.registry, limit, left)
            usage = replace(usage, pull_limit=limit)
        self._usage[host] = usage

    def _write_off(self, host: str, repository: str, refused: RegistryError) -> RateLimitError:
        """The error for every manifest GET to ``host`` from now on: its pull limit ran out."""
        spent = self._spent.get(host)
        if spent is None:
            usage = self._usage.get(host) or RegistryUsage(registry_key(host))
            self._usage[host] = replace(usage, rate_limited=True)
            limit = str(usage.pull_limit) if usage.pull_limit else ""
            advice = (
                "wait, or log in with an account that has a higher limit"
                if self._logged_in(host, repository)
                else "log in (docker login) or wait"
            )
            spent = RateLimitError(usage.registry, refused, limit, advice)
            self._spent[host] = spent
            log.warning("%s", spent)
        return spent

    def _logged_in(self, host: str, repository: str) -> bool:
        lookup = self._logins.get((host, repository))
        if lookup is None or not lookup.done() or lookup.cancelled():
            return False
        return lookup.exception() is None and lookup.result() is not None

    def _forget_token(self, endpoint: _Endpoint, repository: str, refused: str | None) -> None:
        """Drop the cached token, unless it is already newer than the one the registry refused:
        several requests refused together must renew the token once, not once each."""
        key = (endpoint.origin, pull_scope(repository))
        token = self._tokens.get(key)
        if token is not None and token.header == refused:
            del self._tokens[key]

    async def _authorization(self, endpoint: _Endpoint, repository: str) -> str | None:
        challenge = endpoint.challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            # Only ever plain HTTP to a registry the security policy lets us reach that way.
            login = await self._login(endpoint.host, repository)
            return login.basic_header() if login else None
        if challenge.scheme != "bearer":
            raise AuthenticationError(
                "GET", endpoint.origin + "/v2/", 401, text=f"unsupported auth {challenge.scheme}"
            )
        token = await self._token(endpoint, challenge, repository)
        return token.header

    async def _login(self, host: str, repository: str) -> Credentials | None:
        """The keychain's answer for ``host``, looked up once (in a thread: a credential helper
        may run) and shared by every request of the run."""
        key = (host, repository)
        lookup = self._logins.get(key)
        if lookup is None:
            lookup = asyncio.ensure_future(
                asyncio.to_thread(self._keychain.resolve, host, repository)
            )
            self._logins[key] = lookup
        return await asyncio.shield(lookup)

    async def _token(self, endpoint: _Endpoint, challenge: Challenge, repository: str) -> Token:
        scope = pull_scope(repository)
        key = (endpoint.origin, scope)
        lock = self._token_locks.setdefault(key, asyncio.Lock())
        async with lock:
            token = self._tokens.get(key)
            if token is None or not token.is_fresh():
                login = await self._login(endpoint.host, repository)
                token = await self._fetch_token(endpoint, challenge, scope, login)
                self._tokens[key] = token
            return token

    async def _fetch_token(
        self, endpoint: _Endpoint, challenge: Challenge, scope: str, login: Credentials | None
    ) -> Token:
        """A token for ``scope``: by OAuth2 POST for an identity token (GET when the server
        lacks it), else by GET, with the login only where it may go."""
        realm = usable_realm(challenge)
        if login is not None and self._withhold_from(endpoint, realm):
            login = None
        if login is not None and login.identity_token:
            token = await self._refresh_token(challenge, scope, login.identity_token)
            if token is not None:
                return token
        url = token_url(challenge, [scope])
        authorization = login.basic_header() if login else None
        response = await self._follow("GET", url, _origin_of(url), {}, authorization)
        async with response:
            if response.status != 200:
                raise await self._error("GET", response, self._withheld.get(endpoint.origin, ""))
            body = await Response(response, "GET").read(MAX_TOKEN_RESPONSE_BYTES)
        return parse_token_response(body, redact(url), method="GET")

    def _withhold_from(self, endpoint: _Endpoint, realm: str) -> bool:
        """Whether the login must not go to ``realm``; says why once per registry, and keeps
        the reason for the refusal that an anonymous token is likely to meet."""
        refusal = credentials_refusal(realm, endpoint.origin, self._security)
        if refusal is not None and endpoint.origin not in self._withheld:
            log.warning("%s: %s", endpoint.host, refusal)
            self._withheld[endpoint.origin] = refusal
        return refusal is not None

    async def _refresh_token(
        self, challenge: Challenge, scope: str, refresh_token: str
    ) -> Token | None:
        """Trade an identity token by OAuth2 POST; None when the server does not offer that."""
        realm = challenge.realm
        form = refresh_token_form(challenge, [scope], refresh_token)
        response = await self._open("POST", realm, {}, form)
        async with response:
            if response.status in OAUTH_UNSUPPORTED_STATUSES:
                log.info(
                    "%s answered OAuth2 with %d; asking by GET", redact(realm), response.status
                )
                return None
            if response.status != 200:
                raise await self._error("POST", response)
            body = await Response(response, "POST").read(MAX_TOKEN_RESPONSE_BYTES)
        return parse_token_response(body, redact(realm), method="POST")

    async def _follow(
        self,
        method: str,
        url: str,
        origin: str,
        headers: Mapping[str, str],
        authorization: str | None,
        *,
        stream: bool = False,
    ) -> aiohttp.ClientResponse:
        """Send and follow redirects by hand, attaching ``Authorization`` only on ``origin``.

        Blob redirects go to storage or a CDN; a registry token there is a leak, and S3-style
        presigned URLs refuse requests that carry a second credential. A redirect loop, or one
        to anything but http(s), is a permanent error: asking again leads to the same place.
        """
        for _ in range(MAX_REDIRECTS + 1):
            sent = dict(headers)
            if authorization and _origin_of(url) == origin:
                sent["Authorization"] = authorization
            response = await self._open(method, url, sent, stream=stream)
            location = response.headers.get("Location")
            if response.status not in _REDIRECT_STATUSES or not location:
                return response
            response.release()
            target = urljoin(url, location)
            if urlsplit(target).scheme not in ("http", "https"):
                raise RegistryError(
                    method,
                    redact(url),
                    response.status,
                    text=f"redirects to {redact(target)}, which is not an http(s) URL",
                )
            url = target
        raise RegistryError(
            method, redact(url), response.status, text=f"more than {MAX_REDIRECTS} redirects"
        )

    async def _open(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        form: Mapping[str, str] | None = None,
        *,
        stream: bool = False,
    ) -> aiohttp.ClientResponse:
        """One request, through the proxy ``network`` picks for ``url`` and with the TLS checks
        the security policy asks of its host; bounded by silence, and unless it ``stream``s a
        large body, by a deadline for the whole exchange."""
        await self._wait_while_paused(_origin_of(url))
        proxy = self._proxies.for_url(url)
        host = urlsplit(url).netloc
        tls = self._verified_tls if self._security.verifies_tls(host) else False
        try:
            response = await self._session(proxy).request(
                method,
                url,
                headers=headers,
                data=form,
                allow_redirects=False,
                ssl=tls,
                timeout=self._silence if stream else self._deadline,
            )
        except _CONNECTION_ERRORS as exc:
            through = f" (through proxy {redact(proxy)})" if proxy else ""
            kind = UnknownHostError if _is_unknown_host(exc) else TransportError
            raise kind(f"{method} {redact(url)}{through}: {_describe(exc)}") from exc
        # Request-level log for -v; redacted, since presigned CDN URLs carry signatures.
        log.debug("%s %s: %d", method, redact(url), response.status)
        return response

    def _session(self, proxy: str | None) -> aiohttp.ClientSession:
        """The session for requests through ``proxy`` (None: direct), opened on first use.

        Bodies must arrive as the registry's exact bytes: ``Accept-Encoding: identity`` asks
        that no proxy or CDN compress them, and ``auto_decompress`` is off so that one which
        adds ``Content-Encoding`` anyway cannot change what we hash and store.
        """
        session = self._sessions.get(proxy)
        if session is None:
            connector: aiohttp.BaseConnector
            if proxy is None:
                connector = aiohttp.TCPConnector(limit=self._connections)
            else:
                log.info("connecting through proxy %s", redact(proxy))
                connector = _proxy_connector(proxy, self._verified_tls, self._connections)
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._silence,
                auto_decompress=False,
                read_bufsize=READ_BUFFER_BYTES,
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            )
            self._sessions[proxy] = session
        return session

    async def _wait_while_paused(self, origin: str) -> None:
        # A loop, not an Event: another 429 may extend the pause while we sleep.
        while (wait := self._paused_until.get(origin, 0.0) - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait)

    def _pause(self, origin: str, seconds: float) -> None:
        """Hold back every new request to ``origin``: a registry that throttles one worker
        would otherwise be hammered by all the others until each got its own 429."""
        until = time.monotonic() + min(seconds, MAX_RETRY_AFTER)
        if until > self._paused_until.get(origin, 0.0):
            self._paused_until[origin] = until
            log.warning("%s is throttling: pausing requests to it for %.1fs", origin, seconds)

    async def _error(
        self, method: str, response: aiohttp.ClientResponse, hint: str = ""
    ) -> RegistryError:
        """Turn an error status into the matching :class:`RegistryError`, body capped.

        ``hint`` is added to a refused login (401, 403): why no credentials were sent.
        """
        try:
            body = await response.content.read(MAX_ERROR_BODY_BYTES)
        except _CONNECTION_ERRORS:
            body = b""
        finally:
            response.release()
        diagnostics = _diagnostics(body)
        url = redact(str(response.url))
        text = "" if diagnostics else body.decode("utf-8", "replace")
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        status = response.status
        if status in (401, 403):
            return AuthenticationError(method, url, status, diagnostics, text, retry_after, hint)
        kind = NotFoundError if status == 404 else RegistryError
        error = kind(method, url, status, diagnostics, text, retry_after)
        if status == 429 and not limit_is_spent(error):
            origin = _origin_of(str(response.url))
            self._pause(origin, retry_after if retry_after is not None else self._retry.backoff(1))
        return error


def _verified_tls(ca_cert: Path | None) -> ssl.SSLContext:
    """The system's trusted CAs, plus those in ``ca_cert``."""
    context = ssl.create_default_context()
    if ca_cert is not None:
        try:
            context.load_verify_locations(cafile=ca_cert)
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(f"CA certificate file {ca_cert}: {_describe(exc)}") from exc
    return context


def _proxy_connector(url: str, proxy_tls: ssl.SSLContext, limit: int) -> aiohttp.BaseConnector:
    """An aiohttp-socks connector that tunnels every connection through the proxy at ``url``.

    ``socks5h`` resolves names at the proxy, ``socks5`` and ``socks4`` here (curl's meaning);
    HTTP proxies get names in ``CONNECT``. An ``https://`` proxy is itself verified like a
    registry.
    """
    parts = urlsplit(url)
    return aiohttp_socks.ProxyConnector(
        proxy_type=_PROXY_TYPES[parts.scheme],
        host=parts.hostname or "",
        port=parts.port or _PROXY_PORTS[parts.scheme],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        rdns=parts.scheme == "socks5h",
        proxy_ssl=proxy_tls if parts.scheme == "https" else None,
        limit=limit,
    )


def _is_certificate_error(exc: BaseException) -> bool:
    """Whether a certificate failed verification somewhere below ``exc``: aiohttp says so
    directly, but a TLS session inside a proxy tunnel fails as an OSError caused by it."""
    cause = exc.__cause__
    while cause is not None:
        if isinstance(
            cause, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError
        ):
            return True
        cause = cause.__cause__
    return False


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
