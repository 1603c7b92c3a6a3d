"""Registry authentication as data: challenges, token URLs, credential safety, token answers."""

from __future__ import annotations

import base64
import json

import pytest

from bulkpull.errors import AuthenticationError
from bulkpull.registry.auth import (
    DEFAULT_TOKEN_LIFETIME,
    TOKEN_RENEW_MARGIN,
    Challenge,
    Credentials,
    Token,
    credentials_refusal,
    parse_challenges,
    parse_token_response,
    pull_scope,
    refresh_token_form,
    token_url,
)
from bulkpull.registry.routing import SecurityPolicy

DOCKER_HUB = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"'
# Where a challenge came from: the registry's /v2/, answering 401.
V2 = "https://registry.example/v2/"


@pytest.mark.parametrize(
    ("header", "scheme", "params"),
    [
        pytest.param(
            DOCKER_HUB,
            "bearer",
            {"realm": "https://auth.docker.io/token", "service": "registry.docker.io"},
            id="docker-hub",
        ),
        pytest.param(
            'Bearer realm="https://auth.example/token",service="registry.example",'
            'scope="repository:samalba/my-app:pull,push"',
            "bearer",
            {
                "realm": "https://auth.example/token",
                "service": "registry.example",
                "scope": "repository:samalba/my-app:pull,push",
            },
            id="comma-inside-quoted-scope",
        ),
        pytest.param(
            'Bearer realm="https://a.example/token", service="svc" ,  scope="x"',
            "bearer",
            {"realm": "https://a.example/token", "service": "svc", "scope": "x"},
            id="spaces-around-commas",
        ),
        pytest.param(
            r'Bearer realm="https://a.example/t",service="say \"hi\" \\ bye"',
            "bearer",
            {"realm": "https://a.example/t", "service": 'say "hi" \\ bye'},
            id="backslash-escapes-in-quotes",
        ),
        pytest.param(
            "Bearer realm=https://a.example/token,service=registry.example",
            "bearer",
            {"realm": "https://a.example/token", "service": "registry.example"},
            id="unquoted-tokens",
        ),
        pytest.param(
            'BEARER REALM="https://a.example/token",Service="svc"',
            "bearer",
            {"realm": "https://a.example/token", "service": "svc"},
            id="scheme-and-keys-lowercased",
        ),
        pytest.param(
            'Basic realm="Registry Realm"',
            "basic",
            {"realm": "Registry Realm"},
            id="basic",
        ),
        pytest.param(
            'Bearer realm="https://a.example/token",scope=""',
            "bearer",
            {"realm": "https://a.example/token", "scope": ""},
            id="empty-quoted-value",
        ),
        pytest.param("Bearer", "bearer", {}, id="scheme-without-params"),
        pytest.param(
            'Bearer realm="https://a.example/token",,,garbage',
            "bearer",
            {"realm": "https://a.example/token"},
            id="garbage-after-params-is-dropped",
        ),
        pytest.param("Negotiate", "negotiate", {}, id="unknown-scheme-is-kept"),
    ],
)
def test_challenge_parsing_yields_scheme_and_params(
    header: str, scheme: str, params: dict[str, str]
) -> None:
    [challenge] = parse_challenges([header], V2)

    assert challenge.scheme == scheme
    assert dict(challenge.params) == params


def test_each_header_line_is_one_challenge_in_order() -> None:
    challenges = parse_challenges([DOCKER_HUB, 'Basic realm="fallback"'], V2)

    assert [c.scheme for c in challenges] == ["bearer", "basic"]
    assert challenges[0].realm == "https://auth.docker.io/token"
    assert challenges[1].realm == "fallback"


@pytest.mark.parametrize("header", ["", "   ", "\t"])
def test_blank_header_lines_yield_no_challenge(header: str) -> None:
    assert parse_challenges([header], V2) == []


def test_challenge_without_realm_has_empty_realm() -> None:
    [challenge] = parse_challenges(['Bearer service="svc"'], V2)

    assert challenge.realm == ""


@pytest.mark.parametrize(
    ("realm", "params", "scopes", "expected"),
    [
        pytest.param(
            "https://auth.docker.io/token",
            {"service": "registry.docker.io"},
            ["repository:library/alpine:pull"],
            "https://auth.docker.io/token?service=registry.docker.io"
            "&scope=repository%3Alibrary%2Falpine%3Apull",
            id="service-and-scope",
        ),
        pytest.param(
            "https://auth.example/token?account=me",
            {"service": "svc"},
            ["repository:a:pull"],
            "https://auth.example/token?account=me&service=svc&scope=repository%3Aa%3Apull",
            id="realm-query-is-kept",
        ),
        pytest.param(
            "https://auth.example/token",
            {"service": "svc"},
            ["repository:a:pull", "repository:b:pull"],
            "https://auth.example/token?service=svc"
            "&scope=repository%3Aa%3Apull&scope=repository%3Ab%3Apull",
            id="one-param-per-scope",
        ),
        pytest.param(
            "https://auth.example/token",
            {},
            ["repository:a:pull"],
            "https://auth.example/token?scope=repository%3Aa%3Apull",
            id="no-service",
        ),
        pytest.param(
            "http://127.0.0.1:5001/auth",
            {"service": "local registry"},
            [],
            "http://127.0.0.1:5001/auth?service=local+registry",
            id="plain-http-realm-no-scope",
        ),
        pytest.param(
            "https://auth.example/token",
            {},
            [],
            "https://auth.example/token",
            id="nothing-to-add",
        ),
    ],
)
def test_token_url_adds_service_and_scopes_to_realm(
    realm: str, params: dict[str, str], scopes: list[str], expected: str
) -> None:
    challenge = Challenge("bearer", {"realm": realm, **params}, V2)

    assert token_url(challenge, scopes) == expected


