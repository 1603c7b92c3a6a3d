"""Registries: where requests go, who we are to them, and what they answer.

The pieces, bottom up (each module imports only those above it):

    routing, proxies        which host, scheme, TLS check and proxy a request gets (no I/O)
    auth, authfiles,        credentials, challenges and tokens as data; docker's and podman's
      keychain                auth files and credential helpers
    session                 the one module that imports aiohttp: sessions, TLS, proxies
    status, redirects,      error statuses into errors; redirects by hand; the 429 pause
      ratelimit               and pull limits
    authflow                the auth flow as decisions without I/O
    tokens, ping, mirrors   driving the flow, the /v2/ handshake, mirrors first
    transport               the pieces stacked into one :class:`Transport`
    client                  :class:`RegistryClient`: manifests resolved and verified, blobs opened
    pushclient              :class:`PushClient`: uploads and manifests, to one registry only

The layers above use what this module exports, never the modules themselves. Imports the value
modules (``errors``, ``retry``, ``usage``, ``digest``, ``reference``, ``platform``,
``manifest``, ``resolved``) and nothing of ``store`` or ``output``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bulkpull.lazy import on_first_use
from bulkpull.registry.auth import Credentials
from bulkpull.registry.keychain import CredentialSource, Keychain
from bulkpull.registry.proxies import Proxies
from bulkpull.registry.routing import DEFAULT_TIMEOUT, Mirror, SecurityPolicy, parse_host

if TYPE_CHECKING:
    from bulkpull.registry.client import KnownManifests, RegistryClient
    from bulkpull.registry.pushclient import PushClient, UploadSession
    from bulkpull.registry.session import Response
    from bulkpull.registry.transport import Transport

# What needs the HTTP stack (aiohttp) is imported when first asked for, not with the package:
# ``bulkpull --help`` and ``--version``, and options made without a pull, never load it.
__getattr__ = on_first_use(
    __name__,
    {
        "KnownManifests": ".client",
        "PushClient": ".pushclient",
        "RegistryClient": ".client",
        "Response": ".session",
        "Transport": ".transport",
        "UploadSession": ".pushclient",
    },
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "CredentialSource",
    "Credentials",
    "Keychain",
    "KnownManifests",
    "Mirror",
    "Proxies",
    "PushClient",
    "RegistryClient",
    "Response",
    "SecurityPolicy",
    "Transport",
    "UploadSession",
    "parse_host",
]
