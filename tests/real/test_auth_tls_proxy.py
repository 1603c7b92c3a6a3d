"""Logins, TLS, proxies and mirrors against real servers on loopback, through the CLI.

The distribution registry serves one storage three ways: plain HTTP (where the images are pushed
with skopeo), HTTPS with htpasswd Basic auth, and HTTPS with token auth backed by a token server
the tests run (JWTs the registry verifies; ``public/`` is anonymous, the rest needs a login).
tinyproxy and danted carry requests and say so in their own logs; a second registry holding only
some of the images is a mirror.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import imagefactory
from support.archives import read_archives
from support.credentialhelper import install_credential_helper
from support.fakeregistry import FakeCDN, FakeRegistry, Start
from support.secure_services import (
    CertificateAuthority,
    Proxy,
    TokenServer,
    make_ca,
    start_danted,
    start_tinyproxy,
    start_token_server,
    write_htpasswd,
)
from support.services import Registry, child_env, require_tool, run, start_registry
from support.testimages import push

import bulkpull

pytestmark = pytest.mark.real

USER = "alice"
PASSWORD = "pa55-w0rd-real-test"
IDENTITY_TOKEN = "identity-token-real-test"
PROXY_USER = "proxyuser"
PROXY_PASSWORD = "pr0xy-pa55-real-test"


# --------------------------------------------------------------------------------------------
# Servers, shared by the tests of this module


@dataclass(frozen=True)
class Images:
    """Repositories pushed for these tests (``repository:tag``, without a registry)."""

    layout: Path
    public: str = "public/app:1"
    private: str = "private/app:1"
    cached: str = "mirrored/cached:1"
    fresh: str = "mirrored/fresh:1"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("secure")


@pytest.fixture(scope="module")
def ca(workdir: Path) -> CertificateAuthority:
    return make_ca(workdir / "ca")


@pytest.fixture(scope="module")
def images(registry: Registry, workdir: Path) -> Images:
    """Small images pushed to the plain registry, whose storage the others serve too."""
    require_tool("skopeo")
    pushed = Images(workdir / "layout")
    names = {"public": pushed.public, "private": pushed.private}
    names |= {"cached": pushed.cached, "fresh": pushed.fresh}
    imagefactory.write_oci_layout(
        pushed.layout,
        {
            tag: imagefactory.make_image([imagefactory.random_layer(32 * 1024)], label=tag)
            for tag in names
        },
    )
    for tag, name in names.items():
        push(f"oci:{pushed.layout}:{tag}", f"{registry.host}/{name}", all_images=False)
    return pushed


@pytest.fixture(scope="module")
def basic_registry(
    registry: Registry, images: Images, ca: CertificateAuthority, workdir: Path
) -> Iterator[Registry]:
    """HTTPS with a certificate from ``ca``; every request needs USER's Basic login."""
    home = workdir / "basic-registry"
    htpasswd = write_htpasswd(workdir / "htpasswd", {USER: PASSWORD})
    auth = {"htpasswd": {"realm": "bulkpull-tests", "path": str(htpasswd)}}
    tls = ca.issue(home, "basic-registry")
    with start_registry(home, storage=registry.root, tls=tls, auth=auth) as running:
        yield running


@pytest.fixture(scope="module")
def token_server(ca: CertificateAuthority, workdir: Path) -> Iterator[TokenServer]:
    with start_token_server(
        workdir / "token-server",
        ca,
        users={USER: PASSWORD},
        refresh_tokens={IDENTITY_TOKEN: USER},
    ) as server:
        yield server


@pytest.fixture(scope="module")
def token_registry(
    registry: Registry,
    images: Images,
    ca: CertificateAuthority,
    token_server: TokenServer,
    workdir: Path,
) -> Iterator[Registry]:
    """HTTPS with a certificate from ``ca``; tokens from ``token_server``."""
    home = workdir / "token-registry"
    tls = ca.issue(home, "token-registry")
    auth = token_server.registry_auth
    with start_registry(home, storage=registry.root, tls=tls, auth=auth) as running:
        yield running


@pytest.fixture(scope="module")
def plain_token_server(ca: CertificateAuthority, workdir: Path) -> Iterator[TokenServer]:
    """The token server on a port of its own, over plain HTTP, as docker_auth is deployed."""
    with start_token_server(
        workdir / "plain-token-server", ca, users={USER: PASSWORD}, refresh_tokens={}, tls=False
    ) as server:
        yield server


