"""The exception tree, its messages, and the one retry decision."""

from __future__ import annotations

import pytest

from bulkpull.errors import (
    AuthenticationError,
    BulkpullError,
    ContentError,
    DigestMismatchError,
    ImageListError,
    InvalidOptionError,
    InvalidPlatformError,
    InvalidReferenceError,
    NotFoundError,
    OutputError,
    PlatformNotFoundError,
    RateLimitError,
    RegistryDiagnostic,
    RegistryError,
    TransportError,
    UnknownHostError,
    UnsupportedMediaTypeError,
    is_temporary,
    printable,
)

URL = "https://registry.example/v2/library/alpine/manifests/3.19"


def registry_error(
    status: int, *codes: str, kind: type[RegistryError] = RegistryError
) -> RegistryError:
    return kind("GET", URL, status, [RegistryDiagnostic(code, "") for code in codes])


def given_up(error: BulkpullError) -> BulkpullError:
    """``error`` as a retry loop leaves it when its tries ran out."""
    error.final = True
    return error


@pytest.mark.parametrize(
    ("error", "temporary"),
    [
        pytest.param(TransportError("connection reset"), True, id="transport"),
        pytest.param(registry_error(408), True, id="408"),
        pytest.param(registry_error(429), True, id="429"),
        pytest.param(registry_error(500), True, id="500"),
        pytest.param(registry_error(502), True, id="502"),
        pytest.param(registry_error(503), True, id="503"),
        pytest.param(registry_error(504), True, id="504"),
        pytest.param(registry_error(400), False, id="400"),
        pytest.param(registry_error(405, "UNSUPPORTED"), False, id="405-unsupported"),
        pytest.param(registry_error(501), False, id="501"),
        pytest.param(registry_error(404), False, id="404-plain-registry-error"),
        pytest.param(registry_error(401, kind=AuthenticationError), False, id="401"),
        pytest.param(registry_error(403, "DENIED", kind=AuthenticationError), False, id="403"),
        pytest.param(
            registry_error(503, "UNAVAILABLE", kind=AuthenticationError),
            False,
            id="authentication-error-even-with-temporary-status",
        ),
        pytest.param(registry_error(404, "MANIFEST_UNKNOWN", kind=NotFoundError), False, id="404"),
        pytest.param(registry_error(400, "TOOMANYREQUESTS"), True, id="code-only-toomanyrequests"),
        pytest.param(registry_error(400, "UNAVAILABLE"), True, id="code-only-unavailable"),
        pytest.param(
            registry_error(400, "TOOMANYREQUESTS", "UNAVAILABLE"), True, id="all-codes-temporary"
        ),
        pytest.param(
            registry_error(400, "TOOMANYREQUESTS", "DENIED"), False, id="mixed-codes-permanent"
        ),
        pytest.param(registry_error(400, "NAME_INVALID"), False, id="permanent-code"),
        pytest.param(registry_error(429, "DENIED"), True, id="temporary-status-wins-over-code"),
        pytest.param(
            DigestMismatchError("blob", "sha256:a", "sha256:b"), False, id="digest-mismatch"
        ),
        pytest.param(ContentError("bad"), False, id="content"),
        pytest.param(OutputError("disk full"), False, id="output"),
        pytest.param(InvalidReferenceError("A", "uppercase"), False, id="invalid-reference"),
        pytest.param(BulkpullError("x"), False, id="root"),
        pytest.param(ConnectionResetError(), False, id="foreign-exception"),
        pytest.param(UnknownHostError("no such host"), False, id="unknown-host"),
        pytest.param(
            RateLimitError("docker.io", registry_error(429, "TOOMANYREQUESTS"), "", "wait"),
            False,
            id="pull-limit-spent",
        ),
        pytest.param(given_up(TransportError("reset")), False, id="given-up-transport"),
        pytest.param(given_up(registry_error(503)), False, id="given-up-503"),
    ],
)
def test_is_temporary_decides_retry(error: BaseException, temporary: bool) -> None:
    assert is_temporary(error) is temporary


