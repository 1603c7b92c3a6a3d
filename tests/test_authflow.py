"""The auth flow driven by hand, without a network: each row is a registry's challenge, the
login, the answers the flow is given, and every step it takes."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import pytest

from bulkpull import AuthenticationError, Credentials, RegistryError
from bulkpull.registry.auth import Challenge, Token, push_scope
from bulkpull.registry.authflow import (
    AuthFlow,
    AuthState,
    Reply,
    Send,
    Step,
    TokenRequest,
    auth_flow,
)
from bulkpull.registry.routing import SecurityPolicy

ORIGIN = "https://registry.example"
V2 = f"{ORIGIN}/v2/"
REALM = "https://auth.example/token"
SCOPE = "repository:team/app:pull"
TOKEN_URL = f"{REALM}?service=registry.example&scope=repository%3Ateam%2Fapp%3Apull"
BEARER = Challenge("bearer", {"realm": REALM, "service": "registry.example"}, V2)
BASIC = Challenge("basic", {"realm": "Registry"}, V2)
ALICE = Credentials("alice", "pw")
IDENTITY = Credentials("alice", "", identity_token="refresh-1")
OAUTH_FORM = (
    ("grant_type", "refresh_token"),
    ("refresh_token", "refresh-1"),
    ("client_id", "bulkpull"),
    ("scope", SCOPE),
    ("service", "registry.example"),
)


def answer(status: int, url: str = V2, body: bytes = b"") -> Reply:
    return Reply(status, url, {}, body)


def token(value: str, url: str = REALM) -> Reply:
    return answer(200, url, json.dumps({"token": value}).encode())


def state(now: float = 0.0) -> AuthState:
    return AuthState(SecurityPolicy(), clock=lambda: now)


def run(flow: AuthFlow, replies: Iterable[Reply]) -> list[Step]:
    """Every step ``flow`` takes, each answered with the next of ``replies``, all of which
    must be used."""
    steps: list[Step] = []
    answers = iter(replies)
    step = next(flow)
    while True:
        steps.append(step)
        reply = next(answers, None)
        assert reply is not None, f"the flow asked for more after {steps}"
        try:
            step = flow.send(reply)
        except StopIteration:
            assert next(answers, None) is None, "the flow ended before its answers"
            return steps


@dataclass(frozen=True)
class Row:
    challenge: Challenge | None
    login: Credentials | None
    replies: tuple[Reply, ...]
    steps: tuple[Step, ...]


ROWS = {
    "anonymous registry: no Authorization": Row(None, ALICE, (answer(200),), (Send(None),)),
    "basic: the login as it is": Row(BASIC, ALICE, (answer(200),), (Send(ALICE.basic_header()),)),
    "basic without a login: anonymous": Row(BASIC, None, (answer(200),), (Send(None),)),
    "basic refused: not repeated": Row(BASIC, ALICE, (answer(401),), (Send(ALICE.basic_header()),)),
    "bearer, anonymous: token by GET, then the request": Row(
        BEARER,
        None,
        (token("t1"), answer(200)),
        (TokenRequest("GET", TOKEN_URL), Send("Bearer t1")),
    ),
    "bearer with a login: Basic auth on the token request only": Row(
        BEARER,
        ALICE,
        (token("t1"), answer(200)),
        (TokenRequest("GET", TOKEN_URL, ALICE.basic_header()), Send("Bearer t1")),
    ),
    "identity token: traded by OAuth2 POST": Row(
        BEARER,
        IDENTITY,
        (token("t1"), answer(200)),
        (TokenRequest("POST", REALM, form=OAUTH_FORM), Send("Bearer t1")),
    ),
    "identity token where OAuth2 is missing: GET after the POST": Row(
        BEARER,
        IDENTITY,
        (answer(404, REALM), token("t1"), answer(200)),
        (
            TokenRequest("POST", REALM, form=OAUTH_FORM),
            TokenRequest("GET", TOKEN_URL, IDENTITY.basic_header()),
            Send("Bearer t1"),
        ),
    ),
    "refused token: renewed once and repeated": Row(
        BEARER,
        None,
        (token("t1"), answer(401), token("t2"), answer(200)),
        (
            TokenRequest("GET", TOKEN_URL),
            Send("Bearer t1"),
            TokenRequest("GET", TOKEN_URL),
            Send("Bearer t2"),
        ),
    ),
    "refused again after renewal: the refusal stands": Row(
        BEARER,
        None,
        (token("t1"), answer(401), token("t2"), answer(401)),
        (
            TokenRequest("GET", TOKEN_URL),
            Send("Bearer t1"),
            TokenRequest("GET", TOKEN_URL),
            Send("Bearer t2"),
        ),
    ),
    "forbidden (403) is no stale token: not repeated": Row(
        BEARER,
        None,
        (token("t1"), answer(403)),
        (TokenRequest("GET", TOKEN_URL), Send("Bearer t1")),
    ),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_auth_flow_steps(row: Row) -> None:
    flow = auth_flow(row.challenge, ORIGIN, SCOPE, row.login, state())

    assert run(flow, row.replies) == list(row.steps)


def test_a_kept_token_is_sent_without_asking_again() -> None:
    shared = state()
    run(auth_flow(BEARER, ORIGIN, SCOPE, None, shared), [token("t1"), answer(200)])

    steps = run(auth_flow(BEARER, ORIGIN, SCOPE, None, shared), [answer(200)])

    assert steps == [Send("Bearer t1")]


def test_each_scope_and_registry_gets_its_own_token() -> None:
    shared = state()
    run(auth_flow(BEARER, ORIGIN, SCOPE, None, shared), [token("t1"), answer(200)])

    other_scope = run(
        auth_flow(BEARER, ORIGIN, "repository:x:pull", None, shared), [token("t2"), answer(200)]
    )
    other_registry = run(
        auth_flow(BEARER, "https://mirror.example", SCOPE, None, shared), [token("t3"), answer(200)]
    )

    assert isinstance(other_scope[0], TokenRequest)
    assert isinstance(other_registry[0], TokenRequest)


def test_a_push_with_a_mount_asks_for_both_scopes_in_one_token() -> None:
    scopes = push_scope("team/app", mount_from="team/base")

    by_get = run(auth_flow(BEARER, ORIGIN, scopes, None, state()), [token("t1"), answer(201)])
    by_post = run(auth_flow(BEARER, ORIGIN, scopes, IDENTITY, state()), [token("t2"), answer(201)])

    assert scopes == "repository:team/app:pull,push repository:team/base:pull"
    assert by_get[0] == TokenRequest(
        "GET",
        f"{REALM}?service=registry.example&scope=repository%3Ateam%2Fapp%3Apull%2Cpush"
        "&scope=repository%3Ateam%2Fbase%3Apull",
    )
    assert isinstance(by_post[0], TokenRequest)
    assert dict(by_post[0].form)["scope"] == scopes


def test_a_token_due_for_renewal_is_renewed_before_it_is_sent() -> None:
    shared = state(now=1000.0)
    shared.keep(ORIGIN, SCOPE, Token("old", renew_at=999.0))

    steps = run(auth_flow(BEARER, ORIGIN, SCOPE, None, shared), [token("new"), answer(200)])

    assert steps == [TokenRequest("GET", TOKEN_URL), Send("Bearer new")]


def test_requests_refused_together_renew_the_token_once() -> None:
    shared = state()
    first, second = (auth_flow(BEARER, ORIGIN, SCOPE, None, shared) for _ in range(2))
    assert next(first) == TokenRequest("GET", TOKEN_URL)
    assert first.send(token("t1")) == Send("Bearer t1")
    assert next(second) == Send("Bearer t1")  # both in flight with t1

    # The first refusal renews the token; the second, of the same token, uses the renewal.
    assert first.send(answer(401)) == TokenRequest("GET", TOKEN_URL)
    assert first.send(token("t2")) == Send("Bearer t2")
    assert second.send(answer(401)) == Send("Bearer t2")


@pytest.mark.parametrize(
    ("login", "replies", "error", "message"),
    [
        pytest.param(
            ALICE,
            [answer(401, TOKEN_URL, b'{"details": "incorrect username or password"}')],
            AuthenticationError,
            '401 {"details": "incorrect username or password"}',
            id="login-refused-by-token-server",
        ),
        pytest.param(
            IDENTITY,
            [answer(403, REALM)],
            AuthenticationError,
            f"POST {REALM}: 403",
            id="oauth2-refused",
        ),
        pytest.param(
            IDENTITY,
            [answer(503, REALM)],
            RegistryError,
            f"POST {REALM}: 503",
            id="oauth2-server-error-is-no-fallback",
        ),
        pytest.param(
            None,
            [answer(200, REALM, b"[]")],
            AuthenticationError,
            "token response is not a JSON object",
            id="token-answer-without-token",
        ),
    ],
)
def test_token_server_answers_that_fail_the_request(
    login: Credentials | None, replies: list[Reply], error: type[Exception], message: str
) -> None:
    flow = auth_flow(BEARER, ORIGIN, SCOPE, login, state())

    with pytest.raises(error, match=message.replace("{", r"\{").replace("}", r"\}")):
        run(flow, replies)


def test_an_unusable_realm_is_the_401_that_named_it() -> None:
    challenge = Challenge("bearer", {"realm": "file:///etc/passwd"}, V2)

    with pytest.raises(AuthenticationError) as caught:
        next(auth_flow(challenge, ORIGIN, SCOPE, ALICE, state()))

    assert (caught.value.method, caught.value.url, caught.value.status) == ("GET", V2, 401)
    assert "unusable token realm 'file:///etc/passwd'" in str(caught.value)


def test_a_login_is_withheld_from_a_plain_http_realm_and_the_refusal_says_why() -> None:
    origin = "https://registry.example"
    challenge = Challenge("bearer", {"realm": "http://auth.example/token"}, f"{origin}/v2/")
    flow = auth_flow(challenge, origin, SCOPE, ALICE, state())

    request = next(flow)
    assert isinstance(request, TokenRequest)
    assert request.authorization is None
    with pytest.raises(AuthenticationError) as caught:
        flow.send(answer(401, "http://auth.example/token"))
    assert "not sending credentials to token server http://auth.example/token" in str(caught.value)


def test_secrets_stay_out_of_the_steps_repr() -> None:
    steps = run(
        auth_flow(BEARER, ORIGIN, SCOPE, IDENTITY, state()), [token("t-secret"), answer(200)]
    )

    assert "refresh-1" not in repr(steps)
    assert "t-secret" not in repr(steps)