@pytest.mark.parametrize(
    "realm",
    [
        pytest.param("", id="missing"),
        pytest.param("file:///etc/passwd", id="file"),
        pytest.param("ftp://auth.example/token", id="ftp"),
        pytest.param("/token", id="relative"),
        pytest.param("https:///token", id="no-host"),
        pytest.param("https://auth.example:99999/token", id="port-out-of-range"),
        pytest.param("http://auth.example:http/token", id="port-not-a-number"),
    ],
)
def test_token_url_refuses_unusable_realm(realm: str) -> None:
    challenge = Challenge("bearer", {"realm": realm, "service": "svc"}, V2)

    with pytest.raises(AuthenticationError, match="unusable token realm"):
        token_url(challenge, ["repository:a:pull"])


def test_pull_scope_names_the_repository_path() -> None:
    assert pull_scope("library/alpine") == "repository:library/alpine:pull"


INSECURE_TOKENS = SecurityPolicy(insecure_registries=frozenset({"tokens.corp:5001"}))


@pytest.mark.parametrize(
    ("realm", "origin", "policy", "allowed"),
    [
        pytest.param(
            "https://auth.docker.io/token",
            "https://registry-1.docker.io",
            SecurityPolicy(),
            True,
            id="https-other-host",
        ),
        pytest.param(
            "https://auth.example/token",
            "http://registry.local:5000",
            SecurityPolicy(),
            True,
            id="https-realm-for-http-registry",
        ),
        pytest.param(
            "http://registry.local:5000/auth",
            "http://registry.local:5000",
            SecurityPolicy(),
            True,
            id="http-same-origin",
        ),
        pytest.param(
            "http://registry.local:5000/auth",
            "http://Registry.Local:5000",
            SecurityPolicy(),
            True,
            id="http-same-origin-host-case-differs",
        ),
        pytest.param(
            "http://registry.local:5001/token",
            "http://registry.local:5000",
            SecurityPolicy(),
            True,
            id="http-same-host-other-port",
        ),
        pytest.param(
            "http://127.0.0.1:5001/token",
            "http://registry.local:5000",
            SecurityPolicy(),
            True,
            id="http-loopback-realm",
        ),
        pytest.param(
            "http://[::1]:5001/token",
            "http://localhost:5000",
            SecurityPolicy(),
            True,
            id="http-loopback-v6-realm",
        ),
        pytest.param(
            "http://tokens.corp:5001/token",
            "http://registry.local:5000",
            INSECURE_TOKENS,
            True,
            id="http-realm-named-insecure",
        ),
        pytest.param(
            "http://auth.other:5000/token",
            "http://registry.local:5000",
            SecurityPolicy(),
            False,
            id="http-other-host",
        ),
        pytest.param(
            "http://tokens.corp:5002/token",
            "http://registry.local:5000",
            INSECURE_TOKENS,
            False,
            id="http-realm-other-port-than-named-insecure",
        ),
        pytest.param(
            "http://registry.local/token",
            "https://registry.local",
            SecurityPolicy(),
            False,
            id="http-realm-for-https-registry",
        ),
        pytest.param(
            "http://127.0.0.1:5001/token",
            "https://127.0.0.1:5000",
            SecurityPolicy(),
            False,
            id="http-loopback-realm-for-https-registry",
        ),
    ],
)
def test_credentials_go_over_plain_http_only_where_the_user_already_speaks_it(
    realm: str, origin: str, policy: SecurityPolicy, allowed: bool
) -> None:
    assert (credentials_refusal(realm, origin, policy) is None) is allowed


def test_a_refused_plain_http_realm_names_the_flag_that_allows_it() -> None:
    refusal = credentials_refusal(
        "http://user:pw@auth.other:5001/token?scope=x",
        "http://registry.local:5000",
        SecurityPolicy(),
    )

    assert refusal == (
        "not sending credentials to token server http://auth.other:5001/token over plain HTTP; "
        "--insecure-registry auth.other:5001 allows it"
    )


@pytest.mark.parametrize(
    "realm", ["http://registry.local:99999/token", "http://registry.local:abc/token"]
)
def test_credentials_are_withheld_from_realm_with_unusable_port(realm: str) -> None:
    refusal = credentials_refusal(realm, "http://registry.local:5000", SecurityPolicy())
    assert refusal is not None
    assert "unusable port" in refusal


