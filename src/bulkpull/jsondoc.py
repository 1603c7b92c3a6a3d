"""Small JSON documents from registries and archives, read as checked values.

Manifests, indexes, configs, signature payloads and attestation envelopes are all JSON that
someone else wrote: each is size-limited before it is parsed, must be an object at the top, and
yields typed fields whose absence or wrong type is a :class:`ContentError` naming the document
and the field. Strings must be printable, because they end up in messages and file names.
Imports only ``errors``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final, TypeVar

from bulkpull.errors import ContentError

JsonObject = Mapping[str, object]
_T = TypeVar("_T")
_JSON_NAMES: Final[dict[type, str]] = {dict: "an object", list: "a list", str: "a printable string"}


def load_object(raw: bytes, limit: int, what: str) -> JsonObject:
    """``raw`` parsed as a JSON object, refused unread when it is larger than ``limit``."""
    if len(raw) > limit:
        raise ContentError(f"{what}: {len(raw)} bytes is more than the {limit}-byte limit")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, absurd nesting
        raise ContentError(f"{what}: not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ContentError(f"{what}: expected a JSON object, got {type(body).__name__}")
    return body


def required(
    body: JsonObject, name: str, kind: type[_T], what: str, where: str | None = None
) -> _T:
    """A required field of the given JSON type; its absence or wrong type is bad content."""
    value = body.get(name)
    if not isinstance(value, kind) or (isinstance(value, str) and not value.isprintable()):
        shown = "missing" if value is None else f"not {_JSON_NAMES.get(kind, kind.__name__)}"
        raise ContentError(f"{what}: {where or name} is {shown}")
    return value


def optional_str(body: JsonObject, name: str, what: str, where: str | None = None) -> str:
    """An optional string field, ``""`` when absent."""
    value = body.get(name, "")
    if not isinstance(value, str) or not value.isprintable():
        raise ContentError(f"{what}: {where or name} is not {_JSON_NAMES[str]}")
    return value
