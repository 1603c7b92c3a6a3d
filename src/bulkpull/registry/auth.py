"""The vocabulary of registry authentication: credentials, challenges, token requests, tokens.

Nothing here touches the network: ``authflow`` decides with these what to send, and the HTTP
pieces send it, so every rule of the challenge/token dance is tested without a server (httpx's
auth-flow idea). Imports only ``errors`` and ``routing``.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from bulkpull.errors import AuthenticationError
from bulkpull.registry.routing import SecurityPolicy, has_valid_port, is_loopback, redact

# The distribution token spec: servers should never issue tokens for less than 60 seconds, and a
# response without ``expires_in`` means exactly that.
DEFAULT_TOKEN_LIFETIME = 60.0
# Renew this long before expiry so a request never leaves with a token about to lapse.
TOKEN_RENEW_MARGIN = 10.0
# A token response is a small JSON document; a larger one is an error page or an attack.
MAX_TOKEN_RESPONSE_BYTES = 64 * 1024

# Sent as client_id in OAuth2 token requests, which the token spec requires of clients.
OAUTH_CLIENT_ID = "bulkpull"
# Token servers without the OAuth2 POST flow answer it with one of these; then the GET flow is
# used (containerd's list: GCR 404, Artifactory 401, ACR 400, others 405).
OAUTH_UNSUPPORTED_STATUSES = frozenset({400, 401, 404, 405})
# One auth-param: key=token or key="quoted string" (backslash escapes; commas inside quotes are
# part of the value, as in scope="repository:a/b:pull,push").
_PARAM = re.compile(r'\s*([A-Za-z][\w.-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*(?:,|$)')


@dataclass(frozen=True, slots=True)
class Credentials:
    """A login for one registry; the secrets are never shown in repr.

    ``identity_token`` is what ``docker login`` keeps instead of a password for registries that
    hand out OAuth2 refresh tokens (``identitytoken`` in config.json, or a credential helper
    answering with the user ``<token>``); it is exchanged for access tokens by POST, see
    :func:`refresh_token_form`.
    """

    username: str
    password: str = field(repr=False)
    identity_token: str = field(default="", repr=False)

    def basic_header(self) -> str:
        """``Authorization`` for Basic auth and GET token requests.

        Without a password the identity token stands in for it: what token servers that lack
        the OAuth2 POST flow accept (containerd's fallback does the same).
        """
        secret = self.password or self.identity_token
        raw = f"{self.username}:{secret}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge; the scheme is lowercased, as are parameter keys.

    ``url`` is where it came from (the registry's ``/v2/``, answering 401): an error about the
    challenge itself, such as an unusable realm, names that answer.
    """

    scheme: str
    params: Mapping[str, str]
    url: str

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


def parse_challenges(headers: Iterable[str], url: str) -> list[Challenge]:
    """Parse the ``WWW-Authenticate`` header values ``url`` answered with; one challenge per
    header line. Schemes we cannot answer are kept: the caller picks the one it speaks."""
    challenges = []
    for header in headers:
        scheme, _, rest = header.strip().partition(" ")
        if scheme:
            challenges.append(Challenge(scheme.lower(), _parse_params(rest), url))
    return challenges


def _parse_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _PARAM.match(text, position)
        if not match or match.end() == position:
            break
        key, quoted, bare = match.groups()
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        params[key.lower()] = value
        position = match.end()
    return params


def usable_realm(challenge: Challenge) -> str:
    """The challenge's realm, refused unless it is an absolute http(s) URL with a valid port.

    The refusal is the 401 that carried the challenge: no token can be asked for after it.
    """
    realm = challenge.realm
    parts = urlsplit(realm)
    if parts.scheme not in ("http", "https") or not parts.hostname or not has_valid_port(parts):
        shown = repr(redact(realm)) if realm else "(none)"
        raise AuthenticationError("GET", challenge.url, 401, text=f"unusable token realm {shown}")
    return realm


def pull_scope(repository: str) -> str:
    """The scope a pull needs; registries often omit it from the ``/v2/`` challenge."""
    return f"repository:{repository}:pull"


def push_scope(repository: str, mount_from: str | None = None) -> str:
    """The scope a push to ``repository`` needs, and with ``mount_from`` the pull of the
    repository a blob is mounted from (distribution checks both). The push comes first, as
    go-containerregistry sends it: a few registries read only the first scope."""
    push = f"repository:{repository}:pull,push"
    return f"{push} {pull_scope(mount_from)}" if mount_from else push


def token_url(challenge: Challenge, scopes: Iterable[str]) -> str:
    """The GET URL for a bearer token: the realm plus ``service`` and one ``scope`` per scope.

    A query already in the realm is kept, as the token spec allows realms that carry one.
    """
    realm = usable_realm(challenge)
    parts = urlsplit(realm)
    query: list[tuple[str, str]] = []
    if "service" in challenge.params:
        query.append(("service", challenge.params["service"]))
    query.extend(("scope", scope) for scope in scopes)
    if not query:
        return realm
    separator = "&" if parts.query else "?"
    return realm + separator + urlencode(query)


def credentials_refusal(realm: str, registry_origin: str, security: SecurityPolicy) -> str | None:
    """Why credentials must not go to this token realm, or None when they may.

    Over HTTPS they always may. Over plain HTTP only when the registry itself is reached over
    plain HTTP (which the security policy allows only on purpose: ``--plain-http``,
    ``--insecure-registry``, loopback) and the realm is a host the user already reaches in the
    clear: the registry's own host on any port (a token server beside it, as docker_auth is
    deployed), a loopback address, or a host named by ``--insecure-registry``. Anywhere else a
    password would cross the network readable by anyone on the way; the reason says which flag
    allows it.
    """
    parts = urlsplit(realm)
    if parts.scheme == "https":
        return None
    if not has_valid_port(parts):
        return f"not sending credentials to token server {redact(realm)}: unusable port"
    why = f"not sending credentials to token server {redact(realm)} over plain HTTP"
    registry = urlsplit(registry_origin)
    if registry.scheme != "http":
        return f"{why}: the registry itself is reached over HTTPS"
    host = parts.netloc.rpartition("@")[2]
    if parts.hostname == registry.hostname or is_loopback(host) or security.is_insecure(host):
        return None
    return f"{why}; --insecure-registry {host} allows it"


def refresh_token_form(
    challenge: Challenge, scopes: Iterable[str], refresh_token: str
) -> dict[str, str]:
    """The form to POST to the realm to trade an identity (refresh) token for an access token.

    The OAuth2 flow of the distribution token spec: ``grant_type=refresh_token``, the scopes as
    one space-separated ``scope`` and a ``client_id``, which the spec requires.
    """
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": OAUTH_CLIENT_ID,
        "scope": " ".join(scopes),
    }
    if "service" in challenge.params:
        form["service"] = challenge.params["service"]
    return form