@pytest.mark.parametrize(
    ("error", "message"),
    [
        pytest.param(
            RegistryError(
                "GET", URL, 404, [RegistryDiagnostic("MANIFEST_UNKNOWN", "manifest unknown")]
            ),
            f"GET {URL}: 404 MANIFEST_UNKNOWN: manifest unknown",
            id="one-diagnostic",
        ),
        pytest.param(
            RegistryError(
                "GET",
                URL,
                401,
                [
                    RegistryDiagnostic("UNAUTHORIZED", "authentication required"),
                    RegistryDiagnostic("DENIED", ""),
                ],
            ),
            f"GET {URL}: 401 UNAUTHORIZED: authentication required; DENIED",
            id="several-diagnostics-one-without-message",
        ),
        pytest.param(
            RegistryError("HEAD", URL, 502, text="  <html>Bad Gateway</html>\n"),
            f"HEAD {URL}: 502 <html>Bad Gateway</html>",
            id="plain-text-body",
        ),
        pytest.param(
            RegistryError("GET", URL, 500, text="x" * 500),
            f"GET {URL}: 500 {'x' * 200}",
            id="long-body-cut-to-200",
        ),
        pytest.param(
            RegistryError("GET", URL, 503, [RegistryDiagnostic("UNAVAILABLE", "")], text="ignored"),
            f"GET {URL}: 503 UNAVAILABLE",
            id="diagnostics-win-over-text",
        ),
        pytest.param(
            RegistryError("GET", URL, 500),
            f"GET {URL}: 500 Internal Server Error",
            id="status-only-says-what-it-means",
        ),
        pytest.param(
            RegistryError("HEAD", URL, 401), f"HEAD {URL}: 401 Unauthorized", id="head-refused"
        ),
        pytest.param(RegistryError("GET", URL, 599), f"GET {URL}: 599", id="status-http-lacks"),
    ],
)
def test_registry_error_message_names_method_url_status_and_what_the_registry_said(
    error: RegistryError, message: str
) -> None:
    assert str(error) == message


def test_registry_error_keeps_status_codes_and_retry_after() -> None:
    error = RegistryError(
        "GET",
        URL,
        429,
        [RegistryDiagnostic("TOOMANYREQUESTS", "slow down", detail="limit 100/6h")],
        retry_after=7.5,
    )

    assert (error.method, error.url, error.status) == ("GET", URL, 429)
    assert error.codes == frozenset({"TOOMANYREQUESTS"})
    assert error.diagnostics[0].detail == "limit 100/6h"
    assert error.retry_after == 7.5


@pytest.mark.parametrize(
    ("error", "message"),
    [
        pytest.param(
            DigestMismatchError("blob sha256:aa of x", "sha256:aa", "sha256:bb", 42),
            "blob sha256:aa of x: digest mismatch: expected sha256:aa, got sha256:bb (42 bytes)",
            id="digest-with-size",
        ),
        pytest.param(
            DigestMismatchError("manifest x", "sha256:aa", "sha256:bb"),
            "manifest x: digest mismatch: expected sha256:aa, got sha256:bb",
            id="digest-without-size",
        ),
        pytest.param(
            UnsupportedMediaTypeError(
                "alpine", "application/vnd.docker.distribution.manifest.v1+prettyjws"
            ),
            "alpine: unsupported media type "
            "'application/vnd.docker.distribution.manifest.v1+prettyjws'",
            id="media-type",
        ),
        pytest.param(
            PlatformNotFoundError("alpine:3.19", "linux/s390x", ["linux/amd64", "linux/arm64"]),
            "alpine:3.19: no manifest for platform linux/s390x; "
            "available: linux/amd64, linux/arm64",
            id="platform-lists-available",
        ),
        pytest.param(
            PlatformNotFoundError("alpine:3.19", "linux/s390x", []),
            "alpine:3.19: no manifest for platform linux/s390x; available: none",
            id="platform-none-available",
        ),
        pytest.param(
            InvalidReferenceError("Alpine", "repository name must be lowercase"),
            "invalid reference 'Alpine': repository name must be lowercase",
            id="invalid-reference",
        ),
        pytest.param(
            ImageListError("images.txt", 7, "too many fields"),
            "images.txt:7: too many fields",
            id="image-list-line",
        ),
    ],
)
def test_content_and_input_error_messages(error: BulkpullError, message: str) -> None:
    assert str(error) == message


def test_platform_not_found_keeps_wanted_and_available() -> None:
    error = PlatformNotFoundError("x", "linux/s390x", ["linux/amd64"])

    assert error.wanted == "linux/s390x"
    assert error.available == ("linux/amd64",)


