"""Logins and tokens over HTTP: the thin loop that drives ``authflow``.

Each registry request runs :func:`~bulkpull.registry.authflow.auth_flow`: its token requests go to
the token server, its requests to the registry (redirects followed with ``Authorization`` kept to
the registry), and each answer goes back to the flow until it is done. What must happen once per
run happens once however many images ask at the same time: the keychain's answer for a registry
and repository is looked up once (in a thread: a credential helper may run), and equal token
requests under way are sent once and their answer shared. Imports ``errors``, ``routing``,
``auth``, ``authflow``, ``keychain``, ``ratelimit``, ``redirects``, ``session`` and ``status``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from bulkpull.errors import RegistryError
from bulkpull.registry.auth import MAX_TOKEN_RESPONSE_BYTES, Challenge, Credentials, pull_scope
from bulkpull.registry.authflow import (
    AuthFlow,
    AuthState,
    Reply,
    Step,
    TokenRequest,
    auth_flow,
)
from bulkpull.registry.keychain import Keychain
from bulkpull.registry.ratelimit import Throttle
from bulkpull.registry.redirects import follow
from bulkpull.registry.routing import SecurityPolicy, origin_of
from bulkpull.registry.session import Body, Request, Response
from bulkpull.registry.status import MAX_ERROR_BODY_BYTES
from bulkpull.tasks import SharedTasks


class Logins:
    """The keychain's answer per registry and repository, looked up once per run."""

    def __init__(self, keychain: Keychain) -> None:
        self._keychain = keychain
        self._lookups: dict[tuple[str, str], asyncio.Future[Credentials | None]] = {}
        self._tasks = SharedTasks()

    async def get(self, host: str, repository: str) -> Credentials | None:
        key = (host, repository)
        lookup = self._lookups.get(key)
        if lookup is None:
            lookup = self._tasks.start(asyncio.to_thread(self._keychain.resolve, host, repository))
            self._lookups[key] = lookup
        return await asyncio.shield(lookup)

    async def close(self) -> None:
        await self._tasks.close()

    def logged_in(self, host: str, repository: str) -> bool:
        """Whether requests for ``repository`` on ``host`` carry a login."""
        lookup = self._lookups.get((host, repository))
        if lookup is None or not lookup.done() or lookup.cancelled():
            return False
        return lookup.exception() is None and lookup.result() is not None


class Authenticator:
    """Sends registry requests authorized as their registry's challenge asks."""

    def __init__(self, throttle: Throttle, keychain: Keychain, security: SecurityPolicy) -> None:
        self._throttle = throttle
        self.logins = Logins(keychain)
        self.state = AuthState(security)
        self._asked: dict[TokenRequest, asyncio.Future[Reply]] = {}
        self._tasks = SharedTasks()

    async def close(self) -> None:
        """Stop the token requests and login lookups still under way."""
        await self._tasks.close()
        await self.logins.close()

    async def send(
        self,
        method: str,
        url: str,
        challenge: Challenge | None,
        host: str,
        repository: str,
        headers: Mapping[str, str],
        *,
        stream: bool = False,
        scope: str | None = None,
        body: Body | None = None,
    ) -> Response:
        """The registry's last answer to ``method url`` (for ``repository`` on ``host``, which
        answered ``/v2/`` with ``challenge``), whatever its status. A token is asked for
        ``scope`` (one or more scopes, space-separated), by default a pull of ``repository``."""
        login = await self.logins.get(host, repository) if challenge else None
        origin = origin_of(url)
        wanted = scope or pull_scope(repository)
        flow = auth_flow(challenge, origin, wanted, login, self.state)
        response: Response | None = None
        try:
            step = _advance(flow, None)
            while step is not None:
                if isinstance(step, TokenRequest):
                    async with self._shared_reply(step) as reply:
                        step = _advance(flow, reply)  # keeps the token before others ask
                    continue
                if response is not None:
                    response.release()
                response = await follow(
                    self._throttle.open,
                    method,
                    url,
                    origin,
                    headers,
                    step.authorization,
                    stream=stream,
                    body=body,
                )
                step = _advance(flow, Reply(response.status, response.url, response.headers))
        except BaseException as exc:
            if response is not None:
                response.release()
            if isinstance(exc, RegistryError):
                self._throttle.note(exc)
            raise
        assert response is not None, "an auth flow always ends with a request sent"
        return response

    @asynccontextmanager
    async def _shared_reply(self, request: TokenRequest) -> AsyncIterator[Reply]:
        """The answer to ``request``, shared with every flow that asks the same while it is
        under way and until the first asker has kept the token it brings: concurrent requests
        of one scope, or refused together, cost one token request."""
        asked = self._asked.get(request)
        first = asked is None
        if asked is None:
            asked = self._tasks.start(self._ask(request))
            self._asked[request] = asked
        try:
            yield await asyncio.shield(asked)
        finally:
            if first:
                del self._asked[request]

    async def _ask(self, request: TokenRequest) -> Reply:
        if request.follows_redirects:
            response = await follow(
                self._throttle.open,
                request.method,
                request.url,
                origin_of(request.url),
                {},
                request.authorization,
            )
        else:
            posted = Request(request.method, request.url, form=dict(request.form))
            response = await self._throttle.open(posted)
        async with response:
            if response.status == 200:
                body = await response.read(MAX_TOKEN_RESPONSE_BYTES)
            else:
                body = await response.read_start(MAX_ERROR_BODY_BYTES)
        return Reply(response.status, response.url, response.headers, body)


def _advance(flow: AuthFlow, reply: Reply | None) -> Step | None:
    """The flow's next step after ``reply`` (None: its first), or None once it is done."""
    try:
        return next(flow) if reply is None else flow.send(reply)
    except StopIteration:
        return None
