"""Pull options: validated on construction, frozen, keyword-only, read from the environment."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from bulkpull.engine.options import DEFAULT_JOBS, PullOptions
from bulkpull.platform import DEFAULT_PLATFORM, Platform
from bulkpull.registry import Credentials, Mirror, Proxies
from bulkpull.retry import RetryPolicy


def test_defaults_are_valid() -> None:
    options = PullOptions()

    assert options.platforms == (DEFAULT_PLATFORM,)
    assert options.force is False
    assert options.jobs >= 1
    assert options.max_downloads >= 1
    assert options.timeout > 0
    assert options.retry == RetryPolicy()
    assert options.cache_dir is None


def test_options_are_frozen() -> None:
    options = PullOptions()

    with pytest.raises(dataclasses.FrozenInstanceError):
        options.jobs = 9  # type: ignore[misc]


def test_options_keep_what_they_are_given() -> None:
    credentials = Credentials("alice", "secret")
    options = PullOptions(
        platforms=(Platform("linux", "arm64"), Platform("linux", "amd64")),
        force=True,
        jobs=2,
        max_downloads=3,
        plain_http=True,
        skip_tls_verify=True,
        credentials=credentials,
        retry=RetryPolicy(retries=0),
        timeout=1.5,
        cache_dir=Path("/tmp/cache"),
    )

    assert options.credentials is credentials
    assert [str(platform) for platform in options.platforms] == ["linux/arm64", "linux/amd64"]
    assert (options.jobs, options.max_downloads, options.timeout) == (2, 3, 1.5)
    assert options.retry.retries == 0


def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        PullOptions((DEFAULT_PLATFORM,))  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"platforms": ()}, "platforms must not be empty", id="no-platforms"),
        pytest.param({"jobs": 0}, "jobs must be > 0", id="jobs-zero"),
        pytest.param({"jobs": -1}, "jobs must be > 0", id="jobs-negative"),
        pytest.param({"max_downloads": 0}, "max_downloads must be > 0", id="downloads-zero"),
        pytest.param({"timeout": 0}, "timeout must be > 0", id="timeout-zero"),
        pytest.param({"timeout": -1.0}, "timeout must be > 0", id="timeout-negative"),
    ],
)
def test_pull_options_refuse_values_that_cannot_work(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        PullOptions(**changes)  # type: ignore[arg-type]


def test_options_made_directly_ignore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("BULKPULL_JOBS", "9")

    options = PullOptions()

    assert (options.proxies.https, options.jobs) == (None, DEFAULT_JOBS)


def test_from_environment_reads_every_variable_the_command_reads(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text(
        json.dumps({"auths": {"registry.example": {"auth": "YWxpY2U6cHc="}}})
    )
    environ = {
        "HOME": str(tmp_path),
        "DOCKER_CONFIG": str(tmp_path / "docker"),
        "HTTPS_PROXY": "proxy.example:3128",
        "NO_PROXY": "internal.example",
        "BULKPULL_PLATFORM": "linux/arm64 linux/amd64",
        "BULKPULL_JOBS": "2",
        "BULKPULL_MAX_DOWNLOADS": "3",
        "BULKPULL_CA_CERT": str(ca),
        "BULKPULL_INSECURE_REGISTRY": "a.example:5000,b.example",
        "BULKPULL_MIRROR": "docker.io=cache.example:5000",
        "BULKPULL_RETRIES": "5",
        "BULKPULL_RETRY_DELAY": "0.5",
        "BULKPULL_TIMEOUT": "7",
    }

    options = PullOptions.from_environment(environ)

    assert options.platforms == (Platform("linux", "arm64"), Platform("linux", "amd64"))
    assert (options.jobs, options.max_downloads, options.timeout) == (2, 3, 7.0)
    assert options.ca_cert == ca
    assert options.insecure_registries == frozenset({"a.example:5000", "b.example"})
    assert options.mirrors == (Mirror("docker.io", "cache.example:5000"),)
    assert (options.retry.retries, options.retry.delay) == (5, 0.5)
    assert options.proxies.https == "http://proxy.example:3128"
    assert "internal.example" in options.proxies.no_proxy
    assert options.keychain.resolve("registry.example", "x/y") == Credentials("alice", "pw")


def test_bulkpull_proxy_stands_for_every_request_like_the_flag() -> None:
    environ = {"BULKPULL_PROXY": "socks5h://127.0.0.1:1080", "HTTPS_PROXY": "http://other:1"}

    proxies = PullOptions.from_environment(environ).proxies

    assert proxies == Proxies.everywhere("socks5h://127.0.0.1:1080")


def test_keyword_arguments_win_over_the_environment() -> None:
    environ = {"BULKPULL_JOBS": "0", "BULKPULL_PLATFORM": "not-a-platform"}

    options = PullOptions.from_environment(environ, jobs=6, platforms=(DEFAULT_PLATFORM,))

    assert (options.jobs, options.platforms) == (6, (DEFAULT_PLATFORM,))


def test_an_empty_environment_gives_the_defaults(tmp_path: Path) -> None:
    options = PullOptions.from_environment({"HOME": str(tmp_path)})

    assert dataclasses.replace(options, credentials=None, proxies=Proxies()) == PullOptions()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        pytest.param("BULKPULL_JOBS", "many", "BULKPULL_JOBS='many': expected a number", id="nan"),
        pytest.param("BULKPULL_JOBS", "0", "BULKPULL_JOBS='0': must be at least 1", id="zero"),
        pytest.param("BULKPULL_TIMEOUT", "nan", "BULKPULL_TIMEOUT='nan': must be at", id="nan-s"),
        pytest.param("BULKPULL_PLATFORM", "linux", "BULKPULL_PLATFORM: platform must be", id="os"),
        pytest.param("BULKPULL_CA_CERT", "/nonexistent.pem", "no such file", id="no-ca"),
        pytest.param("BULKPULL_MIRROR", "cache.example", "expected REGISTRY=MIRROR", id="mirror"),
        pytest.param("HTTPS_PROXY", "ftp://p.example", "proxy environment variables", id="proxy"),
    ],
)
def test_a_variable_that_cannot_be_used_is_named(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        PullOptions.from_environment({"HOME": str(tmp_path), variable: value})


def test_bulkpull_platform_all_keeps_every_platform_unless_platforms_are_given() -> None:
    environ = {"BULKPULL_PLATFORM": "all"}

    every = PullOptions.from_environment(environ)
    given = PullOptions.from_environment(environ, platforms=(Platform("linux", "arm64"),))

    assert (every.all_platforms, every.platforms) == (True, (DEFAULT_PLATFORM,))
    assert (given.all_platforms, given.platforms) == (False, (Platform("linux", "arm64"),))