@pytest.fixture(scope="module")
def plain_token_registry(
    registry: Registry, images: Images, plain_token_server: TokenServer, workdir: Path
) -> Iterator[Registry]:
    """Plain HTTP on loopback, with tokens from ``plain_token_server`` on another port."""
    home = workdir / "plain-token-registry"
    auth = plain_token_server.registry_auth
    with start_registry(home, storage=registry.root, auth=auth) as running:
        yield running


@pytest.fixture(scope="module")
def mirror(images: Images, workdir: Path) -> Iterator[Registry]:
    """A plain registry of its own that holds ``images.cached`` and nothing else."""
    with start_registry(workdir / "mirror") as running:
        push(f"oci:{images.layout}:cached", f"{running.host}/{images.cached}", all_images=False)
        yield running


@pytest.fixture(scope="module")
def tinyproxy(workdir: Path) -> Iterator[Proxy]:
    with start_tinyproxy(workdir / "tinyproxy", user=PROXY_USER, password=PROXY_PASSWORD) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def danted(workdir: Path) -> Iterator[Proxy]:
    with start_danted(workdir / "danted") as proxy:
        yield proxy


# --------------------------------------------------------------------------------------------
# Running the CLI


@dataclass(frozen=True)
class Pulled:
    code: int
    output: str
    """The command line, then everything the CLI printed (stdout and stderr)."""
    out_dir: Path

    @property
    def repo_tags(self) -> list[set[str]]:
        return [archive.normalized_repo_tags for archive in read_archives(self.out_dir)]


class User:
    """Someone running bulkpull: a home directory with their docker and podman files."""

    def __init__(self, home: Path, command: list[str]) -> None:
        self.home = home
        self.command = command
        self.bin = home / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        self.extra_env: dict[str, str] = {}
        self._runs = 0

    @property
    def env(self) -> dict[str, str]:
        env = child_env(
            HOME=str(self.home),
            DOCKER_CONFIG=str(self.home / ".docker"),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_RUNTIME_DIR=str(self.home / "run"),
        )
        env.pop("REGISTRY_AUTH_FILE", None)
        env["PATH"] = f"{self.bin}:{env.get('PATH', '/usr/bin:/bin')}"
        return env | self.extra_env

    def write_json(self, relative: str, document: object) -> Path:
        path = self.home / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document))
        return path

    def pull(self, references: list[str], *flags: str) -> Pulled:
        self._runs += 1
        listing = self.home / f"images-{self._runs}.txt"
        listing.write_text("".join(f"{reference}\n" for reference in references))
        out_dir = self.home / f"out-{self._runs}"
        argv = [*self.command, str(listing), "-o", str(out_dir), "--retries", "0", *flags]
        result = run(argv, env=self.env, check=False, timeout=300)
        output = (result.stdout + result.stderr).decode(errors="replace")
        return Pulled(result.returncode, f"$ {' '.join(argv)}\n{output}", out_dir)


@pytest.fixture
def user(tmp_path: Path, bulkpull_command: list[str]) -> User:
    return User(tmp_path / "home", bulkpull_command)


