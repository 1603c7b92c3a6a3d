"""Where requests go: registry names, mirrors, schemes and TLS checks."""

from __future__ import annotations

import pytest

from bulkpull import PullOptions
from bulkpull.registry.routing import (
    Mirror,
    SecurityPolicy,
    is_loopback,
    parse_host,
    redact,
    registry_key,
)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("docker.io", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("Registry.Example:5000", "registry.example:5000"),
        ("https://registry.example:5000/v2/", "registry.example:5000"),
        ("http://registry.example", "registry.example"),
        ("quay.io/org/repo", "quay.io"),
        ("[::1]:5000", "[::1]:5000"),
    ],
)
def test_registry_key_files_every_spelling_of_a_registry_under_one_name(
    name: str, key: str
) -> None:
    assert registry_key(name) == key


@pytest.mark.parametrize(
    ("text", "host"),
    [
        ("registry.example", "registry.example"),
        ("Registry.Example:5000", "registry.example:5000"),
        ("127.0.0.1:5000", "127.0.0.1:5000"),
        ("[::1]:5000", "[::1]:5000"),
        ("localhost", "localhost"),
    ],
)
def test_parse_host_accepts_host_and_port(text: str, host: str) -> None:
    assert parse_host(text) == host


@pytest.mark.parametrize(
    "text",
    [
        "",
        "https://registry.example",
        "registry.example/path",
        "user@registry.example",
        "registry.example:99999",
        "registry.example:",
        "-registry.example",
        "reg istry",
    ],
)
def test_parse_host_refuses_anything_but_host_and_port(text: str) -> None:
    with pytest.raises(ValueError, match="host"):
        parse_host(text)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("[::1]:5000", True),
        ("registry.example", False),
        ("10.0.0.1:5000", False),
        ("0.0.0.0", False),
    ],
)
def test_loopback_is_localhost_and_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_mirror_serves_every_name_of_its_registry_and_keeps_repository_paths() -> None:
    mirror = Mirror("docker.io", "cache.example:5000")

    assert mirror.serves("registry-1.docker.io")
    assert mirror.serves("index.docker.io")
    assert not mirror.serves("quay.io")
    assert mirror.host == "cache.example:5000"
    assert mirror.repository("library/alpine") == "library/alpine"


def test_mirror_with_namespace_keeps_images_below_it() -> None:
    mirror = Mirror("docker.io", "harbor.example/dockerhub-proxy")

    assert mirror.host == "harbor.example"
    assert mirror.repository("library/alpine") == "dockerhub-proxy/library/alpine"
    assert str(mirror) == "harbor.example/dockerhub-proxy"


@pytest.mark.parametrize(
    ("registry", "mirror", "message"),
    [
        ("docker.io", "https://cache.example", "not host"),
        ("docker.io", "", "not host"),
        ("docker.io", "cache.example/Not_Lower", "not a repository path"),
        ("https://docker.io", "cache.example", "not a registry host"),
    ],
)
def test_mirror_refuses_what_is_not_a_host_and_namespace(
    registry: str, mirror: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Mirror(registry, mirror)


@pytest.mark.parametrize(
    ("policy", "registry", "schemes"),
    [
        (SecurityPolicy(), "registry.example", ("https",)),
        (SecurityPolicy(), "127.0.0.1:5000", ("https", "http")),
        (SecurityPolicy(), "localhost:5000", ("https", "http")),
        (SecurityPolicy(plain_http=True), "registry.example", ("http",)),
        (
            SecurityPolicy(insecure_registries=frozenset({"registry.example:5000"})),
            "Registry.Example:5000",
            ("https", "http"),
        ),
        (
            SecurityPolicy(insecure_registries=frozenset({"registry.example:5000"})),
            "registry.example",
            ("https",),
        ),
        (SecurityPolicy(skip_tls_verify=True), "registry.example", ("https",)),
    ],
)
def test_plain_http_only_for_registries_the_user_allowed_or_loopback(
    policy: SecurityPolicy, registry: str, schemes: tuple[str, ...]
) -> None:
    assert policy.schemes(registry) == schemes


@pytest.mark.parametrize(
    ("policy", "host", "verified"),
    [
        (SecurityPolicy(), "registry.example", True),
        (SecurityPolicy(), "127.0.0.1:5000", True),
        (SecurityPolicy(skip_tls_verify=True), "registry.example", False),
        (
            SecurityPolicy(insecure_registries=frozenset({"docker.io"})),
            "registry-1.docker.io",
            False,
        ),
        (SecurityPolicy(insecure_registries=frozenset({"docker.io"})), "auth.docker.io", True),
    ],
)
def test_tls_is_verified_unless_skipped_globally_or_for_that_registry(
    policy: SecurityPolicy, host: str, verified: bool
) -> None:
    assert policy.verifies_tls(host) is verified


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@registry.example/v2/", "https://registry.example/v2/"),
        ("https://cdn.example/blob?X-Amz-Signature=abc&t=1", "https://cdn.example/blob"),
        ("socks5h://u:p@proxy:1080", "socks5h://proxy:1080"),
        ("u:Sekr1t@127.0.0.1:1", "127.0.0.1:1"),
        ("http://u:Sek/r1t@127.0.0.1:1", "http://127.0.0.1:1"),
        ("http://u:a?b#c@proxy:3128", "http://proxy:3128"),
        ("socks5://u:p@ss@proxy:1080", "socks5://proxy:1080"),
        ("http://registry.example/v2/\x1b[2J", "http://registry.example/v2/\\x1b[2J"),
        ("registry.example:5000", "registry.example:5000"),
    ],
)
def test_redacted_urls_carry_no_credentials_or_signatures(url: str, shown: str) -> None:
    assert redact(url) == shown


@pytest.mark.parametrize("registry", ["https://registry.example", "registry.example/ns", ""])
def test_pull_options_refuse_insecure_registries_that_are_not_hosts(registry: str) -> None:
    with pytest.raises(ValueError, match="host"):
        PullOptions(insecure_registries=frozenset({registry}))
