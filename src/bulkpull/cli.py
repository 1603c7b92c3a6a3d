"""The ``bulkpull`` command: flags in, progress and a summary out, exit codes.

Uses only the public ``bulkpull`` API (what the CLI needs, the library exports) plus typer and
rich. Exit codes: 0 every image pulled, 1 some failed (the rest still completed), 2 usage error or
a bad list line, 130 interrupted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

import bulkpull
from bulkpull import (
    BulkpullError,
    Credentials,
    CredentialsError,
    Event,
    EventCallback,
    ImageDone,
    ImageListError,
    ImageResult,
    ImageSpec,
    InvalidPlatformError,
    Keychain,
    Mirror,
    Proxies,
    PullOptions,
    PullReport,
    RetryPolicy,
    parse_platforms,
)

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Locals stay out of tracebacks: they hold passwords.
app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_show_locals=False)
# Messages carry registry text and user input; none of it is rich markup.
err = Console(stderr=True, highlight=False, markup=False)
out = Console(highlight=False, markup=False)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bulkpull {bulkpull.__version__}")
        raise typer.Exit()


@app.command(
    help="Pull every image in IMAGES_FILE (or - for stdin) into one archive per image.\n\n"
    "Each line is SOURCE [NEW_NAME]; blank lines and # comments are ignored. Archives load "
    "with docker load, podman load, skopeo and ctr images import.",
    epilog="Example: bulkpull images.txt --out-dir bundles/ --platform linux/arm64",
)
def pull(
    images_file: Annotated[str, typer.Argument(metavar="IMAGES_FILE", show_default=False)],
    out_dir: Annotated[Path, typer.Option("-o", "--out-dir", help="Where archives go.")] = Path(
        "bundles"
    ),
    bundle: Annotated[
        Path | None,
        typer.Option("--bundle", help="Write every image into this one archive instead."),
    ] = None,
    oci_layout: Annotated[
        Path | None,
        typer.Option("--oci-layout", help="Write every image into (or add to) this OCI layout."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Rewrite archives that already hold the image.")
    ] = False,
    jobs: Annotated[
        int, typer.Option("-j", "--jobs", min=1, help="Images resolved and written at once.")
    ] = 4,
    max_downloads: Annotated[
        int,
        typer.Option("--max-downloads", min=1, help="Blob downloads at once, all images together."),
    ] = 8,
    platform: Annotated[
        list[str] | None,
        typer.Option(
            "--platform",
            help="os/arch[/variant] to pick from multi-platform images; repeat for several "
            "(each gets its own archive, or all go in the bundle or layout).  [default: "
            "linux/amd64]",
            show_default=False,
        ),
    ] = None,
    plain_http: Annotated[bool, typer.Option("--plain-http", help="Use HTTP, not HTTPS.")] = False,
    skip_tls_verify: Annotated[
        bool, typer.Option("--skip-tls-verify", help="Accept any TLS certificate.")
    ] = False,
    username: Annotated[str | None, typer.Option("-u", "--username", help="Registry user.")] = None,
    password: Annotated[
        str | None,
        typer.Option("-p", "--password", help="Registry password (prefer --password-stdin)."),
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
            help="Send every request through this http://, https://, socks4://, socks5:// or "
            "socks5h:// proxy.  [default: HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY]",
        ),
    ] = None,
    ca_cert: Annotated[
        Path | None,
        typer.Option(
            "--ca-cert",
            metavar="FILE",
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
            help="Reach this registry over unverified HTTPS or plain HTTP; repeatable.",
        ),
    ] = None,
    mirror: Annotated[
        list[str] | None,
        typer.Option(
            "--mirror",
            metavar="REGISTRY=MIRROR",
            help="Pull REGISTRY's images from MIRROR (host[:port][/namespace]) first, falling "
            "back to REGISTRY; repeatable.",
        ),
    ] = None,
    retries: Annotated[
        int, typer.Option("--retries", min=0, help="Repeats of a failed request.")
    ] = 3,
    retry_delay: Annotated[
        float, typer.Option("--retry-delay", min=0.0, help="First backoff in seconds; doubles.")
    ] = 2.0,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to connect, and of read silence.")
    ] = 60.0,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Log requests and retries.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="Print only errors and the summary.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(message)s",
        stream=sys.stderr,
    )
    try:
        specs = bulkpull.read_image_list(images_file)
        options = PullOptions(
            platforms=parse_platforms(",".join(platform or ["linux/amd64"])),
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

    finished: list[ImageResult] = []

    def report_progress(event: Event) -> None:
        if not isinstance(event, ImageDone):
            return
        finished.append(event.result)
        if not quiet or not event.result.ok:
            err.print(_result_line(event.result), soft_wrap=True)

    try:
        report = asyncio.run(_pull_until_signalled(specs, destination, options, report_progress))
    except (KeyboardInterrupt, asyncio.CancelledError):
        pulled = sum(result.ok for result in finished)
        err.print(
            f"interrupted: {pulled} of {len(specs)} images pulled; verified and partial blobs "
            "are kept for the next run"
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    _print_summary(report)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_SOME_FAILED)


@dataclass(frozen=True)
class _Destination:
    out_dir: Path
    bundle: Path | None
    oci_layout: Path | None


async def _pull_until_signalled(
    specs: list[ImageSpec], to: _Destination, options: PullOptions, on_event: EventCallback
) -> PullReport:
    """Pull, treating SIGTERM like Ctrl-C: cancel, keep what is verified, write no archive."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await bulkpull.pull_images(
        specs, to.out_dir, options, bundle=to.bundle, oci_layout=to.oci_layout, on_event=on_event
    )


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
    err.print(f"bulkpull: {message}", soft_wrap=True)
    raise typer.Exit(EXIT_USAGE)