@pytest.mark.parametrize(
    ("kind", "bases"),
    [
        (InvalidReferenceError, (BulkpullError, ValueError)),
        (InvalidPlatformError, (BulkpullError, ValueError)),
        (ImageListError, (BulkpullError, ValueError)),
        (InvalidOptionError, (BulkpullError, ValueError)),
        (RegistryError, (BulkpullError,)),
        (AuthenticationError, (RegistryError,)),
        (NotFoundError, (RegistryError,)),
        (TransportError, (BulkpullError,)),
        (UnknownHostError, (TransportError,)),
        (RateLimitError, (RegistryError,)),
        (OutputError, (BulkpullError,)),
        (ContentError, (BulkpullError,)),
        (DigestMismatchError, (ContentError,)),
        (UnsupportedMediaTypeError, (ContentError,)),
        (PlatformNotFoundError, (ContentError,)),
    ],
)
def test_error_tree(kind: type[BaseException], bases: tuple[type[BaseException], ...]) -> None:
    for base in bases:
        assert issubclass(kind, base), f"{kind.__name__} is not a {base.__name__}"


@pytest.mark.parametrize(
    "kind",
    [RegistryError, AuthenticationError, NotFoundError, TransportError, OutputError, ContentError],
)
def test_registry_transport_and_content_errors_are_not_value_errors(
    kind: type[BaseException],
) -> None:
    assert not issubclass(kind, ValueError)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        pytest.param("plain text, ünïcode", "plain text, ünïcode", id="printable-unchanged"),
        pytest.param("a\x1b[2Jb", "a\\x1b[2Jb", id="escape-sequence"),
        pytest.param("one\ntwo\r", "one\\ntwo\\r", id="line-breaks"),
        pytest.param("\x9b31m\x07\x7f", "\\x9b31m\\x07\\x7f", id="c1-bel-del"),
        pytest.param("abc\u202edef", "abc\\u202edef", id="bidi-override"),
        pytest.param("already \\x1b escaped", "already \\x1b escaped", id="idempotent"),
    ],
)
def test_printable_escapes_what_a_terminal_would_act_on(text: str, shown: str) -> None:
    assert printable(text) == shown
    assert printable(shown) == shown


def test_registry_text_is_escaped_in_the_message_and_in_the_diagnostics() -> None:
    error = RegistryError(
        "GET",
        URL,
        400,
        [RegistryDiagnostic("DENIED\x1b[2J", "no\npulled  x", "\x1b]0;title\x07")],
    )

    assert str(error) == f"GET {URL}: 400 DENIED\\x1b[2J: no\\npulled  x"
    assert error.codes == frozenset({"DENIED\\x1b[2J"})
    assert error.diagnostics[0].detail == "\\x1b]0;title\\x07"


def test_every_error_message_is_printable_whatever_it_was_given() -> None:
    errors = [
        RegistryError("GET", URL, 502, text="<html>\x1b[2J</html>"),
        TransportError("GET x: ClientPayloadError: \x1b[31mred"),
        ContentError("manifest: \x00"),
    ]

    assert [str(error).isprintable() for error in errors] == [True, True, True]


def test_a_spent_pull_limit_names_the_registry_the_limit_and_what_to_do() -> None:
    refused = registry_error(429, "TOOMANYREQUESTS")

    error = RateLimitError("docker.io", refused, "100 per 6 h", "log in (docker login) or wait")

    assert str(error) == (
        "docker.io: pull rate limit reached (100 per 6 h); log in (docker login) or wait"
    )
    assert (error.status, error.codes, error.final) == (429, frozenset({"TOOMANYREQUESTS"}), True)


def test_a_registry_error_carries_a_hint_after_what_the_registry_said() -> None:
    error = AuthenticationError("GET", URL, 401, text="unauthorized", hint="no login was sent")

    assert str(error) == f"GET {URL}: 401 unauthorized; no login was sent"


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(TransportError("reset"), id="transport"),
        pytest.param(
            RegistryError(URL, URL, 503, [RegistryDiagnostic("UNAVAILABLE", "later")], hint="h"),
            id="registry",
        ),
        pytest.param(DigestMismatchError("blob", "sha256:a", "sha256:b", 3), id="digest-mismatch"),
        pytest.param(PlatformNotFoundError.only("x", "linux/arm64", ["linux/amd64"]), id="only"),
    ],
)
def test_given_up_is_a_copy_of_the_error_that_says_how_many_tries(error: BulkpullError) -> None:
    given_up = error.given_up(4)

    assert given_up is not error
    assert type(given_up) is type(error)
    assert str(given_up) == str(error)
    assert vars(given_up) == {**vars(error), "tries": 4, "final": is_temporary(error)}
    assert (error.tries, error.final) == (1, False)
