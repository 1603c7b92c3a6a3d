"""Authenticated, retried requests to registries: the pieces of this package put together.

A request goes down this stack, each piece a module of its own (go-containerregistry keeps its
transport the same way):

    Transport      mirrors first, the pull limit, retries (``bulkpull.retry``), error statuses
    Mirrors        one try per mirror, dropped for the run when unusable
    Endpoints      the /v2/ handshake per registry: scheme, challenge, a failure kept
    Authenticator  logins and tokens, driving ``authflow``; renews a refused token once
    follow         redirects, Authorization kept to the registry's origin
    Throttle       the 429 pause per origin
    Sessions       aiohttp: proxies, TLS, timeouts, exceptions translated

Callers see :class:`~bulkpull.registry.session.Response`, never an aiohttp object. Imports the
modules of this package, ``errors`` and ``retry``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from bulkpull.errors import ContentError, RegistryError, TransportError
from bulkpull.registry.keychain import Keychain
from bulkpull.registry.mirrors import Mirrors, SendTo
from bulkpull.registry.ping import Endpoint, Endpoints
from bulkpull.registry.proxies import Proxies
from bulkpull.registry.ratelimit import PullLimits, Throttle, limit_is_spent
from bulkpull.registry.redirects import follow
from bulkpull.registry.routing import DEFAULT_TIMEOUT, Mirror, SecurityPolicy, redact
from bulkpull.registry.session import DEFAULT_CONNECTIONS, Body, Response, Sessions
from bulkpull.registry.tokens import Authenticator
from bulkpull.retry import RetryListener, RetryPolicy, retrying
from bulkpull.usage import RegistryUsage


class Transport:
    """Authenticated, retried requests to registries, shared by every image of a run.

    Use it as an async context manager: it opens its sessions (one per proxy) as requests need
    them and closes them at the end. The ping of each registry, each login lookup and each
    bearer token are single-flight: concurrent requests for the same registry or repository
    wait for one exchange instead of starting their own. ``on_retry`` hears of each retry of a
    ping or a small request before its wait.
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
        security = security or SecurityPolicy()
        self._retry = retry
        self._on_retry = on_retry
        self._sessions = Sessions(
            timeout=timeout,
            connections=connections,
            security=security,
            proxies=proxies or Proxies(),
            ca_cert=ca_cert,
        )
        self._throttle = Throttle(self._sessions.open, retry)
        self._limits = PullLimits()
        self._auth = Authenticator(self._throttle, keychain or Keychain(), security)
        self._endpoints = Endpoints(
            self._throttle,
            security,
            retry,
            single_try=frozenset(mirror.host for mirror in mirrors),
            on_retry=on_retry,
        )
        self._mirrors = Mirrors(mirrors, self._endpoints)

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await self._endpoints.close()
            await self._auth.close()
        finally:
            await self._sessions.close()

    def usage(self) -> tuple[RegistryUsage, ...]:
        """What the run asked of each registry and mirror so far, in the order first asked."""
        return self._limits.usage()

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
        break after any byte, so it wraps the whole exchange in :func:`bulkpull.retry.retrying`
        instead and attempts are never multiplied. Other requests are retried here on temporary
        failures. A mirror whose answer breaks off is not asked again in this run.
        """
        sent = headers or {}

        async def send(at: str, endpoint: Endpoint, pulled: str) -> Response:
            return await self._send(method, at, endpoint, pulled, sent, stream)

        answered = await self._mirrors.first_answer(registry, repository, path, send)
        if answered is None:
            here = await self._from_registry(method, registry, repository, path, stream, send)
            answered = registry, here
        host, response = answered
        try:
            yield response
        except TransportError as exc:
            if host != registry:
                self._mirrors.drop(host, exc)
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
        response = await follow(
            self._throttle.open, method, url, "", headers or {}, None, stream=True
        )
        if response.status >= 400:
            raise await self._throttle.error(response, method)
        async with response:
            yield response

    async def origin(self, registry: str) -> str:
        """``scheme://host[:port]`` at which ``registry`` answers (after its ``/v2/``
        handshake): what an upload's ``Location`` is resolved against and checked to be on."""
        return (await self._endpoints.get(registry)).origin

    @asynccontextmanager
    async def send_to(
        self,
        method: str,
        registry: str,
        repository: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        *,
        scope: str | None = None,
        body: Body | None = None,
        stream: bool = False,
    ) -> AsyncIterator[Response]:
        """Send ``method`` to ``path`` (below the registry's origin, query included) of
        ``registry`` itself, never a mirror: how a push talks to its target.

        The token is asked for ``scope`` (by default a pull of ``repository``). Yields a
        successful (2xx) response; error statuses raise. A request that does not ``stream``
        (its body, if any, is bytes in hand) is retried here on temporary failures; one that
        streams its body is not, since only its caller knows what the registry kept of a body
        cut off part-way.
        """
        sent = headers or {}
        endpoint = await self._endpoints.get(registry)

        async def attempt() -> Response:
            return await self._send(
                method, path, endpoint, repository, sent, stream, scope=scope, body=body
            )

        response = await (
            attempt() if stream else retrying(attempt, self._retry, on_retry=self._on_retry)
        )
        try:
            yield response
        finally:
            response.release()

    async def _from_registry(
        self,
        method: str,
        registry: str,
        repository: str,
        path: str,
        stream: bool,
        send: SendTo,
    ) -> Response:
        """The registry's own answer, retried here unless it ``stream``s; a manifest GET fails
        at once when the registry's pull limit ran out."""
        spent = self._limits.spent(registry, method, path)
        if spent is not None:
            raise spent
        endpoint = await self._endpoints.get(registry)

        async def attempt() -> Response:
            return await send(path, endpoint, repository)

        if stream:
            return await attempt()
        return await retrying(attempt, self._retry, on_retry=self._on_retry)

    def _login_hint(self, status: int, host: str, repository: str) -> str:
        """What a 401 leaves unsaid: whether a login went with the request. The answer to a
        ``HEAD`` has no body to say anything in, and the two are mended in different places:
        a wrong password where the login came from, a missing login with ``--creds`` or
        ``docker login``."""
        if status != 401:
            return ""
        if self._auth.logins.logged_in(host, repository):
            return f"{host} refused the login sent"
        return f"no login was sent to {host}"

    async def _send(
        self,
        method: str,
        path: str,
        endpoint: Endpoint,
        repository: str,
        headers: Mapping[str, str],
        stream: bool,
        *,
        scope: str | None = None,
        body: Body | None = None,
    ) -> Response:
        """One try at a registry whose endpoint is known (the token renewed once if refused).

        A refusal that means the pull limit is spent writes the registry off (see
        :meth:`PullLimits.write_off`), whether the registry or its token server said so.
        """
        host = endpoint.host
        try:
            response = await self._auth.send(
                method,
                endpoint.origin + path,
                endpoint.challenge,
                host,
                repository,
                headers,
                stream=stream,
                scope=scope,
                body=body,
            )
            self._limits.observe(host, method, path, response.headers)
            if response.status >= 400:
                hint = self._auth.state.withheld(endpoint.origin) or self._login_hint(
                    response.status, host, repository
                )
                raise await self._throttle.error(response, method, hint)
        except RegistryError as exc:
            if not limit_is_spent(exc):
                raise
            logged_in = self._auth.logins.logged_in(host, repository)
            raise self._limits.write_off(host, exc, logged_in) from exc
        return response
