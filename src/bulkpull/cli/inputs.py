"""From what a pull was given to what the library takes: image specs, logins and options.

The images come from the list file (or standard input) and from ``-i`` names; the options from
``PullOptions.from_environment``, the call a library user makes too, with each flag given on the
command line as an override. Anything unusable is a usage error (exit 2) before any network
I/O. Imports the public ``bulkpull`` API and ``commands``.
"""

from __future__ import annotations

import getpass
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import bulkpull
from bulkpull import (
    BulkpullError,
    Credentials,
    CredentialsError,
    Destination,
    ImageListError,
    ImageSpec,
    InvalidOptionError,
    InvalidReferenceError,
    Keychain,
    Mirror,
    Proxies,
    PublicKey,
    PullOptions,
    Shard,
    VerifyKeyError,
    check_archive_names,
    distinct_targets,
    image_spec,
    parse_platform_choice,
    parse_reference,
    parse_size,
    read_image_list,
)
from bulkpull.cli.commands import usage_error

if TYPE_CHECKING:  # a run that needs them imports them: the HTTP stack, cryptography
    from bulkpull import HaveFile

STDIN = "-"
DEFAULT_OUT_DIR = Path("bundles")
IMAGE_FLAG = "--image"


def image_specs(images_file: str | None, images: list[str]) -> list[ImageSpec]:
    """The list file's images, then those named with ``-i``; at least one."""
    if images_file is None and not images:
        usage_error(
            "nothing to pull: give an image list file (IMAGES_FILE, or - for stdin) or -i REF"
        )
    specs = _listed(images_file) if images_file is not None else []
    if images_file is not None and not specs:
        usage_error(f"{images_file}: no images listed")
    for text in images:
        try:
            specs.append(image_spec(text, origin=IMAGE_FLAG))
        except InvalidReferenceError as exc:
            usage_error(f"{IMAGE_FLAG}: {exc}")
    return specs


def _listed(images_file: str) -> list[ImageSpec]:
    try:
        return read_image_list(images_file)
    except ImageListError as exc:
        hint = _hint(images_file) if exc.line is None else ""
        usage_error(f"{exc}{hint}")


def _hint(images_file: str) -> str:
    """``bulkpull 127.0.0.1:5000/web:1.0`` means an image, as with ``docker pull``: say how
    to give one, when the missing file's name reads like an image and not like a file."""
    if images_file == STDIN or Path(images_file).exists():
        return ""
    name = images_file.rpartition("/")[2].partition("@")[0].partition(":")[0]
    try:
        parse_reference(images_file)
    except InvalidReferenceError:
        return ""
    if "." in name:  # images.txt, list.lock: a file name
        return ""
    return f"; to pull the image {images_file}, use: bulkpull -i {images_file}"


def shard_of(text: str | None, named: str) -> Shard | None:
    """The part of the list ``--shard`` (or ``BULKPULL_SHARD``) asks for; None: all of it.
    ``named`` is where ``text`` came from, which a usage error names."""
    if text is None or not text.strip():
        return None
    try:
        return Shard.parse(text)
    except InvalidOptionError as exc:
        usage_error(f"{named}: {exc}")


def list_source(images_file: str | None, images: list[str] | None) -> str:
    """Where the images came from, in words, for a lock file's header."""
    parts = []
    if images_file is not None:
        parts.append("standard input" if images_file == STDIN else images_file)
    if images:
        parts.append("the command line")
    return " and ".join(parts)


def destinations(
    out_dir: Path | None, bundle: Path | None, oci_layout: Path | None, split: str | None = None
) -> list[Destination]:
    """Where the flags say to write, in that order: archives in ``out_dir``, the bundle (in
    volumes of ``split``), the layout (any of them together, one download for all); archives
    in ``bundles`` when none."""
    found = []
    if out_dir is not None:
        found.append(Destination.archives(out_dir))
    if bundle is not None:
        found.append(_bundle(bundle, split))
    elif split is not None:
        usage_error("--split writes the --bundle in volumes: give --bundle FILE")
    if oci_layout is not None:
        found.append(Destination.oci_layout(oci_layout))
    return found or [Destination.archives(DEFAULT_OUT_DIR)]


