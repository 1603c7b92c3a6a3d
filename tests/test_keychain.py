"""Where logins come from: real config.json and auth.json files and a real credential helper.

Every keychain here is built by ``Keychain.from_environment`` from an environment the test
writes (HOME, DOCKER_CONFIG, REGISTRY_AUTH_FILE, XDG_*, PATH), as a user's shell would hold it.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest
from support.credentialhelper import install_credential_helper

from bulkpull import Credentials, CredentialsError, Keychain, PullOptions

REGISTRY = "registry.example:5000"


def auth(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode()


class Home:
    """A user's home directory and environment, with helpers to write their auth files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir(parents=True)
        self.environ = {"HOME": str(root), "PATH": f"{self.bin}:/usr/bin:/bin"}

    def docker_config(self, document: object, directory: str = ".docker") -> Path:
        path = self.root / directory / "config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document))
        return path

    def auth_json(self, document: object, relative: str = ".config/containers/auth.json") -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document))
        return path

    def keychain(self, **kwargs: object) -> Keychain:
        return Keychain.from_environment(environ=self.environ, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home")


def test_docker_config_auths_hold_base64_user_and_password(home: Home) -> None:
    home.docker_config({"auths": {REGISTRY: {"auth": auth("alice", "pa:ss")}}})

    assert home.keychain().resolve(REGISTRY) == Credentials("alice", "pa:ss")


def test_unknown_registry_resolves_to_anonymous(home: Home) -> None:
    home.docker_config({"auths": {REGISTRY: {"auth": auth("alice", "pw")}}})

    assert home.keychain().resolve("other.example") is None


def test_no_files_at_all_is_anonymous_everywhere(home: Home) -> None:
    assert home.keychain().resolve(REGISTRY) is None


@pytest.mark.parametrize("registry", ["docker.io", "index.docker.io", "registry-1.docker.io"])
def test_docker_hub_key_of_docker_login_serves_every_hub_name(home: Home, registry: str) -> None:
    home.docker_config({"auths": {"https://index.docker.io/v1/": {"auth": auth("hubuser", "pw")}}})

    assert home.keychain().resolve(registry) == Credentials("hubuser", "pw")


def test_docker_login_hub_key_wins_over_other_spellings(home: Home) -> None:
    home.docker_config(
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": auth("canonical", "pw")},
                "docker.io": {"auth": auth("alias", "pw")},
            }
        }
    )

    login = home.keychain().resolve("registry-1.docker.io")

    assert login is not None
    assert login.username == "canonical"


def test_legacy_url_keys_are_matched_by_host(home: Home) -> None:
    home.docker_config({"auths": {f"https://{REGISTRY}/v1/": {"auth": auth("old", "pw")}}})

    assert home.keychain().resolve(REGISTRY) == Credentials("old", "pw")


def test_username_and_password_fields_work_without_auth(home: Home) -> None:
    home.docker_config({"auths": {REGISTRY: {"username": "bob", "password": "pw"}}})

    assert home.keychain().resolve(REGISTRY) == Credentials("bob", "pw")


def test_identitytoken_is_kept_apart_from_the_password(home: Home) -> None:
    home.docker_config(
        {"auths": {REGISTRY: {"auth": auth("carol", ""), "identitytoken": "refresh-123"}}}
    )

    login = home.keychain().resolve(REGISTRY)

    assert login == Credentials("carol", "", identity_token="refresh-123")


def test_empty_entry_left_by_a_helper_is_no_login(home: Home) -> None:
    home.docker_config({"auths": {REGISTRY: {}}})

    assert home.keychain().resolve(REGISTRY) is None


def test_cred_helper_for_the_registry_is_asked_with_the_server_on_stdin(home: Home) -> None:
    helper = install_credential_helper(home.bin, "test", {REGISTRY: ("helper-user", "helper-pw")})
    home.docker_config(
        {"credHelpers": {REGISTRY: "test"}, "auths": {REGISTRY: {"auth": auth("file", "pw")}}}
    )

    login = home.keychain().resolve(REGISTRY)

    assert login == Credentials("helper-user", "helper-pw")
    assert helper.questions == [("get", REGISTRY)]


def test_creds_store_answers_for_every_registry_without_its_own_helper(home: Home) -> None:
    install_credential_helper(home.bin, "store", {REGISTRY: ("stored", "pw")})
    home.docker_config({"credsStore": "store", "auths": {REGISTRY: {}}})

    assert home.keychain().resolve(REGISTRY) == Credentials("stored", "pw")


