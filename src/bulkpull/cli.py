"""The ``bulkpull`` command: flags in, progress and a summary out, exit codes.

Uses only the public ``bulkpull`` API (what the CLI needs, the library exports), typer, and
``console`` for everything it shows. Exit codes: 0 every image pulled, 1 some failed (the rest
still completed), 2 usage error or a bad list line, 70 a bug in bulkpull, 130 interrupted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NoReturn

import typer

import bulkpull
from bulkpull import (
    BulkpullError,
    Credentials,
    CredentialsError,
    ImageListError,
    ImageSpec,
    InvalidPlatformError,
    Keychain,
    Mirror,
    Platform,
    Proxies,
    PullOptions,
    PullReport,
    RetryPolicy,
    console,
    parse_platforms,
)

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_BUG = 70  # EX_SOFTWARE in sysexits.h
EXIT_INTERRUPTED = 130

# Locals stay out of tracebacks: they hold passwords.
app = typer.Typer(rich_markup_mode=None, pretty_exceptions_show_locals=False)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bulkpull {bulkpull.__version__}")
        raise typer.Exit()


EXAMPLES = """\b
Examples:
  bulkpull images.txt                          one archive per image in bundles/
  bulkpull images.txt --bundle offline.tar     every image in one archive
  bulkpull images.txt --oci-layout layout/     an OCI layout for skopeo copy oci:...
  bulkpull images.txt --platform linux/arm64 --platform linux/amd64
  bulkpull images.txt --bundle offline.tar --platform all   every platform, exact digests
  bulkpull images.txt --dry-run --lock images.lock   pin every tag, download nothing
  bulkpull images.lock --report report.json    the pinned images, and a JSON report
  bulkpull verify bundles/*.tar                check archives

\b
Each flag marked [env var: ...] can be set in the environment instead.
Exit codes: 0 all pulled, 1 some failed, 2 usage error, 130 interrupted."""


@app.command(
    help="Pull every image in IMAGES_FILE (or - for stdin) into one archive per image.\n\n"
    "Each line is SOURCE [NEW_NAME] [platform=OS/ARCH[,...]|all]; blank lines and # comments are "
    "ignored. Archives load with docker load, podman load, skopeo and ctr images import.",
    epilog=EXAMPLES,
)
def pull(
    images_file: Annotated[str, typer.Argument(metavar="IMAGES_FILE", show_default=False)],
    out_dir: Annotated[
        Path,
        typer.Option(
            "-o",
            "--out-dir",
            metavar="DIR",
            envvar="BULKPULL_OUT_DIR",
            help="Where archives (and the blob store) go.",
        ),
    ] = Path("bundles"),
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle", metavar="FILE", help="Write every image into this one archive instead."
        ),
    ] = None,
    oci_layout: Annotated[
        Path | None,
        typer.Option(
            "--oci-layout",
            metavar="DIR",
            help="Write every image into (or add to) this OCI layout.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Rewrite archives that already hold the image.")
    ] = False,
    jobs: Annotated[
        int,
        typer.Option(
            "-j",
            "--jobs",
            min=1,
            metavar="N",
            envvar="BULKPULL_JOBS",
            help="Images resolved and written at once.",
        ),
    ] = 4,
    max_downloads: Annotated[
        int,
        typer.Option(
            "--max-downloads",
            min=1,
            metavar="N",
            envvar="BULKPULL_MAX_DOWNLOADS",
            help="Blob downloads at once, all images together.",
        ),
    ] = 8,
    platform: Annotated[
        list[str] | None,
        typer.Option(
            "--platform",
            metavar="OS/ARCH[/VARIANT]",
            envvar="BULKPULL_PLATFORM",
            help="Platform to pick from multi-platform images; repeat for several "
            "(each gets its own archive, or all go in the bundle or layout), or 'all' for "
            "every manifest of the index under its own digest.  [default: linux/amd64]",
            show_default=False,
        ),
    ] = None,
    plain_http: Annotated[bool, typer.Option("--plain-http", help="Use HTTP, not HTTPS.")] = False,
    skip_tls_verify: Annotated[
        bool, typer.Option("--skip-tls-verify", help="Accept any TLS certificate.")
    ] = False,
    username: Annotated[
        str | None, typer.Option("-u", "--username", metavar="USER", help="Registry user.")
    ] = None,
    password: Annotated[
        str | None,
        typer.Option(
            "-p",
            "--password",
            metavar="PASSWORD",
            help="Registry password (prefer --password-stdin).",
        ),
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    creds: Annotated[
        list[str] | None,
        typer.Option(
            "--creds",
            metavar="REGISTRY=USER:PASSWORD",
            help="Login for one registry; repeatable. Without it (or -u) logins come from "
            "podman's auth.json, then docker's config.json.",
        ),
    ] = None,
    proxy: Annotated[
        str | None,
        typer.Option(
            "--proxy",
            metavar="URL",
            envvar="BULKPULL_PROXY",
            help="Send every request through this http://, https://, socks4://, socks5:// or "
            "socks5h:// proxy.  [default: HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY]",
        ),
    ] = None,
    ca_cert: Annotated[
        Path | None,
        typer.Option(
            "--ca-cert",
            metavar="FILE",
            envvar="BULKPULL_CA_CERT",
            exists=True,
            dir_okay=False,
            help="Also trust the CA certificates in this PEM file.",
        ),
    ] = None,
    insecure_registry: Annotated[
        list[str] | None,
        typer.Option(
            "--insecure-registry",
            metavar="HOST[:PORT]",
            envvar="BULKPULL_INSECURE_REGISTRY",
            help="Reach this registry over unverified HTTPS or plain HTTP; repeatable.",
        ),
    ] = None,
    mirror: Annotated[
        list[str] | None,
        typer.Option(
            "--mirror",
            metavar="REGISTRY=MIRROR",
            envvar="BULKPULL_MIRROR",
            help="Pull REGISTRY's images from MIRROR (host[:port][/namespace]) first, falling "
            "back to REGISTRY; repeatable.",
        ),
    ] = None,
    retries: Annotated[
        int,
        typer.Option(
            "--retries",
            min=0,
            metavar="N",
            envvar="BULKPULL_RETRIES",
            help="Repeats of a request that failed for a temporary reason.",
        ),
    ] = 3,
    retry_delay: Annotated[
        float,
        typer.Option(
            "--retry-delay",
            min=0.0,
            metavar="SECONDS",
            envvar="BULKPULL_RETRY_DELAY",
            help="First backoff; doubles with jitter up to 60 s.",
        ),
    ] = 2.0,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            min=0.1,
            metavar="SECONDS",
            envvar="BULKPULL_TIMEOUT",
            help="To connect, of silence while reading, and for the whole of each small request "
            "(ping, token, manifest).",
        ),
    ] = 60.0,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Resolve every image to its digest and size; download no blob, write no archive.",
        ),
    ] = False,
    report_file: Annotated[
        Path | None,
        typer.Option(
            "--report", metavar="FILE.json", help="Write every result and the totals as JSON."
        ),
    ] = None,
    lock_file: Annotated[
        Path | None,
        typer.Option(
            "--lock",
            metavar="FILE",
            help="Write the list again with every image pinned to its digest; a valid list.",
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Log requests, retries and every stage.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="Print only errors and the summary.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    try:
        specs = bulkpull.read_image_list(images_file)
        platforms, all_platforms = _platform_choice(platform or [])
        options = PullOptions(
            platforms=platforms,
            all_platforms=all_platforms,
            force=force,
            jobs=jobs,
            max_downloads=max_downloads,
            plain_http=plain_http,
            skip_tls_verify=skip_tls_verify,
            credentials=_keychain(
                _credentials(username, password, password_stdin, images_file), creds or []
            ),
            insecure_registries=frozenset(insecure_registry or []),
            ca_cert=ca_cert,
            proxies=Proxies.everywhere(proxy) if proxy else _environment_proxies(),
            mirrors=tuple(_mirror(text) for text in mirror or []),
            retry=RetryPolicy(retries=retries, delay=retry_delay),
            timeout=timeout,
        )
    except (ImageListError, InvalidPlatformError, CredentialsError, ValueError) as exc:
        _usage_error(str(exc))
    if not specs:
        _usage_error(f"{images_file}: no images listed")
    if bundle is not None and oci_layout is not None:
        _usage_error("--bundle and --oci-layout cannot be used together")
    destination = _Destination(out_dir, bundle, oci_layout)
    display = console.make_display(len(specs), dry_run=dry_run, verbose=verbose, quiet=quiet)
    _log_through(display, verbose=verbose, quiet=quiet)
    if not quiet:
        display.note(_headline(specs, destination, options, dry_run=dry_run))
    try:
        report = asyncio.run(_run_until_signalled(specs, destination, options, display, dry_run))
    except bulkpull.DestinationError as exc:
        _usage_error(str(exc))
    except (KeyboardInterrupt, asyncio.CancelledError):
        console.stderr.print(
            f"interrupted: {display.tally.pulled} of {len(specs)} images pulled; verified and "
            "partial blobs are kept for the next run"
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    console.print_summary(report, dry_run=dry_run)
    _write_results(report, report_file, lock_file, images_file)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_SOME_FAILED)


@dataclass(frozen=True)
class _Destination:
    out_dir: Path
    bundle: Path | None
    oci_layout: Path | None

    def __str__(self) -> str:
        return str(self.bundle or self.oci_layout or self.out_dir)


async def _run_until_signalled(
    specs: list[ImageSpec],
    to: _Destination,
    options: PullOptions,
    display: console.Display,
    dry_run: bool,
) -> PullReport:
    """Pull (or only resolve), treating SIGTERM like Ctrl-C: cancel, keep what is verified,
    write no archive."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    async with display.running():
        if dry_run:
            # Manifests already in the store are read from it: a dry run after a pull costs
            # one HEAD per tag.
            store = bulkpull.store_location(
                to.out_dir, bundle=to.bundle, oci_layout=to.oci_layout, store_dir=options.store_dir
            )
            return await bulkpull.resolve_images(
                specs, options, store_dir=store, on_event=display.handle
            )
        return await bulkpull.pull_images(
            specs,
            to.out_dir,
            options,
            bundle=to.bundle,
            oci_layout=to.oci_layout,
            on_event=display.handle,
        )


def _headline(
    specs: list[ImageSpec], to: _Destination, options: PullOptions, *, dry_run: bool
) -> str:
    platforms = ", ".join(str(platform) for platform in options.platforms)
    if options.all_platforms:
        platforms = "all platforms"
    images = console.count_text(len(specs), "image")
    if dry_run:
        return f"resolving {images} ({platforms}); dry run: no blob is downloaded"
    return f"pulling {images} ({platforms}) into {to}"


def _log_through(display: console.Display, *, verbose: bool, quiet: bool) -> None:
    """Send the library's log records through the display: with ``-v`` every request (URLs
    redacted by the library), by default warnings, with ``-q`` errors only."""
    logger = logging.getLogger("bulkpull")
    logger.addHandler(console.DisplayHandler(display))
    logger.setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING)
    logger.propagate = False


def _write_results(
    report: PullReport, report_file: Path | None, lock_file: Path | None, images_file: str
) -> None:
    """Write ``--report`` and ``--lock``; a file that cannot be written fails the run."""
    written = [
        (report_file, "report", json.dumps(report.to_json(), indent=2) + "\n"),
        (lock_file, "lock file", _lock_text(report, images_file)),
    ]
    for path, what, text in written:
        if path is None:
            continue
        try:
            asyncio.run(bulkpull.write_atomically(path, text.encode()))
        except OSError as exc:
            console.error(f"cannot write the {what} {path}: {exc.strerror or exc}")
            raise typer.Exit(EXIT_SOME_FAILED) from None
        console.stdout.print(f"{what} written to {path}", soft_wrap=True)


def _lock_text(report: PullReport, images_file: str) -> str:
    """The lock file: a header saying what it is, then one pinned list line per image.

    Images that could not be resolved stay unpinned (so the lock still lists them) and are
    named in the header.
    """
    source = "standard input" if images_file == "-" else images_file
    header = [
        "# bulkpull lock file: every image pinned to the manifest digest it resolved to.",
        f"# Written by bulkpull {bulkpull.__version__} from {source} at {report.started}.",
        "# It is itself an image list: bulkpull THIS_FILE pulls exactly these images again.",
    ]
    header += [
        f"# not pinned (it failed): {result.spec.source}"
        for result in report.results
        if not result.ok
    ]
    return "\n".join(header + report.lock_lines()) + "\n"


def _platform_choice(values: list[str]) -> tuple[tuple[Platform, ...], bool]:
    """``--platform`` as the platforms to pick and whether to keep every one (``all``;
    ``docker load`` then gets the default platform's entry)."""
    text = ",".join(values)
    if bulkpull.wants_all_platforms(text):
        return (bulkpull.DEFAULT_PLATFORM,), True
    return parse_platforms(text or str(bulkpull.DEFAULT_PLATFORM)), False


def _credentials(
    username: str | None, password: str | None, password_stdin: bool, images_file: str
) -> Credentials | None:
    if password is not None and password_stdin:
        _usage_error("--password and --password-stdin cannot be used together")
    if password_stdin:
        if images_file == "-":
            _usage_error("--password-stdin cannot be used when the image list is read from stdin")
        password = sys.stdin.readline().rstrip("\r\n")
    if password is not None and username is None:
        _usage_error("a password needs --username")
    if username is None:
        return None
    return Credentials(username, password or "")


def _keychain(everywhere: Credentials | None, creds: list[str]) -> Keychain:
    """The login order of the README: -u or --creds, then podman's and docker's files."""
    if everywhere is not None and creds:
        _usage_error("--username is for every registry; use it or --creds, not both")
    per_registry = {}
    for text in creds:
        registry, equals, login = text.partition("=")
        username, colon, password = login.partition(":")
        if not (registry and equals and username and colon):
            # Never the value itself: it may hold a password.
            named = f" for {registry}" if equals else ""
            _usage_error(f"--creds{named}: expected REGISTRY=USER:PASSWORD")
        per_registry[registry] = Credentials(username, password)
    return Keychain.from_environment(everywhere=everywhere, per_registry=per_registry)


def _environment_proxies() -> Proxies:
    try:
        return Proxies.from_environment(os.environ)
    except ValueError as exc:
        _usage_error(f"proxy environment variables: {exc}")


def _mirror(text: str) -> Mirror:
    registry, equals, mirror = text.partition("=")
    if not equals:
        _usage_error(f"--mirror {text}: expected REGISTRY=MIRROR")
    return Mirror(registry, mirror)


def _usage_error(message: str) -> NoReturn:
    console.error(message)
    raise typer.Exit(EXIT_USAGE)


verify_app = typer.Typer(
    add_completion=False, rich_markup_mode=None, pretty_exceptions_show_locals=False
)


@verify_app.command(
    help="Check archives and OCI layout directories (bulkpull's, docker save's, skopeo's, "
    "containerd's): re-hash every blob, check index.json and manifest.json against what the "
    "archive holds, layer counts and uncompressed layers against rootfs.diff_ids. With "
    "--lock, also check that every image the lock file pins is there under its name with the "
    "pinned digest. Exit 1 if any check fails."
)
def verify(
    paths: Annotated[list[Path], typer.Argument(metavar="PATH...", show_default=False)],
    lock: Annotated[
        Path | None,
        typer.Option("--lock", metavar="FILE", help="A lock file the PATHs must match."),
    ] = None,
) -> None:
    checks = [bulkpull.verify_archive(path) for path in paths]
    failed = sum(not _show_check(check) for check in checks)
    if lock is not None:
        try:
            matched = bulkpull.verify_lock(lock, checks)
        except ImageListError as exc:
            _usage_error(str(exc))
        lines = [("ok     ", text) for text in matched.found]
        lines += [("FAILED ", text) for text in matched.problems]
        for status, text in lines:
            console.stdout.print(f"{status} {text}", soft_wrap=True)
        failed += len(matched.problems)
    raise typer.Exit(EXIT_SOME_FAILED if failed else EXIT_OK)


def _show_check(check: bulkpull.ArchiveCheck) -> bool:
    """Print what verify found in one archive; returns whether it is sound."""
    for note in check.notes:
        console.stdout.print(f"note    {check.path}: {note}", soft_wrap=True)
    for problem in check.problems:
        console.stdout.print(f"FAILED  {check.path}: {problem}", soft_wrap=True)
    if check.ok:
        names = ", ".join(check.names)
        console.stdout.print(
            f"ok      {check.path}: {check.blobs} blobs verified; {names}", soft_wrap=True
        )
    return check.ok


def main() -> None:
    """Entry point of the ``bulkpull`` script and ``python -m bulkpull``.

    ``bulkpull verify PATH...`` checks archives and layouts; anything else is a pull, so the
    everyday ``bulkpull images.txt`` needs no sub-command. Errors bulkpull expects (its own, and the
    system's: a full disk, a missing directory) are one line; anything else is a bug, shown
    with its traceback and a request to report it.
    """
    try:
        if sys.argv[1:2] == ["verify"]:
            verify_app(args=sys.argv[2:], prog_name="bulkpull verify")
        # The name completion scripts and usage lines use, also under python -m bulkpull.
        app(prog_name="bulkpull")
    except BulkpullError as exc:  # not attributed to an image
        console.error(str(exc))
        sys.exit(EXIT_SOME_FAILED)
    except OSError as exc:  # the system's: a full disk, a file where a directory should be
        console.error(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))
        sys.exit(EXIT_SOME_FAILED)
    except Exception:
        traceback.print_exc()
        console.error(
            f"this is a bug in bulkpull {bulkpull.__version__}; please report it with the "
            "traceback above and the command line that led to it (leave out passwords)"
        )
        sys.exit(EXIT_BUG)
