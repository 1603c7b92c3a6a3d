"""Turning an error status into the matching :class:`RegistryError`.

:func:`status_error` is the decision, from the status, the headers and the start of the body
(the distribution spec's ``{"errors": [...]}``, or an HTML page to quote); :func:`error_of` reads
that start from a response. Registries answer errors with a small JSON document, so only the
first 64 KiB are read. Imports ``errors`` and ``session``.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping

from bulkpull.errors import AuthenticationError, NotFoundError, RegistryDiagnostic, RegistryError
from bulkpull.registry.session import Response

# Registries answer errors with a small JSON document; anything bigger is an HTML error page
# and only its start is worth showing.
MAX_ERROR_BODY_BYTES = 64 * 1024


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    A date in the past means the time has come (0); an unparseable value is no advice (None),
    which is not the same as no header at all only to a caller that saw the header.
    """
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    delay = when.timestamp() - (time.time() if now is None else now)
    return max(delay, 0.0)


def status_error(
    method: str,
    url: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    hint: str = "",
) -> RegistryError:
    """The error ``status`` means: an :class:`AuthenticationError` for a refused login (401,
    403), with ``hint`` saying why no credentials were sent if none were; a
    :class:`NotFoundError` for 404; a plain :class:`RegistryError` otherwise. ``url`` is shown
    as given, so it must already be redacted."""
    diagnostics = _diagnostics(body)
    text = "" if diagnostics else body.decode("utf-8", "replace")
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if status in (401, 403):
        return AuthenticationError(method, url, status, diagnostics, text, retry_after, hint)
    kind = NotFoundError if status == 404 else RegistryError
    return kind(method, url, status, diagnostics, text, retry_after)


async def error_of(response: Response, method: str, hint: str = "") -> RegistryError:
    """The error an error status means, from the start of its body; releases ``response``."""
    try:
        body = await response.read_start(MAX_ERROR_BODY_BYTES)
    finally:
        response.release()
    return status_error(method, response.url, response.status, response.headers, body, hint)


def _diagnostics(body: bytes) -> list[RegistryDiagnostic]:
    """The ``{"errors": [{code, message, detail}]}`` body of the distribution spec, if it is one."""
    try:
        document = json.loads(body)
    except ValueError:
        return []
    entries = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        return []
    found = []
    for entry in entries:
        if isinstance(entry, dict):
            detail = entry.get("detail", "")
            found.append(
                RegistryDiagnostic(
                    str(entry.get("code", "UNKNOWN")),
                    str(entry.get("message", "")),
                    detail if isinstance(detail, str) else json.dumps(detail),
                )
            )
    return found
