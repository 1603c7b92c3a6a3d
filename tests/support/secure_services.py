"""TLS, logins, a token server and proxies for the credential, TLS and proxy tests.

Everything listens on 127.0.0.1 and keeps its state in the test's temporary directories: a CA
made with the openssl command, htpasswd files made with Apache's ``htpasswd``, a token server
(aiohttp, in a thread of the test process) whose JWTs the distribution registry verifies, and
tinyproxy (HTTP proxy) and danted (SOCKS server) as child processes whose own logs show which
connections went through them. A missing tool skips, or under ``CI=true`` fails, the test.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import os
import re
import secrets
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

# The one way children of the test session are stopped (their whole process group).
from support.services import free_port, log_tail, require_tool, run, run_until_ready, unavailable

TOKEN_SERVICE = "bulkpull-test-registry"
TOKEN_ISSUER = "bulkpull-test-token-server"
TOKEN_LIFETIME = 300


# --------------------------------------------------------------------------------------------
# Certificates and password files


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA made for one test session; ``issue`` signs server certificates for 127.0.0.1."""

    certificate: Path
    key: Path

    def issue(self, directory: Path, name: str) -> tuple[Path, Path]:
        """A certificate and key for ``127.0.0.1`` and ``localhost``, signed by this CA."""
        openssl = require_tool("openssl")
        directory.mkdir(parents=True, exist_ok=True)
        key, request, certificate = (directory / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
        extensions = directory / f"{name}.ext"
        extensions.write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
        )
        run([openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
             "-out", str(request), "-subj", f"/CN={name}"])  # fmt: skip
        run([openssl, "x509", "-req", "-in", str(request), "-CA", str(self.certificate),
             "-CAkey", str(self.key), "-CAcreateserial", "-days", "2", "-sha256",
             "-extfile", str(extensions), "-out", str(certificate)])  # fmt: skip
        return certificate, key


def make_ca(directory: Path) -> CertificateAuthority:
    """A fresh self-signed CA in ``directory``."""
    openssl = require_tool("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    certificate, key = directory / "ca.crt", directory / "ca.key"
    run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-sha256",
         "-keyout", str(key), "-out", str(certificate), "-subj", "/CN=bulkpull test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"])  # fmt: skip
    return CertificateAuthority(certificate, key)