@dataclass(frozen=True, slots=True)
class Token:
    """A bearer token and the monotonic time after which it must be renewed."""

    value: str = field(repr=False)
    renew_at: float

    @property
    def header(self) -> str:
        return f"Bearer {self.value}"

    def is_fresh(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) < self.renew_at


def parse_token_response(
    body: bytes, url: str, now: float | None = None, *, method: str = "GET"
) -> Token:
    """Read ``token`` or ``access_token`` and the lifetime from a token server's JSON answer.

    ``access_token`` wins when both are present (the OAuth2 name, which distribution prefers);
    the lifetime defaults to, and is never taken as shorter than, 60 seconds. ``method`` is how
    the token was asked for (GET, or POST for OAuth2), for error messages.
    """
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise AuthenticationError(method, url, 200, text="token response is not a JSON object")
    value = document.get("access_token") or document.get("token")
    if not isinstance(value, str) or not value:
        raise AuthenticationError(method, url, 200, text="token response holds no token")
    lifetime = document.get("expires_in")
    if not isinstance(lifetime, int | float) or lifetime < DEFAULT_TOKEN_LIFETIME:
        lifetime = DEFAULT_TOKEN_LIFETIME
    start = time.monotonic() if now is None else now
    return Token(value, start + float(lifetime) - TOKEN_RENEW_MARGIN)