def test_creds_store_is_asked_for_docker_hub_by_its_login_url(home: Home) -> None:
    helper = install_credential_helper(
        home.bin, "store", {"https://index.docker.io/v1/": ("hubuser", "pw")}
    )
    home.docker_config({"credsStore": "store"})

    assert home.keychain().resolve("registry-1.docker.io") == Credentials("hubuser", "pw")
    assert helper.questions == [("get", "https://index.docker.io/v1/")]


def test_helper_that_does_not_know_the_registry_means_anonymous(home: Home) -> None:
    install_credential_helper(home.bin, "store", {})
    home.docker_config({"credsStore": "store"})

    assert home.keychain().resolve(REGISTRY) is None


def test_helper_token_user_marks_an_identity_token(home: Home) -> None:
    install_credential_helper(home.bin, "store", {REGISTRY: ("<token>", "refresh-456")})
    home.docker_config({"credsStore": "store"})

    login = home.keychain().resolve(REGISTRY)

    assert login == Credentials("", "", identity_token="refresh-456")


def test_helper_is_asked_once_per_registry(home: Home) -> None:
    helper = install_credential_helper(home.bin, "store", {REGISTRY: ("u", "pw")})
    home.docker_config({"credsStore": "store"})
    keychain = home.keychain()

    for repository in ("a", "b", "c"):
        keychain.resolve(REGISTRY, repository)

    assert len(helper.questions) == 1


def test_missing_helper_is_an_error_naming_the_program(home: Home) -> None:
    home.docker_config({"credsStore": "desktop"})

    with pytest.raises(CredentialsError, match="docker-credential-desktop is not on PATH"):
        home.keychain().resolve(REGISTRY)


def test_failing_helper_is_an_error_quoting_its_message(home: Home) -> None:
    install_credential_helper(home.bin, "store", {REGISTRY: "keyring is locked"})
    home.docker_config({"credsStore": "store"})

    with pytest.raises(CredentialsError, match="exit code 3: keyring is locked"):
        home.keychain().resolve(REGISTRY)


@pytest.mark.parametrize("name", ["../../bin/sh", "", "a b", 7])
def test_helper_names_that_are_not_plain_names_are_refused(home: Home, name: object) -> None:
    home.docker_config({"credHelpers": {REGISTRY: name}})

    with pytest.raises(CredentialsError, match="not a credential helper name"):
        home.keychain()


def test_podman_auth_json_comes_before_docker_config(home: Home) -> None:
    home.auth_json({"auths": {REGISTRY: {"auth": auth("podman", "pw")}}})
    home.docker_config({"auths": {REGISTRY: {"auth": auth("docker", "pw")}}})

    assert home.keychain().resolve(REGISTRY) == Credentials("podman", "pw")


def test_docker_config_answers_what_auth_json_does_not_know(home: Home) -> None:
    home.auth_json({"auths": {"other.example": {"auth": auth("podman", "pw")}}})
    home.docker_config({"auths": {REGISTRY: {"auth": auth("docker", "pw")}}})

    assert home.keychain().resolve(REGISTRY) == Credentials("docker", "pw")


def test_auth_json_namespaced_keys_match_the_longest_prefix(home: Home) -> None:
    home.auth_json(
        {
            "auths": {
                "quay.io": {"auth": auth("registry-wide", "pw")},
                "quay.io/team": {"auth": auth("team", "pw")},
                "quay.io/team/app": {"auth": auth("app", "pw")},
            }
        }
    )
    keychain = home.keychain()

    assert keychain.resolve("quay.io", "team/app") == Credentials("app", "pw")
    assert keychain.resolve("quay.io", "team/other") == Credentials("team", "pw")
    assert keychain.resolve("quay.io", "elsewhere/app") == Credentials("registry-wide", "pw")


def test_auth_json_helpers_get_the_registry_name_and_creds_store_is_ignored(
    home: Home,
) -> None:
    helper = install_credential_helper(home.bin, "test", {"docker.io": ("podman-hub", "pw")})
    install_credential_helper(home.bin, "store", {REGISTRY: ("never", "pw")})
    home.auth_json({"credHelpers": {"docker.io": "test"}, "credsStore": "store"})

    keychain = home.keychain()

    assert keychain.resolve("registry-1.docker.io") == Credentials("podman-hub", "pw")
    assert helper.questions == [("get", "docker.io")]
    assert keychain.resolve(REGISTRY) is None