def write_htpasswd(path: Path, users: Mapping[str, str]) -> Path:
    """An htpasswd file with bcrypt hashes, the only kind the distribution registry accepts."""
    htpasswd = require_tool("htpasswd")
    lines = [
        run([htpasswd, "-Bbn", user, password]).stdout.decode().strip()
        for user, password in users.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------------------------
# Token server


@dataclass(frozen=True)
class TokenRequest:
    """One request the token server answered."""

    method: str
    grant: str
    """``basic`` (GET with a login), ``anonymous`` (GET without) or the OAuth2 grant_type."""
    user: str | None
    """Who the request proved to be; None when anonymous or refused."""
    scopes: tuple[str, ...]
    transport_secure: bool


@dataclass
class TokenServer:
    """Issues registry tokens: pull of ``public/*`` for anyone, of anything else for a login,
    and push for the logins in ``pushers``.

    Logins are ``users`` (Basic, by GET) or ``refresh_tokens`` (OAuth2 POST, as Docker's
    identity tokens are used). Tokens are JWTs signed with ``signer_key``; the registry trusts
    ``signer_certificate``, which each token carries in its ``x5c`` header. As real token
    servers do, a token holds what was asked for and granted, and no error says what was not.
    """

    signer_key: Path
    signer_certificate: Path
    users: Mapping[str, str]
    refresh_tokens: Mapping[str, str]
    pushers: frozenset[str] = frozenset()
    public_namespace: str = "public/"
    url: str = ""
    requests: list[TokenRequest] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)

    @property
    def registry_auth(self) -> dict[str, object]:
        """The ``auth`` section of a registry that trusts this server."""
        return {
            "token": {
                "realm": self.url,
                "service": TOKEN_SERVICE,
                "issuer": TOKEN_ISSUER,
                "rootcertbundle": str(self.signer_certificate),
            }
        }

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/token", self._get)
        app.router.add_post("/token", self._post)
        return app

    async def _get(self, request: web.Request) -> web.Response:
        scopes = tuple(request.query.getall("scope", []))
        header = request.headers.get("Authorization", "")
        if not header:
            return self._answer(request, "GET", "anonymous", None, scopes)
        user, _, password = base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")
        if self.users.get(user) != password:
            self._record(request, "GET", "basic", None, scopes)
            return web.json_response({"details": "incorrect username or password"}, status=401)
        return self._answer(request, "GET", "basic", user, scopes)

    async def _post(self, request: web.Request) -> web.Response:
        form = await request.post()
        scopes = tuple(str(form.get("scope", "")).split())
        grant = str(form.get("grant_type", ""))
        user = self.refresh_tokens.get(str(form.get("refresh_token", "")))
        if grant != "refresh_token" or user is None:
            self._record(request, "POST", grant, None, scopes)
            return web.json_response({"error": "invalid_grant"}, status=400)
        return self._answer(request, "POST", grant, user, scopes)

    def _record(
        self,
        request: web.Request,
        method: str,
        grant: str,
        user: str | None,
        scopes: tuple[str, ...],
    ) -> None:
        self.requests.append(TokenRequest(method, grant, user, scopes, request.secure))

    def _answer(
        self,
        request: web.Request,
        method: str,
        grant: str,
        user: str | None,
        scopes: tuple[str, ...],
    ) -> web.Response:
        self._record(request, method, grant, user, scopes)
        token = self._token(user, scopes)
        self.issued.append(token)
        return web.json_response(
            {"token": token, "access_token": token, "expires_in": TOKEN_LIFETIME}
        )

    def _token(self, user: str | None, scopes: tuple[str, ...]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            allowed = user is not None or name.startswith(self.public_namespace)
            granted = {"pull"} if allowed else set()
            if user in self.pushers:
                granted.add("push")
            wanted = [action for action in actions.split(",") if action in granted]
            access.append({"type": kind, "name": name, "actions": wanted})
        now = int(time.time())
        claims = {
            "iss": TOKEN_ISSUER,
            "sub": user or "",
            "aud": TOKEN_SERVICE,
            "exp": now + TOKEN_LIFETIME,
            "nbf": now - 30,
            "iat": now,
            "jti": secrets.token_hex(12),
            "access": access,
        }
        certificate = ssl.PEM_cert_to_DER_cert(self.signer_certificate.read_text())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(certificate).decode()]}
        signed = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.signer_key)],
            input=signed.encode(),
            capture_output=True,
            check=True,
        ).stdout
        return f"{signed}.{_b64url(signature)}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@contextlib.contextmanager