def _result_line(result: ImageResult) -> str:
    if result.error is not None:
        return f"failed  {result.spec.source}: {_error_text(result.error)}"
    digest = result.manifest_digest.short if result.manifest_digest else "?"
    return f"pulled  {result.spec.source} -> {result.archive} ({digest}, {_size(result.size)})"


def _error_text(error: BulkpullError) -> str:
    tries = f" (after {error.tries} tries)" if error.tries > 1 else ""
    return f"{error}{tries}"


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _summary_rows(report: PullReport) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for result in report.results:
        digest = str(result.manifest_digest)[:19] if result.manifest_digest else "-"
        platform = str(result.platform) if result.platform else "-"
        where = (
            str(result.archive) if result.error is None else f"error: {_error_text(result.error)}"
        )
        rows.append((str(result.spec.source), digest, platform, _size(result.size), where))
    return rows


def _print_summary(report: PullReport) -> None:
    """A table on a terminal; one plain line per image elsewhere, so logs and greps keep
    each image whole."""
    rows = _summary_rows(report)
    if out.is_terminal:
        table = Table(show_edge=False, pad_edge=False)
        for column in ("image", "digest", "platform", "size", "archive or error"):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*row)
        out.print(table)
    else:
        for row in rows:
            out.print("  ".join(row), soft_wrap=True)
    pulled = len(report.results) - len(report.failed)
    out.print(f"{pulled} of {len(report.results)} images pulled, {len(report.failed)} failed")


verify_app = typer.Typer(
    add_completion=False, rich_markup_mode=None, pretty_exceptions_show_locals=False
)


@verify_app.command(
    help="Check archives: re-hash every blob, check index.json and manifest.json against "
    "each other and every layer count against rootfs.diff_ids. Exit 1 if any check fails."
)
def verify(
    archives: Annotated[list[Path], typer.Argument(metavar="ARCHIVE...", show_default=False)],
) -> None:
    failed = 0
    for path in archives:
        check = bulkpull.verify_archive(path)
        if check.ok:
            names = ", ".join(check.names)
            out.print(f"ok      {path}: {check.blobs} blobs verified; {names}", soft_wrap=True)
            continue
        failed += 1
        for problem in check.problems:
            out.print(f"FAILED  {path}: {problem}", soft_wrap=True)
    raise typer.Exit(EXIT_SOME_FAILED if failed else EXIT_OK)


def main() -> None:
    """Entry point of the ``bulkpull`` script and ``python -m bulkpull``.

    ``bulkpull verify ARCHIVE...`` checks archives; anything else is a pull, so the everyday
    ``bulkpull images.txt`` needs no sub-command.
    """
    try:
        if sys.argv[1:2] == ["verify"]:
            verify_app(args=sys.argv[2:], prog_name="bulkpull verify")
        app()
    except BulkpullError as exc:  # an error the pull did not attribute to an image
        err.print(f"bulkpull: {exc}", soft_wrap=True)
        sys.exit(EXIT_SOME_FAILED)
