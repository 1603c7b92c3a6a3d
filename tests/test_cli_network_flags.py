"""The login, proxy, TLS and mirror flags as users type them: usage errors and what they say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.commandline import run_cli as run_process

SECRET = "s3cret-in-a-flag"


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str]:
    code, out, err = await run_process(*args, env=env, inherit_env=False)
    return code, out + err


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A user without proxies and without auth files of their own."""
    home = tmp_path / "home"
    home.mkdir()
    return {"HOME": str(home), "PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(home / "run")}


@pytest.fixture
def listing(tmp_path: Path) -> str:
    path = tmp_path / "images.txt"
    path.write_text("127.0.0.1:9/x/y:1\n")
    return str(path)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        pytest.param(
            ["--creds", f"registry.example:{SECRET}"],
            "expected REGISTRY=USER:PASSWORD",
            id="creds-without-equals",
        ),
        pytest.param(
            ["--creds", f"registry.example=user{SECRET}"],
            "expected REGISTRY=USER:PASSWORD",
            id="creds-without-colon",
        ),
        pytest.param(
            ["-u", "alice", "-p", SECRET, "--creds", f"registry.example=bob:{SECRET}"],
            "use it or --creds, not both",
            id="username-and-creds",
        ),
        pytest.param(
            ["--proxy", f"ftp://alice:{SECRET}@proxy.example:21"],
            "unusable proxy 'ftp://proxy.example:21'",
            id="proxy-scheme",
        ),
        pytest.param(
            ["--proxy", f"alice:{SECRET}@127.0.0.1:1"],
            "unusable proxy '127.0.0.1:1'",
            id="proxy-without-scheme",
        ),
        pytest.param(
            ["--proxy", f"http://alice:{SECRET[:4]}/{SECRET[4:]}@127.0.0.1:1"],
            "percent-encode any / ? # @ in its login",
            id="proxy-password-with-slash",
        ),
        pytest.param(
            ["--mirror", "docker.io"], "expected REGISTRY=MIRROR", id="mirror-without-equals"
        ),
        pytest.param(
            ["--mirror", "docker.io=https://cache.example"],
            "is not host[:port][/namespace]",
            id="mirror-url",
        ),
        pytest.param(
            ["--insecure-registry", "https://registry.example"],
            "is not a registry host[:port]",
            id="insecure-registry-url",
        ),
        pytest.param(["--ca-cert", "/nonexistent/ca.pem"], "does not exist", id="ca-cert-missing"),
        pytest.param(
            ["-u", "alice"],
            "-u alice: no password given and no terminal to ask on; use --password-stdin",
            id="username-without-password-or-terminal",
        ),
    ],
)
async def test_bad_flag_values_are_usage_errors_that_never_echo_a_secret(
    env: dict[str, str], listing: str, flags: list[str], message: str
) -> None:
    code, output = await run_cli(listing, *flags, env=env)

    assert code == 2, output
    assert message in output
    assert SECRET not in output


async def test_a_proxy_that_cannot_be_reached_is_named_without_any_part_of_its_login(
    env: dict[str, str], listing: str
) -> None:
    # A valid URL whose password holds an unescaped "@": only the last one ends the login.
    code, output = await run_cli(
        listing, "--proxy", f"socks5h://alice:{SECRET}@x@127.0.0.1:1", "--retries", "0", env=env
    )

    assert code == 1, output
    assert "through proxy socks5h://127.0.0.1:1" in output
    assert SECRET not in output
    assert "alice" not in output


async def test_a_bad_proxy_variable_is_a_usage_error_naming_the_environment(
    env: dict[str, str], listing: str
) -> None:
    code, output = await run_cli(
        listing, env=env | {"HTTPS_PROXY": f"gopher://u:{SECRET}@proxy:70"}
    )

    assert code == 2, output
    assert "proxy environment variables" in output
    assert SECRET not in output


async def test_a_malformed_docker_config_stops_the_run_before_any_request(
    env: dict[str, str], listing: str
) -> None:
    config = Path(env["HOME"]) / ".docker" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"auths": {"registry.example": {"auth": SECRET}}})[:-1])

    code, output = await run_cli(listing, env=env)

    assert code == 2, output
    assert f"{config}: not valid JSON" in output
    assert SECRET not in output
