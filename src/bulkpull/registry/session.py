"""Sending one HTTP request: the one module that imports aiohttp and aiohttp-socks.

One session per proxy in use (aiohttp-socks connectors for HTTP, HTTPS and SOCKS proxies), TLS
verified against the system's CAs plus a user's CA file unless the security policy says
otherwise for the host, and the translation of every aiohttp, TLS and proxy exception into
:mod:`bulkpull.errors`. What a request returns is a :class:`Response` of ours; no aiohttp type
leaves this module. Redirects are never followed here (``redirects`` does that by hand).

Small requests (pings, tokens, manifests) are bounded by a deadline for the whole exchange as well
as by silence, so a registry trickling a byte a second cannot hold one for minutes; blob bodies
(``stream``) are bounded by silence only, since a large layer on a slow link may take hours and
still be moving. Imports ``errors``, ``routing`` and ``proxies``.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit

import aiohttp
import aiohttp_socks

from bulkpull.errors import BulkpullError, ContentError, TransportError, UnknownHostError
from bulkpull.registry.proxies import Proxies
from bulkpull.registry.routing import SecurityPolicy, redact

log = logging.getLogger("bulkpull")

USER_AGENT = f"bulkpull/{version('bulkpull')}"
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


Body = bytes | Callable[[], AsyncIterable[bytes]]
"""What an upload sends: bytes, or a function that starts the stream of them anew, so that a
request sent again (after a redirect, or with a renewed token) sends its whole body again."""


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request as the pieces of this package pass it down to :class:`Sessions`: a
    ``form`` is sent URL-encoded, a ``body`` as it is (its ``Content-Length`` among the
    headers); a request that ``stream``s a large body, either way, has no deadline."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    form: Mapping[str, str] | None = field(default=None, repr=False)
    stream: bool = False
    body: Body | None = field(default=None, repr=False)


class Response:
    """A response whose body is read through bulkpull's error types; release it when done
    (``async with`` does)."""

    def __init__(self, response: aiohttp.ClientResponse, method: str) -> None:
        self._response = response
        self._method = method
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    @functools.cached_property
    def url(self) -> str:
        """The URL answered, fit for messages (made only when one needs it)."""
        return redact(str(self._response.url))

    @property
    def content_type(self) -> str:
        """The media type without parameters, which the distribution spec says to ignore."""
        return self.headers.get("Content-Type", "").split(";")[0].strip()

    def header_values(self, name: str) -> list[str]:
        """Every value of a header sent more than once (``WWW-Authenticate``)."""
        return self._response.headers.getall(name, [])

    async def read(self, limit: int) -> bytes:
        """The whole body, refused when larger than ``limit`` bytes."""
        data = bytearray()
        async for chunk in self.iter_chunks():
            data += chunk
            if len(data) > limit:
                raise ContentError(f"{self._method} {self.url}: body larger than {limit} bytes")
        return bytes(data)

    async def read_start(self, limit: int) -> bytes:
        """At most the first ``limit`` bytes of the body, and nothing if it breaks off: what is
        worth quoting from an error page."""
        try:
            return await self._response.content.read(limit)
        except _CONNECTION_ERRORS:
            return b""

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; a connection lost mid-body is a :class:`TransportError`."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except _CONNECTION_ERRORS as exc:
            raise TransportError(f"{self._method} {self.url}: {_describe(exc)}") from exc

    def release(self) -> None:
        self._response.release()

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


Opener = Callable[[Request], Awaitable[Response]]
"""Sends one request and returns its response unread, whatever its status."""


class Sessions:
    """The aiohttp sessions of a run, one per proxy, opened on first use and closed by
    :meth:`close`; :meth:`open` is the :class:`Opener` every other piece sends through.

    A CA file that cannot be read fails here, when the sessions are made, before any request.
    Without one, the system's CAs are read only when a request first needs TLS: a run that
    talks plain HTTP to its registries (a mirror on loopback) never pays for them.
    """

    def __init__(
        self,
        *,
        timeout: float,
        connections: int,
        security: SecurityPolicy,
        proxies: Proxies,
        ca_cert: Path | None,
    ) -> None:
        # Blob bodies: connecting and silence. Everything else: the whole exchange as well.
        self._silence = aiohttp.ClientTimeout(sock_connect=timeout, sock_read=timeout)
        self._deadline = aiohttp.ClientTimeout(
            total=timeout, sock_connect=timeout, sock_read=timeout
        )
        self._connections = connections
        self._security = security
        self._proxies = proxies
        self._ca_cert = ca_cert
        if ca_cert is not None:
            _verified_tls(ca_cert)
        self._sessions: dict[str | None, aiohttp.ClientSession] = {}

    async def close(self) -> None:
        sessions = list(self._sessions.values())
        self._sessions.clear()
        for session in sessions:
            await session.close()

    async def open(self, request: Request) -> Response:
        """One request, through the proxy chosen for its URL and with the TLS checks the
        security policy asks of its host; bounded by silence, and unless it ``stream``s a
        large body, by a deadline for the whole exchange."""
        method, url = request.method, request.url
        proxy = self._proxies.for_url(url)
        parts = urlsplit(url)
        verifies = parts.scheme == "https" and self._security.verifies_tls(parts.netloc)
        tls = _verified_tls(self._ca_cert) if verifies else False
        try:
            response = await self._session(proxy).request(
                method,
                url,
                headers=request.headers,
                data=_data(request),
                allow_redirects=False,
                ssl=tls,
                timeout=self._silence if request.stream else self._deadline,
            )
        except _CONNECTION_ERRORS as exc:
            through = f" (through proxy {redact(proxy)})" if proxy else ""
            kind = UnknownHostError if _is_unknown_host(exc) else TransportError
            raise kind(f"{method} {redact(url)}{through}: {_describe(exc)}") from exc
        # Request-level log for -v; redacted, since presigned CDN URLs carry signatures.
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s: %d", method, redact(url), response.status)
        return Response(response, method)

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
                connector = _proxy_connector(proxy, _verified_tls(self._ca_cert), self._connections)
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._silence,
                auto_decompress=False,
                read_bufsize=READ_BUFFER_BYTES,
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            )
            self._sessions[proxy] = session
        return session


def _data(request: Request) -> Mapping[str, str] | bytes | AsyncIterable[bytes] | None:
    """What aiohttp sends as the request's body: the form, the bytes, or a fresh stream."""
    if request.form is not None or request.body is None:
        return request.form
    return request.body if isinstance(request.body, bytes) else request.body()


def is_certificate_error(exc: BulkpullError) -> bool:
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


@functools.cache
def _verified_tls(ca_cert: Path | None) -> ssl.SSLContext:
    """The system's trusted CAs, plus those in ``ca_cert``: made once per process and CA file
    (reading the system's CAs costs about 0.1 s), shared by every session of the process."""
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