def have_files(paths: list[Path], copying: bool, dry_run: bool) -> list[HaveFile]:
    """The ``--have`` files, read before any request; a file that is none of a lock, a
    report and an inventory is a usage error, and so is ``--have`` where no delta is written."""
    if paths and copying:
        usage_error("--have makes a delta bundle or layout; --to copies only what a registry lacks")
    if paths and dry_run:
        usage_error("--have makes a delta bundle or layout; --dry-run writes nothing")
    try:
        return [bulkpull.read_have(path) for path in paths]
    except BulkpullError as exc:
        usage_error(str(exc))


def _bundle(path: Path, split: str | None) -> Destination:
    try:
        return Destination.bundle(path, split=None if split is None else parse_size(split))
    except InvalidOptionError as exc:
        usage_error(f"--split: {exc}")


def checked(specs: list[ImageSpec], options: PullOptions, to: list[Destination]) -> list[ImageSpec]:
    """``specs`` with each image once, unless two images take one name, or two would write
    the same archive with the run's platforms (only archives are named after their images)."""
    try:
        if any(destination.kind == "archives" for destination in to):
            check_archive_names(specs, options.platforms, options.all_platforms)
        return distinct_targets(specs)
    except ImageListError as exc:
        usage_error(str(exc))


class RetryFlags(TypedDict):
    """How often, and after how long, a failed request is tried again."""

    retries: int | None
    retry_delay: float | None


def retry_flags(retries: int | None, retry_delay: float | None) -> RetryFlags:
    """``--retries`` and ``--retry-delay``, for ``pull_options(**...)``."""
    return RetryFlags(retries=retries, retry_delay=retry_delay)


class NetworkFlags(TypedDict):
    """The flags every command that talks to registries has, as ``pull_options`` takes them."""

    plain_http: bool
    skip_tls_verify: bool
    proxy: str | None
    ca_cert: Path | None
    insecure_registries: list[str] | None
    timeout: float | None


def network_flags(
    plain_http: bool,
    skip_tls_verify: bool,
    proxy: str | None,
    ca_cert: Path | None,
    insecure_registry: list[str] | None,
    timeout: float | None,
) -> NetworkFlags:
    """Those flags, as a command's signature names them, for ``pull_options(**...)``."""
    return NetworkFlags(
        plain_http=plain_http,
        skip_tls_verify=skip_tls_verify,
        proxy=proxy,
        ca_cert=ca_cert,
        insecure_registries=insecure_registry,
        timeout=timeout,
    )


class ReferrerFlags(TypedDict):
    """What a pull carries besides images, and the key their signatures must verify with."""

    referrers: bool
    referrer_types: frozenset[str]
    verify_key: PublicKey | None


def referrer_flags(
    no_referrers: bool, referrers_type: list[str] | None, key: PublicKey | None
) -> ReferrerFlags:
    """``--no-referrers``, ``--referrers-type`` and ``--verify-key`` for ``pull_options``."""
    return ReferrerFlags(
        referrers=not no_referrers, referrer_types=frozenset(referrers_type or ()), verify_key=key
    )


class WorkFlags(TypedDict):
    """How much a pull does at once, whether it rewrites, and where it keeps blobs."""

    force: bool
    jobs: int | None
    max_downloads: int | None
    cache_dir: Path | None


def work_flags(
    force: bool, jobs: int | None, max_downloads: int | None, cache: Path | None
) -> WorkFlags:
    """``--force``, ``--jobs``, ``--max-downloads`` and ``--cache`` for ``pull_options``."""
    return WorkFlags(force=force, jobs=jobs, max_downloads=max_downloads, cache_dir=cache)


