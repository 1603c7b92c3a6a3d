"""Checking a registry against a lock file: every image the lock pins is there, under the name a
push gives it, with the pinned digest.

The far side of an air gap ends in its registry; this says whether what the clusters will pull is
what was pinned on the connected side. Each lock line is mapped by the push's naming rule
(``targets``) and asked for with ``HEAD``: its tag must name the locked digest. An image pinned
to an index that arrived as one platform's manifest does not pass: a reference pinned to the
index would not pull from this registry (pull with ``platform=all`` to carry the index). With a
key, the image's cosign signature (``sha256-<hex>.sig`` of the locked digest, and its payloads)
is read from the registry and must verify, as a pull with ``--verify-key`` checks it at the
source: so the site knows the signatures arrived whole. Nothing is written. With an
inventory, what the registry holds of each image is written down too (its manifests read, no
blob), for a delta's ``--have``. Imports ``registry``, ``files``, ``pushoptions``,
``targets``, ``imagelist``, ``signatures``, ``referrers`` and ``output`` (the lock check's
result).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from bulkpull.digest import Digest
from bulkpull.engine.pushoptions import PushOptions, transport_for
from bulkpull.errors import BulkpullError
from bulkpull.files import write_atomically
from bulkpull.imagelist import ImageSpec, read_image_list
from bulkpull.output import LockCheck
from bulkpull.reference import Reference
from bulkpull.referrers import CosignKind, cosign_tag
from bulkpull.registry import PushClient, RegistryClient
from bulkpull.signatures import (
    MAX_PAYLOAD_BYTES,
    PublicKey,
    SignatureCheck,
    check_signatures,
    payloads_to_fetch,
)
from bulkpull.targets import PushTarget, digest_tag

log = logging.getLogger("bulkpull")
INVENTORY_VERSION = 1


async def verify_lock_in_registry(
    lock: Path | str,
    registry: PushTarget | str,
    options: PushOptions | None = None,
    *,
    key: PublicKey | None = None,
    inventory: Path | str | None = None,
) -> LockCheck:
    """Check every image of the lock file ``lock`` against ``registry``
    (``REGISTRY[/NAMESPACE]``, as given to a push); ``options`` say how to reach it; with
    ``key``, each image's cosign signature there too. A lock that is not a valid image list
    raises :class:`ImageListError`.

    ``inventory``: also write there what the registry holds of each image found under its
    name (its configs and layers, read from its manifests; no blob is downloaded), the
    ``--have`` file a delta for this registry is made against."""
    specs = await asyncio.to_thread(read_image_list, lock)
    target = registry if isinstance(registry, PushTarget) else PushTarget.parse(registry)
    async with transport_for(options or PushOptions()) as transport:
        client = PushClient(transport, target.registry_host, read_only=True)
        checked = await asyncio.gather(*(_check(client, spec, target, key) for spec in specs))
        if inventory is not None:
            document = await _inventory(client, RegistryClient(transport), specs, target)
            await write_atomically(inventory, json.dumps(document, indent=1).encode() + b"\n")
    found = tuple(text for problem, text in checked if not problem)
    problems = tuple(text for problem, text in checked if problem)
    return LockCheck(Path(lock), found, problems)


async def _check(
    client: PushClient, spec: ImageSpec, target: PushTarget, key: PublicKey | None
) -> tuple[bool, str]:
    """(whether it is a problem, what to say) for one lock line."""
    name = target.name_for(spec.target)
    locked = spec.source.digest
    tag = name.tag or digest_tag(locked)
    where = target.registry
    try:
        digest = await client.manifest_digest(name.path, tag)
        if digest is None:
            return True, f"{name}: not in {where}"
        if locked is None:
            return False, f"{name}: in {where} as {digest} (the lock pins no digest for it)"
        if digest == locked and key is not None:
            verdict = await _signature(client, name, locked, key)
            return not verdict.verified, f"{name}@{locked} in {where}: {verdict.message}"
        if digest == locked:
            return False, f"{name}@{locked} in {where}"
        why = await _why(client, name, locked)
        return True, f"{name}: is {digest}; the lock pins {locked}{why}"
    except BulkpullError as exc:
        return True, f"{name}: {exc}"


async def _inventory(
    client: PushClient, reader: RegistryClient, specs: list[ImageSpec], target: PushTarget
) -> dict[str, object]:
    """The inventory document: per image of the lock found under its name in the registry
    (whatever digest its tag names), that name, the digest and the blobs it consists of."""

    async def held(spec: ImageSpec) -> dict[str, object] | None:
        name = target.name_for(spec.target)
        try:
            digest = await client.manifest_digest(
                name.path, name.tag or digest_tag(spec.source.digest)
            )
            if digest is None:
                return None
            pinned = Reference(name.domain, name.path, digest=digest)
            resolved = await reader.resolve(pinned, (), every=True)
        except BulkpullError as exc:
            log.warning("%s: left out of the inventory: %s", name, exc)
            return None
        blobs = sorted({str(blob.digest) for item in resolved for blob in item.blobs})
        return {"name": str(name), "digest": str(digest), "blobs": blobs}

    images = await asyncio.gather(*(held(spec) for spec in specs))
    return {
        "version": INVENTORY_VERSION,
        "registry": str(target),
        "images": [image for image in images if image is not None],
    }


async def _signature(
    client: PushClient, name: Reference, image: Digest, key: PublicKey
) -> SignatureCheck:
    """The verdict on the cosign signature of ``image`` that the registry holds."""
    found = await client.fetch_manifest(name.path, cosign_tag(image, CosignKind.SIGNATURE))
    manifest = found[0] if found is not None else None
    payloads = {}
    for layer in payloads_to_fetch(manifest, image) if manifest is not None else ():
        payloads[layer.digest] = await client.fetch_blob(name.path, layer.digest, MAX_PAYLOAD_BYTES)
    return check_signatures(image, manifest, payloads, key)


async def _why(client: PushClient, name: Reference, locked: Digest) -> str:
    """What else the registry says about the locked digest: held under another tag, or not at
    all (an index of which one platform was pulled, say)."""
    held = await client.manifest_digest(name.path, str(locked))
    if held is not None:
        return " (the repository holds it, but the tag names another)"
    return (
        ", which the registry does not hold (an index pulled for one platform arrives as that "
        "platform's manifest; pull it with platform=all to carry the index)"
    )
