"""Where requests go: registry names, mirrors, proxy choice per URL, schemes and TLS checks."""

from __future__ import annotations

import pytest

from bulkpull import PullOptions
from bulkpull.network import (
    Mirror,
    Proxies,
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


def test_proxy_everywhere_covers_loopback_and_both_schemes() -> None:
    proxies = Proxies.everywhere("socks5h://proxy.example:1080")

    assert proxies.for_url("https://registry.example/v2/") == "socks5h://proxy.example:1080"
    assert proxies.for_url("http://127.0.0.1:5000/v2/") == "socks5h://proxy.example:1080"


def test_environment_proxies_are_chosen_by_url_scheme() -> None:
    proxies = Proxies.from_environment(
        {"HTTPS_PROXY": "http://secure-proxy:3128", "HTTP_PROXY": "http://plain-proxy:3128"}
    )

    assert proxies.for_url("https://registry.example/v2/") == "http://secure-proxy:3128"
    assert proxies.for_url("http://registry.example/v2/") == "http://plain-proxy:3128"


@pytest.mark.parametrize(
    ("environ", "https_proxy"),
    [
        pytest.param({"https_proxy": "http://lower:1"}, "http://lower:1", id="lower-case"),
        pytest.param(
            {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:1"},
            "http://upper:1",
            id="upper-case-first",
        ),
        pytest.param({"ALL_PROXY": "socks5://all:1080"}, "socks5://all:1080", id="all-proxy"),
        pytest.param(
            {"all_proxy": "socks5://all:1080", "HTTPS_PROXY": "http://own:1"},
            "http://own:1",
            id="own-variable-beats-all-proxy",
        ),
        pytest.param(
            {"HTTPS_PROXY": "proxy.example:3128"}, "http://proxy.example:3128", id="no-scheme"
        ),
        pytest.param({"HTTPS_PROXY": ""}, None, id="empty-is-unset"),
        pytest.param({}, None, id="nothing"),
    ],
)
def test_environment_proxy_variables_as_the_usual_tools_read_them(
    environ: dict[str, str], https_proxy: str | None
) -> None:
    proxies = Proxies.from_environment(environ)

    assert proxies.for_url("https://registry.example/v2/") == https_proxy


@pytest.mark.parametrize(
    ("no_proxy", "url", "direct"),
    [
        ("*", "https://registry.example/v2/", True),
        ("registry.example", "https://registry.example/v2/", True),
        ("registry.example", "https://eu.registry.example/v2/", True),
        ("registry.example", "https://otherregistry.example/v2/", False),
        (".registry.example", "https://registry.example/v2/", False),
        (".registry.example", "https://eu.registry.example/v2/", True),
        ("*.registry.example", "https://eu.registry.example/v2/", True),
        ("registry.example:5000", "https://registry.example:5000/v2/", True),
        ("registry.example:5000", "https://registry.example/v2/", False),
        ("registry.example:443", "https://registry.example/v2/", True),
        ("10.0.0.0/8", "https://10.1.2.3:5000/v2/", True),
        ("10.0.0.0/8", "https://11.1.2.3/v2/", False),
        ("10.0.0.0/8", "https://registry.example/v2/", False),
        ("192.168.1.10", "https://192.168.1.10/v2/", True),
        ("[fd00::1]", "https://[fd00::1]/v2/", True),
        (" other.example , Registry.Example ", "https://registry.example/v2/", True),
        ("", "https://registry.example/v2/", False),
    ],
)
def test_no_proxy_entries_send_matching_hosts_direct(no_proxy: str, url: str, direct: bool) -> None:
    proxies = Proxies.from_environment({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": no_proxy})

    assert (proxies.for_url(url) is None) is direct


@pytest.mark.parametrize(
    "url",
    ["https://localhost:5000/v2/", "http://127.0.0.1:5000/v2/", "https://[::1]:5000/v2/"],
)
def test_environment_proxies_never_apply_to_loopback(url: str) -> None:
    proxies = Proxies.from_environment({"ALL_PROXY": "socks5://proxy:1080", "NO_PROXY": ""})

    assert proxies.for_url(url) is None


@pytest.mark.parametrize(
    "url",
    ["ftp://proxy:21", "proxy:3128", "http://", "socks5://proxy:99999", "socks6://proxy:1080"],
)
def test_unusable_proxy_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="unusable proxy"):
        Proxies.everywhere(url)


def test_proxy_credentials_stay_out_of_repr_and_errors() -> None:
    proxies = Proxies.everywhere("http://alice:pr0xy-s3cret@proxy.example:3128")

    assert "pr0xy-s3cret" not in repr(proxies)
    assert "proxy.example:3128" in repr(proxies)
    with pytest.raises(ValueError, match="unusable proxy") as caught:
        Proxies.everywhere("ftp://alice:pr0xy-s3cret@proxy.example:21")
    assert "pr0xy-s3cret" not in str(caught.value)


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