def start_token_server(
    workdir: Path,
    ca: CertificateAuthority,
    *,
    users: Mapping[str, str],
    refresh_tokens: Mapping[str, str],
    tls: bool = True,
    pushers: frozenset[str] = frozenset(),
) -> Iterator[TokenServer]:
    """Serve a :class:`TokenServer` from a thread: over HTTPS (a certificate from ``ca``), or
    with ``tls=False`` over plain HTTP, as docker_auth often runs beside a registry."""
    openssl = require_tool("openssl")
    workdir.mkdir(parents=True, exist_ok=True)
    signer_certificate, signer_key = workdir / "signer.crt", workdir / "signer.key"
    run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-sha256",
         "-keyout", str(signer_key), "-out", str(signer_certificate),
         "-subj", "/CN=bulkpull token signer"])  # fmt: skip
    server = TokenServer(signer_key, signer_certificate, users, refresh_tokens, pushers=pushers)
    context = None
    if tls:
        certificate, key = ca.issue(workdir, "token-server")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certificate, key)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(server.app(), access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    loop.run_until_complete(site.start())
    host, port = runner.addresses[0][:2]
    server.url = f"{'https' if tls else 'http'}://{host}:{port}/token"
    thread = threading.Thread(target=loop.run_forever, name="token-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.run_until_complete(runner.cleanup())
        loop.close()


# --------------------------------------------------------------------------------------------
# Proxies


@dataclass(frozen=True)
class Proxy:
    """A running proxy and the log in which it names every destination it connected to."""

    url: str
    log: Path
    _destination: re.Pattern[str]

    def destinations(self) -> list[str]:
        """``host:port`` of every connection made through the proxy so far, in order."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [f"{match['host']}:{match['port']}" for match in self._destination.finditer(text)]


# tinyproxy: "Request (file descriptor 5): CONNECT 127.0.0.1:5000 HTTP/1.1"
_TINYPROXY_CONNECT = re.compile(
    r"Request \(file descriptor \d+\): CONNECT (?P<host>\S+):(?P<port>\d+) "
)
# danted: "pass(1): tcp/connect [: CLIENT.PORT PROXY.PORT -> OUT.PORT 127.0.0.1.5000"
_DANTED_CONNECT = re.compile(
    r"tcp/connect \[: \S+ \S+ -> \S+ (?P<host>[0-9.]+)\.(?P<port>\d+)$", re.MULTILINE
)


@contextlib.contextmanager
def start_tinyproxy(workdir: Path, *, user: str, password: str) -> Iterator[Proxy]:
    """tinyproxy on 127.0.0.1, requiring ``user``:``password`` (proxy Basic auth)."""
    binary = require_tool("tinyproxy")
    log = workdir / "tinyproxy.log"

    def command(port: int) -> list[str]:
        config = workdir / "tinyproxy.conf"
        config.write_text(
            f"Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 100\n"
            f'LogFile "{log}"\nLogLevel Info\nAllow 127.0.0.1\n'
            f"BasicAuth {user} {password}\nDisableViaHeader Yes\n"
        )
        return [binary, "-d", "-c", str(config)]

    with _listening(workdir, "tinyproxy", command) as port:
        yield Proxy(f"http://{user}:{password}@127.0.0.1:{port}", log, _TINYPROXY_CONNECT)


@contextlib.contextmanager
def start_danted(workdir: Path) -> Iterator[Proxy]:
    """Dante's SOCKS 4 and 5 server on 127.0.0.1, without authentication."""
    binary = require_tool("danted")
    log = workdir / "danted.log"
    # As root danted must be told whom to run as; otherwise it runs as whoever started it.
    users = "user.privileged: root\nuser.unprivileged: nobody\n" if os.geteuid() == 0 else ""

    def command(port: int) -> list[str]:
        config = workdir / "danted.conf"
        config.write_text(
            f"logoutput: {log}\ninternal: 127.0.0.1 port = {port}\nexternal: 127.0.0.1\n"
            f"clientmethod: none\nsocksmethod: none\n{users}"
            "client pass {\n from: 127.0.0.0/8 to: 0.0.0.0/0\n log: error\n}\n"
            "socks pass {\n from: 127.0.0.0/8 to: 0.0.0.0/0\n command: connect\n"
            " log: connect error\n}\n"
        )
        return [binary, "-f", str(config), "-N", "1", "-p", str(workdir / "danted.pid")]

    with _listening(workdir, "danted", command) as port:
        yield Proxy(f"socks5://127.0.0.1:{port}", log, _DANTED_CONNECT)


@contextlib.contextmanager
def _listening(
    workdir: Path,
    name: str,
    command: Callable[[int], list[str]],
    *,
    attempts: int = 3,
    timeout: float = 15,
) -> Iterator[int]:
    """Run ``command(port)`` until it listens on 127.0.0.1:port; yields the port."""
    workdir.mkdir(parents=True, exist_ok=True)
    output = workdir / f"{name}.out"
    for _ in range(attempts):
        port = free_port()
        listening = functools.partial(_accepts_connections, port)
        with run_until_ready(command(port), output, listening, timeout=timeout, grace=5) as up:
            if not up:
                continue  # exited (the port was taken meanwhile?) or never listened
            yield port
            return
    unavailable(f"{name} did not start after {attempts} attempts; output:\n{log_tail(output)}")


def _accepts_connections(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