def basic_auth(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode()


# --------------------------------------------------------------------------------------------
# TLS and Basic auth


def test_a_login_pulls_over_tls_verified_with_the_given_ca(
    user: User, basic_registry: Registry, images: Images, ca: CertificateAuthority
) -> None:
    reference = f"{basic_registry.host}/{images.private}"

    pulled = user.pull(
        [reference],
        "--ca-cert",
        str(ca.certificate),
        "--creds",
        f"{basic_registry.host}={USER}:{PASSWORD}",
    )

    assert pulled.code == 0, pulled.output
    assert pulled.repo_tags == [{reference}]


@pytest.mark.parametrize("proxied", [False, True], ids=["direct", "through-socks5"])
def test_an_unknown_ca_is_reported_as_a_certificate_error(
    user: User,
    basic_registry: Registry,
    images: Images,
    request: pytest.FixtureRequest,
    proxied: bool,
) -> None:
    proxy = ["--proxy", request.getfixturevalue("danted").url] if proxied else []
    since = basic_registry.log_offset()

    pulled = user.pull(
        [f"{basic_registry.host}/{images.private}"],
        *proxy,
        "--creds",
        f"{basic_registry.host}={USER}:{PASSWORD}",
    )

    assert pulled.code == 1, pulled.output
    assert "certificate verify failed" in pulled.output
    # Loopback may fall back to plain HTTP, but not to hide a certificate that failed.
    assert basic_registry.requests(since) == [], "a request got past TLS"


@pytest.mark.parametrize(
    "flags",
    [["--skip-tls-verify"], ["--insecure-registry", "{host}"]],
    ids=["skip-tls-verify", "insecure-registry"],
)
def test_certificate_checks_can_be_dropped_for_all_or_for_one_registry(
    user: User, basic_registry: Registry, images: Images, flags: list[str]
) -> None:
    reference = f"{basic_registry.host}/{images.private}"
    given = [flag.format(host=basic_registry.host) for flag in flags]

    pulled = user.pull([reference], *given, "--creds", f"{basic_registry.host}={USER}:{PASSWORD}")

    assert pulled.code == 0, pulled.output


def test_an_insecure_registry_flag_for_another_host_keeps_this_one_verified(
    user: User, basic_registry: Registry, images: Images
) -> None:
    pulled = user.pull(
        [f"{basic_registry.host}/{images.private}"],
        "--insecure-registry",
        "127.0.0.1:9",
        "--creds",
        f"{basic_registry.host}={USER}:{PASSWORD}",
    )

    assert pulled.code == 1, pulled.output
    assert "certificate verify failed" in pulled.output


def test_a_wrong_password_fails_with_401_and_is_never_shown(
    user: User, basic_registry: Registry, images: Images, ca: CertificateAuthority
) -> None:
    wrong = "not-the-pa55word"

    pulled = user.pull(
        [f"{basic_registry.host}/{images.private}"],
        "--ca-cert",
        str(ca.certificate),
        "--creds",
        f"{basic_registry.host}={USER}:{wrong}",
    )

    assert pulled.code == 1, pulled.output
    assert "401" in pulled.output
    assert wrong not in pulled.output.partition("\n")[2]


def test_docker_config_json_auths_log_in(
    user: User, basic_registry: Registry, images: Images, ca: CertificateAuthority
) -> None:
    user.write_json(
        ".docker/config.json",
        {"auths": {basic_registry.host: {"auth": basic_auth(USER, PASSWORD)}}},
    )

    pulled = user.pull(
        [f"{basic_registry.host}/{images.private}"], "--ca-cert", str(ca.certificate)
    )

    assert pulled.code == 0, pulled.output


def test_a_credential_helper_on_path_logs_in(
    user: User, basic_registry: Registry, images: Images, ca: CertificateAuthority
) -> None:
    helper = install_credential_helper(user.bin, "test", {basic_registry.host: (USER, PASSWORD)})
    user.write_json(".docker/config.json", {"credHelpers": {basic_registry.host: "test"}})

    pulled = user.pull(
        [f"{basic_registry.host}/{images.private}"], "--ca-cert", str(ca.certificate)
    )

    assert pulled.code == 0, pulled.output
    assert helper.questions == [("get", basic_registry.host)]


def test_podman_auth_json_comes_before_docker_config_json(
    user: User, basic_registry: Registry, images: Images, ca: CertificateAuthority
) -> None:
    user.write_json(
        "run/containers/auth.json",
        {"auths": {basic_registry.host: {"auth": basic_auth(USER, PASSWORD)}}},
    )
    user.write_json(
        ".docker/config.json", {"auths": {basic_registry.host: {"auth": basic_auth(USER, "stale")}}}
    )

    pulled = user.pull(
        [f"{basic_registry.host}/{images.private}"], "--ca-cert", str(ca.certificate)
    )

    assert pulled.code == 0, pulled.output


# --------------------------------------------------------------------------------------------
# Token auth


def test_anyone_pulls_the_public_namespace(
    user: User,
    token_registry: Registry,
    token_server: TokenServer,
    images: Images,
    ca: CertificateAuthority,
) -> None:
    seen = len(token_server.requests)

    pulled = user.pull([f"{token_registry.host}/{images.public}"], "--ca-cert", str(ca.certificate))

    assert pulled.code == 0, pulled.output
    asked = token_server.requests[seen:]
    assert [(r.grant, r.scopes) for r in asked] == [("anonymous", ("repository:public/app:pull",))]


def test_the_private_namespace_needs_a_login_which_goes_to_the_token_server_over_tls(
    user: User,
    token_registry: Registry,
    token_server: TokenServer,
    images: Images,
    ca: CertificateAuthority,
) -> None:
    reference = f"{token_registry.host}/{images.private}"
    anonymous = user.pull([reference], "--ca-cert", str(ca.certificate))
    seen = len(token_server.requests)

    logged_in = user.pull([reference], "--ca-cert", str(ca.certificate), "-u", USER, "-p", PASSWORD)

    assert anonymous.code == 1, anonymous.output
    assert "401" in anonymous.output
    assert logged_in.code == 0, logged_in.output
    [asked] = token_server.requests[seen:]
    assert (asked.grant, asked.user, asked.transport_secure) == ("basic", USER, True)


def test_an_identity_token_in_config_json_is_traded_by_oauth2_post(
    user: User,
    token_registry: Registry,
    token_server: TokenServer,
    images: Images,
    ca: CertificateAuthority,
) -> None:
    user.write_json(
        ".docker/config.json",
        {
            "auths": {
                token_registry.host: {"auth": basic_auth(USER, ""), "identitytoken": IDENTITY_TOKEN}
            }
        },
    )
    seen = len(token_server.requests)

    pulled = user.pull(
        [f"{token_registry.host}/{images.private}"], "--ca-cert", str(ca.certificate)
    )

    assert pulled.code == 0, pulled.output
    [asked] = token_server.requests[seen:]
    assert (asked.method, asked.grant, asked.user) == ("POST", "refresh_token", USER)


def test_a_verbose_authenticated_run_shows_no_password_and_no_token(
    user: User,
    token_registry: Registry,
    token_server: TokenServer,
    tinyproxy: Proxy,
    images: Images,
    ca: CertificateAuthority,
) -> None:
    registry_log, issued = token_registry.log_offset(), len(token_server.issued)
    proxy_log = tinyproxy.log.stat().st_size

    pulled = user.pull(
        [f"{token_registry.host}/{images.private}"],
        "-v",
        "--ca-cert",
        str(ca.certificate),
        "--proxy",
        tinyproxy.url,
        "--creds",
        f"{token_registry.host}={USER}:{PASSWORD}",
    )

    assert pulled.code == 0, pulled.output
    tokens = token_server.issued[issued:]
    assert tokens, "the run fetched no token"
    printed = pulled.output.partition("\n")[2]  # the command line itself holds the secrets
    logs = [
        printed,
        token_registry.log.read_bytes()[registry_log:].decode(errors="replace"),
        tinyproxy.log.read_bytes()[proxy_log:].decode(errors="replace"),
    ]
    secrets = [PASSWORD, PROXY_PASSWORD, basic_auth(USER, PASSWORD), *tokens]
    secrets += [token.split(".")[2] for token in tokens]  # the signature alone is secret too
    assert "credentials from the login given" in printed, "the run was not verbose"
    for text in logs:
        assert [secret for secret in secrets if secret in text] == []


@pytest.mark.parametrize("login", ["-u/-p", "--creds", "config.json", "credential-helper"])
def test_a_plain_http_token_server_on_another_port_of_the_registry_host_gets_the_login(
    user: User,
    plain_token_registry: Registry,
    plain_token_server: TokenServer,
    images: Images,
    login: str,
) -> None:
    host = plain_token_registry.host
    assert plain_token_server.url.startswith("http://127.0.0.1:")
    assert not plain_token_server.url.startswith(f"http://{host}/")
    flags: list[str] = []
    if login == "-u/-p":
        flags = ["-u", USER, "-p", PASSWORD]
    elif login == "--creds":
        flags = ["--creds", f"{host}={USER}:{PASSWORD}"]
    elif login == "config.json":
        user.write_json(
            ".docker/config.json", {"auths": {host: {"auth": basic_auth(USER, PASSWORD)}}}
        )
    else:
        install_credential_helper(user.bin, "test", {host: (USER, PASSWORD)})
        user.write_json(".docker/config.json", {"credHelpers": {host: "test"}})
    seen = len(plain_token_server.requests)

    pulled = user.pull([f"{host}/{images.private}"], *flags)

    assert pulled.code == 0, pulled.output
    assert "not sending credentials" not in pulled.output
    [asked] = plain_token_server.requests[seen:]
    assert (asked.grant, asked.user, asked.transport_secure) == ("basic", USER, False)


# --------------------------------------------------------------------------------------------
# Proxies


def test_an_http_proxy_with_a_login_carries_registry_and_token_traffic(
    user: User,
    token_registry: Registry,
    token_server: TokenServer,
    tinyproxy: Proxy,
    images: Images,
    ca: CertificateAuthority,
) -> None:
    before = len(tinyproxy.destinations())

    pulled = user.pull(
        [f"{token_registry.host}/{images.private}"],
        "--ca-cert",
        str(ca.certificate),
        "--proxy",
        tinyproxy.url,
        "-u",
        USER,
        "-p",
        PASSWORD,
    )

    assert pulled.code == 0, pulled.output
    token_host = token_server.url.split("/")[2]
    assert set(tinyproxy.destinations()[before:]) == {token_registry.host, token_host}


@pytest.mark.parametrize("scheme", ["socks5", "socks5h", "socks4"])
def test_a_socks_proxy_carries_the_pull(
    user: User,
    basic_registry: Registry,
    danted: Proxy,
    images: Images,
    ca: CertificateAuthority,
    scheme: str,
) -> None:
    before = len(danted.destinations())
    proxy = danted.url.replace("socks5://", f"{scheme}://")

    pulled = user.pull(
        [f"{basic_registry.host}/{images.private}"],
        "--ca-cert",
        str(ca.certificate),
        "--proxy",
        proxy,
        "--creds",
        f"{basic_registry.host}={USER}:{PASSWORD}",
    )

    assert pulled.code == 0, pulled.output
    assert set(danted.destinations()[before:]) == {basic_registry.host}


async def test_blob_redirects_to_a_cdn_go_through_the_same_proxy(
    start: Start, tinyproxy: Proxy, tmp_path: Path
) -> None:
    registry = FakeRegistry(auth="bearer")
    registry.add("x/y", "1", imagefactory.make_image([imagefactory.random_layer(20_000)]))
    cdn_host = await start(FakeCDN(registry).app())
    registry.cdn_url = f"http://{cdn_host}"
    host = await start(registry.app())
    before = len(tinyproxy.destinations())
    options = bulkpull.PullOptions(proxies=bulkpull.Proxies.everywhere(tinyproxy.url))

    result = await bulkpull.pull_image(f"{host}/x/y:1", tmp_path, options)

    assert result.ok, result.error
    assert set(tinyproxy.destinations()[before:]) == {host, cdn_host}


def test_environment_proxies_leave_loopback_registries_direct(
    user: User, registry: Registry, images: Images, tinyproxy: Proxy
) -> None:
    before = len(tinyproxy.destinations())
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
        user.extra_env[name] = tinyproxy.url
    user.extra_env["NO_PROXY"] = user.extra_env["no_proxy"] = ""

    pulled = user.pull([f"{registry.host}/{images.public}"])

    assert pulled.code == 0, pulled.output
    assert tinyproxy.destinations()[before:] == []


# --------------------------------------------------------------------------------------------
# Mirrors


def test_a_mirror_serves_what_it_holds_and_the_registry_the_rest(
    user: User, registry: Registry, mirror: Registry, images: Images
) -> None:
    cached, fresh = (f"{registry.host}/{name}" for name in (images.cached, images.fresh))
    origin_since, mirror_since = registry.log_offset(), mirror.log_offset()

    pulled = user.pull([cached, fresh], "--mirror", f"{registry.host}={mirror.host}")

    assert pulled.code == 0, pulled.output
    assert sorted(map(sorted, pulled.repo_tags)) == [[cached], [fresh]]
    asked_mirror = {(r.path, r.status) for r in mirror.requests(mirror_since) if r.method == "GET"}
    assert ("/v2/mirrored/cached/manifests/1", 200) in asked_mirror
    assert ("/v2/mirrored/fresh/manifests/1", 404) in asked_mirror
    asked_origin = [r.path for r in registry.requests(origin_since)]
    assert not [path for path in asked_origin if "mirrored/cached" in path]
    assert "/v2/mirrored/fresh/manifests/1" in asked_origin