def pull_options(
    *,
    proxy: str | None,
    insecure_registries: list[str] | None,
    credentials: Keychain | None,
    platforms: list[str] | None = None,
    mirrors: list[str] | None = None,
    retries: int | None = None,
    retry_delay: float | None = None,
    **flags: object,
) -> PullOptions:
    """The environment's options with every flag that was given on top.

    ``flags`` are given fields as they are (None: not given); the others need parsing first.
    A command without a flag (verify has no ``--platform``) leaves it out.
    """
    given: dict[str, Any] = {name: value for name, value in flags.items() if value is not None}
    try:
        if platforms:
            given["platforms"], given["all_platforms"] = parse_platform_choice(",".join(platforms))
        if proxy:
            given["proxies"] = Proxies.everywhere(proxy)
        if insecure_registries:
            given["insecure_registries"] = frozenset(insecure_registries)
        if mirrors:
            given["mirrors"] = tuple(map(Mirror.parse, mirrors))
        if credentials is not None:
            given["credentials"] = credentials
        options = PullOptions.from_environment(**given)
        retry = options.retry
        return replace(
            options,
            retry=replace(
                retry,
                retries=retry.retries if retries is None else retries,
                delay=retry.delay if retry_delay is None else retry_delay,
            ),
        )
    except BulkpullError as exc:  # an option that cannot work, a login file that cannot be read
        usage_error(str(exc))


def keychain(
    username: str | None,
    password: str | None,
    password_stdin: bool,
    creds: list[str],
    list_on_stdin: bool,
) -> Keychain | None:
    """The login order of the README: -u or --creds, then podman's and docker's files (None:
    the files alone, as ``PullOptions.from_environment`` reads them)."""
    everywhere = _credentials(username, password, password_stdin, list_on_stdin=list_on_stdin)
    if everywhere is not None and creds:
        usage_error("--username is for every registry; use it or --creds, not both")
    per_registry = {}
    for text in creds:
        registry, equals, login = text.partition("=")
        user, colon, secret = login.partition(":")
        if not (registry and equals and user and colon):
            # Never the value itself: it may hold a password.
            named = f" for {registry}" if equals else ""
            usage_error(f"--creds{named}: expected REGISTRY=USER:PASSWORD")
        per_registry[registry] = Credentials(user, secret)
    if everywhere is None and not per_registry:
        return None
    try:
        return Keychain.from_environment(everywhere=everywhere, per_registry=per_registry)
    except CredentialsError as exc:
        usage_error(str(exc))


def _credentials(
    username: str | None, password: str | None, password_stdin: bool, *, list_on_stdin: bool
) -> Credentials | None:
    if password is not None and password_stdin:
        usage_error("--password and --password-stdin cannot be used together")
    if password_stdin:
        if list_on_stdin:
            usage_error("--password-stdin cannot be used when the image list is read from stdin")
        if sys.stdin is None:
            usage_error("--password-stdin: standard input is closed")
        password = sys.stdin.readline().rstrip("\r\n")
    if password is not None and username is None:
        usage_error("a password needs --username")
    if username is None:
        return None
    return Credentials(username, password if password is not None else _asked_for(username))


def _asked_for(username: str) -> str:
    """The password of ``-u USER`` given without one: asked on the terminal, as ``docker
    login`` asks; without a terminal a usage error, not a login with an empty password that
    the registry would refuse only after the run has started."""
    if sys.stdin is None or not sys.stdin.isatty():
        usage_error(
            f"-u {username}: no password given and no terminal to ask on; "
            "use --password-stdin (or -p)"
        )
    return getpass.getpass(f"Password for {username}: ")


def verify_key(path: Path | None) -> PublicKey | None:
    """The ``--verify-key`` file as a key; one that cannot be used (unreadable, not a cosign
    public key) is a usage error, before any request."""
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        usage_error(f"--verify-key {path}: cannot read it: {exc.strerror or exc}")
    try:
        return bulkpull.load_public_key(data, f"--verify-key {path}")
    except VerifyKeyError as exc:
        usage_error(str(exc))
