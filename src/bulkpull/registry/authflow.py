"""Registry authentication as decisions without I/O: which ``Authorization`` a request carries,
how a bearer token is asked for, what the token server's answer means, and when a refused token
is renewed.

Each flow is a generator, as httpx's auth flows are: it yields the next thing to send and is sent
back what came of it. :func:`auth_flow` is one registry request: anonymous, Basic, or Bearer with
a token of the request's scope, taken from :class:`AuthState` or asked for; a request refused
with 401 despite its token is repeated once with a renewed token. :func:`token_flow` is asking
for one token: an identity token is traded by OAuth2 POST (and by GET where the server lacks
that), anything else by GET with the login as Basic auth. ``tokens`` drives the flows over HTTP;
the tests drive them by hand. Imports ``errors``, ``routing``, ``auth`` and ``status``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field

from bulkpull.registry.auth import (
    OAUTH_UNSUPPORTED_STATUSES,
    Challenge,
    Credentials,
    Token,
    credentials_refusal,
    parse_token_response,
    refresh_token_form,
    token_url,
    usable_realm,
)
from bulkpull.registry.routing import SecurityPolicy, redact
from bulkpull.registry.status import status_error

log = logging.getLogger("bulkpull")


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """Ask the token server for a token: a GET carrying the login as Basic ``authorization``,
    or an OAuth2 POST of ``form``. Equal requests may share one answer."""

    method: str
    url: str
    authorization: str | None = field(default=None, repr=False)
    form: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def follows_redirects(self) -> bool:
        """A GET follows redirects; a form is posted once, where the realm says, so that no
        redirect hands the refresh token in it to another URL."""
        return not self.form


@dataclass(frozen=True, slots=True)
class Send:
    """Send the registry request with this ``Authorization`` (None: without one)."""

    authorization: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class Reply:
    """What came of a step: the status and headers of the answer, the URL that gave it
    (redacted), and for a token request its body (the start of it for an error status)."""

    status: int
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


Step = TokenRequest | Send
AuthFlow = Generator[Step, Reply, None]


class AuthState:
    """What a run has learnt about authenticating, shared by every flow: bearer tokens per
    registry origin and scope, and why a registry's token server is given no credentials.

    ``clock`` is monotonic time, which tokens are renewed by.
    """

    def __init__(
        self, security: SecurityPolicy, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._security = security
        self._clock = clock
        self._tokens: dict[tuple[str, str], Token] = {}
        self._withheld: dict[str, str] = {}

    def token(self, origin: str, scope: str) -> Token | None:
        """The token kept for ``scope`` on the registry at ``origin``, unless it is due for
        renewal."""
        token = self._tokens.get((origin, scope))
        return token if token is not None and token.is_fresh(self._clock()) else None

    def keep(self, origin: str, scope: str, token: Token) -> None:
        self._tokens[(origin, scope)] = token

    def refused(self, origin: str, scope: str, header: str) -> None:
        """The registry refused ``header``: drop the token, unless the one kept is already
        newer. Several requests refused together thus renew the token once, not once each."""
        token = self._tokens.get((origin, scope))
        if token is not None and token.header == header:
            del self._tokens[(origin, scope)]

    def withheld(self, origin: str) -> str:
        """Why the token server of the registry at ``origin`` got no credentials ("" if it
        did): what a refusal of the anonymous token request is likely due to."""
        return self._withheld.get(origin, "")

    def login_for(self, origin: str, realm: str, login: Credentials | None) -> Credentials | None:
        """``login``, or None where it must not go (see :func:`credentials_refusal`); says why
        once per registry."""
        if login is None:
            return None
        refusal = credentials_refusal(realm, origin, self._security)
        if refusal is None:
            return login
        if origin not in self._withheld:
            log.warning("%s: %s", origin.partition("://")[2], refusal)
            self._withheld[origin] = refusal
        return None


def auth_flow(
    challenge: Challenge | None,
    origin: str,
    scope: str,
    login: Credentials | None,
    state: AuthState,
) -> AuthFlow:
    """One request to the registry at ``origin`` that answered ``/v2/`` with ``challenge``
    (Basic, Bearer, or None for a registry that asks for nothing).

    Basic credentials are sent as they are: the registry is only ever reached over plain HTTP
    when the security policy allows it. A Bearer request that is refused (401) is repeated once
    with a renewed token; a second refusal stands.
    """
    if challenge is None:
        yield Send(None)
        return
    if challenge.scheme == "basic":
        yield Send(login.basic_header() if login else None)
        return
    token = yield from _bearer(challenge, origin, scope, login, state)
    reply = yield Send(token.header)
    if reply.status != 401:
        return
    state.refused(origin, scope, token.header)
    token = yield from _bearer(challenge, origin, scope, login, state)
    yield Send(token.header)


def _bearer(
    challenge: Challenge,
    origin: str,
    scope: str,
    login: Credentials | None,
    state: AuthState,
) -> Generator[TokenRequest, Reply, Token]:
    """The token kept for ``scope``, or a new one asked for and kept."""
    token = state.token(origin, scope)
    if token is None:
        sent = state.login_for(origin, usable_realm(challenge), login)
        token = yield from token_flow(challenge, scope, sent, state.withheld(origin))
        state.keep(origin, scope, token)
    return token


def token_flow(
    challenge: Challenge, scope: str, login: Credentials | None, hint: str = ""
) -> Generator[TokenRequest, Reply, Token]:
    """Ask the realm of ``challenge`` for a token for ``scope``, with ``login`` if any.

    ``scope`` may hold several scopes separated by spaces, as the token spec's grammar writes
    them (a push and the pull of a repository to mount from): each is its own ``scope``
    parameter of a GET, and a POST sends them as one.

    An identity token goes by OAuth2 POST first; a server that answers it with one of
    :data:`OAUTH_UNSUPPORTED_STATUSES` lacks that flow and is asked by GET. ``hint`` is added
    to a refused GET: why no login was sent.
    """
    realm = usable_realm(challenge)
    scopes = scope.split()
    if login is not None and login.identity_token:
        form = refresh_token_form(challenge, scopes, login.identity_token)
        reply = yield TokenRequest("POST", realm, form=tuple(form.items()))
        if reply.status == 200:
            return parse_token_response(reply.body, redact(realm), method="POST")
        if reply.status not in OAUTH_UNSUPPORTED_STATUSES:
            raise status_error("POST", reply.url, reply.status, reply.headers, reply.body)
        log.info("%s answered OAuth2 with %d; asking by GET", redact(realm), reply.status)
    url = token_url(challenge, scopes)
    reply = yield TokenRequest("GET", url, login.basic_header() if login else None)
    if reply.status != 200:
        raise status_error("GET", reply.url, reply.status, reply.headers, reply.body, hint)
    return parse_token_response(reply.body, redact(url), method="GET")