def test_credentials_repr_hides_password() -> None:
    credentials = Credentials("alice", "s3cr3t-pa55")

    assert "s3cr3t-pa55" not in repr(credentials)
    assert "alice" in repr(credentials)


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", "secret"), ("user", "pa:ss:word"), ("ünï", "cödé"), ("<token>", "")],
)
def test_basic_header_is_base64_of_user_colon_password(username: str, password: str) -> None:
    header = Credentials(username, password).basic_header()

    scheme, _, encoded = header.partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded, validate=True) == f"{username}:{password}".encode()


@pytest.mark.parametrize(
    ("document", "value"),
    [
        pytest.param({"token": "t1"}, "t1", id="token"),
        pytest.param({"access_token": "a1"}, "a1", id="access-token"),
        pytest.param({"token": "t1", "access_token": "a1"}, "a1", id="access-token-wins"),
        pytest.param({"token": "t1", "access_token": ""}, "t1", id="empty-access-token-ignored"),
    ],
)
def test_token_response_reads_token_or_access_token(
    document: dict[str, object], value: str
) -> None:
    token = parse_token_response(json.dumps(document).encode(), "https://auth/token", now=0.0)

    assert token.value == value
    assert token.header == f"Bearer {value}"


@pytest.mark.parametrize(
    ("expires_in", "lifetime"),
    [
        pytest.param(None, DEFAULT_TOKEN_LIFETIME, id="absent-defaults-to-60"),
        pytest.param(300, 300.0, id="taken-as-given"),
        pytest.param(90.5, 90.5, id="fractional"),
        pytest.param(30, DEFAULT_TOKEN_LIFETIME, id="shorter-raised-to-60"),
        pytest.param(0, DEFAULT_TOKEN_LIFETIME, id="zero-raised-to-60"),
        pytest.param(-5, DEFAULT_TOKEN_LIFETIME, id="negative-raised-to-60"),
        pytest.param("300", DEFAULT_TOKEN_LIFETIME, id="string-ignored"),
    ],
)
def test_token_lifetime_defaults_to_and_is_at_least_60_seconds(
    expires_in: object, lifetime: float
) -> None:
    document: dict[str, object] = {"token": "t"}
    if expires_in is not None:
        document["expires_in"] = expires_in

    token = parse_token_response(json.dumps(document).encode(), "https://auth/token", now=1000.0)

    assert token.renew_at == pytest.approx(1000.0 + lifetime - TOKEN_RENEW_MARGIN)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"<html>502 Bad Gateway</html>", id="html"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'"token"', id="string"),
        pytest.param(b"{}", id="no-token"),
        pytest.param(b'{"token": ""}', id="empty-token"),
        pytest.param(b'{"token": 12345}', id="number-token"),
        pytest.param(b'{"token": null, "access_token": null}', id="null-tokens"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
    ],
)
def test_unusable_token_response_is_an_authentication_error_naming_the_url(body: bytes) -> None:
    url = "https://auth.example/token"
    with pytest.raises(AuthenticationError) as caught:
        parse_token_response(body, url)

    assert caught.value.url == url
    assert url in str(caught.value)
    assert caught.value.status == 200


def test_token_is_fresh_until_renew_time() -> None:
    token = Token("t", renew_at=100.0)

    assert token.is_fresh(now=99.9)
    assert not token.is_fresh(now=100.0)


def test_token_repr_hides_value() -> None:
    token = parse_token_response(b'{"token": "very-secret-token"}', "https://auth/token")

    assert "very-secret-token" not in repr(token)


def test_refresh_token_form_is_the_oauth2_grant_with_scopes_space_separated() -> None:
    challenge = Challenge("bearer", {"realm": "https://auth.example/token", "service": "svc"}, V2)

    form = refresh_token_form(challenge, ["repository:a:pull", "repository:b:pull"], "rt")

    assert form == {
        "grant_type": "refresh_token",
        "refresh_token": "rt",
        "client_id": "bulkpull",
        "scope": "repository:a:pull repository:b:pull",
        "service": "svc",
    }


def test_refresh_token_form_leaves_out_a_service_the_challenge_did_not_name() -> None:
    challenge = Challenge("bearer", {"realm": "https://auth.example/token"}, V2)

    assert "service" not in refresh_token_form(challenge, ["repository:a:pull"], "rt")


def test_identity_token_stands_in_for_a_missing_password_in_basic_auth() -> None:
    header = Credentials("carol", "", identity_token="refresh-123").basic_header()

    assert base64.b64decode(header.removeprefix("Basic ")) == b"carol:refresh-123"


def test_credentials_repr_hides_identity_token() -> None:
    credentials = Credentials("carol", "", identity_token="refresh-s3cret")

    assert "refresh-s3cret" not in repr(credentials)


def test_unusable_oauth2_token_response_names_the_post() -> None:
    with pytest.raises(AuthenticationError, match=r"^POST https://auth/token"):
        parse_token_response(b"{}", "https://auth/token", method="POST")
