"""The proxy for each URL: explicit proxies, the environment variables and NO_PROXY as the
usual tools read them, and proxy logins kept out of sight."""

from __future__ import annotations

import pytest

from bulkpull import InvalidOptionError, Proxies


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


def test_an_unusable_proxy_is_an_invalid_option_and_still_a_value_error() -> None:
    with pytest.raises(InvalidOptionError) as caught:
        Proxies(https="ftp://proxy.example:21")

    assert isinstance(caught.value, ValueError)