def test_registry_auth_file_replaces_podmans_default_files(home: Home) -> None:
    home.auth_json({"auths": {REGISTRY: {"auth": auth("default", "pw")}}})
    chosen = home.auth_json({"auths": {"other.example": {"auth": auth("x", "pw")}}}, "chosen.json")
    home.environ["REGISTRY_AUTH_FILE"] = str(chosen)

    keychain = home.keychain()

    assert keychain.resolve(REGISTRY) is None
    assert keychain.resolve("other.example") == Credentials("x", "pw")


def test_runtime_auth_json_comes_before_the_one_in_config_home(home: Home) -> None:
    home.auth_json(
        {"auths": {REGISTRY: {"auth": auth("runtime", "pw")}}}, "run/containers/auth.json"
    )
    home.auth_json(
        {"auths": {REGISTRY: {"auth": auth("config", "pw")}}}, "xdg/containers/auth.json"
    )
    home.environ["XDG_RUNTIME_DIR"] = str(home.root / "run")
    home.environ["XDG_CONFIG_HOME"] = str(home.root / "xdg")

    assert home.keychain().resolve(REGISTRY) == Credentials("runtime", "pw")


def test_docker_config_variable_moves_the_config_directory(home: Home) -> None:
    home.docker_config({"auths": {REGISTRY: {"auth": auth("default", "pw")}}})
    home.docker_config({"auths": {REGISTRY: {"auth": auth("moved", "pw")}}}, "elsewhere")
    home.environ["DOCKER_CONFIG"] = str(home.root / "elsewhere")

    assert home.keychain().resolve(REGISTRY) == Credentials("moved", "pw")


def test_explicit_logins_come_first_then_per_registry_ones(home: Home) -> None:
    home.auth_json({"auths": {REGISTRY: {"auth": auth("podman", "pw")}}})
    per_registry = {REGISTRY: Credentials("flag", "pw")}

    everywhere = home.keychain(
        everywhere=Credentials("all", "pw"), per_registry=per_registry
    ).resolve(REGISTRY)
    for_registry = home.keychain(per_registry=per_registry).resolve(REGISTRY)

    assert everywhere == Credentials("all", "pw")
    assert for_registry == Credentials("flag", "pw")


def test_per_registry_logins_know_docker_hub_by_any_name(home: Home) -> None:
    keychain = home.keychain(per_registry={"docker.io": Credentials("hub", "pw")})

    assert keychain.resolve("registry-1.docker.io") == Credentials("hub", "pw")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"auths": {"r": {"auth": "c2VjcmV0LXBhc3N3b3Jk"', "not valid JSON"),
        ("[]", "not a JSON object"),
        ('{"auths": []}', "auths is not an object"),
        ('{"auths": {"r": "c2VjcmV0LXBhc3N3b3Jk"}}', "is not an object"),
        ('{"auths": {"r": {"auth": "!!not base64!!"}}}', "auth is not base64"),
        ('{"auths": {"r": {"auth": "c2VjcmV0LXBhc3N3b3Jk"}}}', "not base64 of user:password"),
    ],
)
def test_malformed_file_is_an_error_naming_it_without_its_content(
    home: Home, content: str, message: str
) -> None:
    path = home.root / ".docker" / "config.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)

    with pytest.raises(CredentialsError, match=message) as caught:
        home.keychain()

    assert str(path) in str(caught.value)
    assert "secret-password" not in str(caught.value)
    assert "c2VjcmV0LXBhc3N3b3Jk" not in str(caught.value)


def test_resolving_logs_the_source_and_never_the_secret(
    home: Home, caplog: pytest.LogCaptureFixture
) -> None:
    path = home.docker_config({"auths": {REGISTRY: {"auth": auth("alice", "s3cret-pw")}}})
    keychain = home.keychain()

    with caplog.at_level(logging.INFO, logger="bulkpull"):
        keychain.resolve(REGISTRY)

    assert f"{REGISTRY}: credentials from {path}" in caplog.text
    assert "s3cret-pw" not in caplog.text
    assert "s3cret-pw" not in repr(keychain)


def test_pull_options_take_one_login_for_every_registry_or_a_keychain(home: Home) -> None:
    login = Credentials("alice", "pw")
    keychain = home.keychain(per_registry={REGISTRY: login})

    assert PullOptions(credentials=login).keychain.resolve("any.example") == login
    assert PullOptions(credentials=keychain).keychain is keychain
    assert PullOptions().keychain.resolve(REGISTRY) is None
