"""``bulkpull verify PATH...``: check archives and layouts written by bulkpull or any other tool,
and with ``--lock`` that they hold what a lock file pins; with ``--lock`` and ``--registry``,
that a registry does (after a push), reached with the registry flags of a push; with
``--verify-key``, that their images carry cosign signatures made with that key.

Imports the public ``bulkpull`` API, typer, ``commands``, ``display``, ``flags`` and ``inputs``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

import bulkpull
from bulkpull import ImageListError, InvalidOptionError, LockCheck, PushOptions
from bulkpull.cli import display, flags, inputs
from bulkpull.cli.commands import EXIT_OK, EXIT_SOME_FAILED, usage_error
from bulkpull.cli.text import count_text, size_text

SUMMARY = "Check archives and layouts (and a registry) against what they should hold."
Inventory = Annotated[
    Path | None,
    typer.Option(
        "--inventory",
        metavar="OUT.json",
        help="With --lock and --registry: write what the registry holds of each image "
        "(manifests read, no blob): a --have file for the next delta.",
    ),
]
Registry = Annotated[
    str | None,
    typer.Option(
        "--registry",
        metavar="REGISTRY[/NAMESPACE]",
        help="With --lock: check that this registry holds every image of the lock, under the "
        "name bulkpull push --to REGISTRY[/NAMESPACE] gives it, with the locked digest.",
    ),
]


Paths = Annotated[
    list[Path] | None,
    typer.Argument(
        metavar="PATH...",
        show_default=False,
        help="Archives (per-image or bundles, docker save's or OCI) and OCI layout "
        "directories; a bundle split with --split as FILE.001 or FILE.sha256 (every "
        "volume checked against the list, then the content).",
    ),
]


def verify(
    paths: Paths = None,
    lock: Annotated[
        Path | None,
        typer.Option("--lock", metavar="FILE", help="A lock file the PATHs must match."),
    ] = None,
    registry: Registry = None,
    inventory: Inventory = None,
    plain_http: flags.PlainHttp = False,
    skip_tls_verify: flags.SkipTlsVerify = False,
    username: flags.Username = None,
    password: flags.Password = None,
    password_stdin: flags.PasswordStdin = False,
    creds: flags.Creds = None,
    proxy: flags.Proxy = None,
    ca_cert: flags.CaCert = None,
    insecure_registry: flags.InsecureRegistries = None,
    timeout: flags.Timeout = None,
    verify_key: flags.VerifyKey = None,
) -> None:
    """Check archives and OCI layout directories (bulkpull's, docker save's, skopeo's,
    containerd's): re-hash every blob, check index.json and manifest.json against what the
    archive holds, layer counts and uncompressed layers against rootfs.diff_ids. With --lock,
    also check that every image the lock pins is there under its name with the pinned digest
    (with --registry: in the registry, --inventory OUT writing what it holds). With --verify-key,
    check each image's cosign signature (carried, or in the registry). Exit 1 if any fails."""
    _check_given(paths, lock, registry, inventory)
    key = inputs.verify_key(verify_key)
    checks = [bulkpull.verify_archive(path) for path in paths or []]
    failed = sum(not _show_check(check) for check in checks)
    if key is not None:
        failed += sum(_show_signatures(check, key) for check in checks)
    matched: list[LockCheck] = []
    try:
        if lock is not None and paths:
            matched.append(bulkpull.verify_lock(lock, checks))
        if lock is not None and registry is not None:
            base = inputs.pull_options(
                **inputs.network_flags(
                    plain_http, skip_tls_verify, proxy, ca_cert, insecure_registry, timeout
                ),
                credentials=inputs.keychain(username, password, password_stdin, creds or [], False),
            )
            options = PushOptions.from_environment(pull=base)
            in_registry = bulkpull.verify_lock_in_registry
            found = asyncio.run(in_registry(lock, registry, options, key=key, inventory=inventory))
            matched.append(found)
    except (ImageListError, InvalidOptionError) as exc:
        usage_error(str(exc))
    for result in matched:
        failed += _show_lock(result)
    raise typer.Exit(EXIT_SOME_FAILED if failed else EXIT_OK)


def _check_given(
    paths: list[Path] | None, lock: Path | None, registry: str | None, inventory: Path | None
) -> None:
    """Stop with a usage error when the flags given check nothing, or a registry against
    nothing, or ask for an inventory of no registry."""
    if inventory is not None and registry is None:
        usage_error("--inventory writes what a registry holds: give --lock and --registry too")
    if registry is not None and lock is None:
        usage_error("--registry checks a registry against a lock file: give --lock FILE too")
    if not paths and registry is None:
        usage_error(
            "nothing to check: give archives or layouts (PATH...), or --lock and --registry"
        )


def _show_lock(matched: LockCheck) -> int:
    """Print a line per image of the lock; returns how many failed."""
    lines = [("ok     ", text) for text in matched.found]
    lines += [("FAILED ", text) for text in matched.problems]
    for status, text in lines:
        _say(f"{status} {text}")
    return len(matched.problems)


def _show_check(check: bulkpull.ArchiveCheck) -> bool:
    """Print what verify found in one archive; returns whether it is sound."""
    for note in check.notes:
        _say(f"note    {check.path}: {note}")
    for problem in check.problems:
        _say(f"FAILED  {check.path}: {problem}")
    if check.expected is not None:
        size = size_text(sum(blob.size for blob in check.expected))
        _say(
            f"delta   {check.path}: a delta for bulkpull push; it expects "
            f"{count_text(len(check.expected), 'blob')} ({size}) at the target:"
        )
        for blob in check.expected:
            held = f" (held by {', '.join(blob.holders)})" if blob.holders else ""
            _say(f"expects {blob.digest}{held}")
    if check.ok:
        names = ", ".join(check.names)
        _say(f"ok      {check.path}: {check.blobs} blobs verified; {names}")
    return check.ok


def _say(line: str) -> None:
    """One line of what verify found, escaped: paths and names come from the media a bundle
    was carried on and from its ``index.json``, written by whoever made it."""
    display.stdout.print(bulkpull.printable(line), soft_wrap=True)


def _show_signatures(check: bulkpull.ArchiveCheck, key: bulkpull.PublicKey) -> int:
    """Print the verdict on each image's signature; returns how many did not verify."""
    failed = 0
    for name, verdict in bulkpull.verify_signatures(check, key):
        status = "signed " if verdict.verified else "FAILED "
        failed += not verdict.verified
        _say(f"{status} {check.path}: {name}: {verdict.message}")
    return failed
