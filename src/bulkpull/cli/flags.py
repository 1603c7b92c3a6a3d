"""The flags of the commands, as annotated types a command's signature names.

Declared once so that commands share them: the registry flags (logins, TLS, proxy, mirrors,
retries) mean the same in a pull and in any command added beside it. A flag that a
``BULKPULL_*`` variable can stand in for is read by ``PullOptions.from_environment`` (not by
typer), so its default here is None, "not given", and its help names the variable. Imports
the public ``bulkpull`` API and typer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import bulkpull


def environment(help_text: str, variable: str, default: str | None = None) -> str:
    """``help_text`` with the variable (and default) typer would show for its own variables."""
    extra = f"env var: {variable}" + (f"; default: {default}" if default else "")
    return f"{help_text}  [{extra}]"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bulkpull {bulkpull.__version__}")
        raise typer.Exit()


# What to pull, and where to.
ImagesFile = Annotated[
    str | None,
    typer.Argument(
        metavar="IMAGES_FILE",
        show_default=False,
        help="The image list, one image per line; - reads standard input.",
    ),
]
Images = Annotated[
    list[str] | None,
    typer.Option(
        "-i",
        "--image",
        metavar="REF",
        help="Pull this image too (as docker pull REF names it); repeatable. With -i the "
        "list file may be left out.",
        show_default=False,
    ),
]
OutDir = Annotated[
    Path | None,
    typer.Option(
        "-o",
        "--out-dir",
        metavar="DIR",
        envvar="BULKPULL_OUT_DIR",
        help="Write one archive per image into DIR [default: bundles, unless --bundle or "
        "--oci-layout is given; any of the three may be combined].",
        show_default=False,
    ),
]
Bundle = Annotated[
    Path | None,
    typer.Option("--bundle", metavar="FILE", help="Write every image into this one archive."),
]
Split = Annotated[
    str | None,
    typer.Option(
        "--split",
        metavar="SIZE",
        help="Write the --bundle as volumes FILE.001, FILE.002, … of at most SIZE each (4GiB, "
        "700MB, 10MiB: SI and IEC units; at least 1MiB) and their sha256 list FILE.sha256; "
        "cat FILE.0* > FILE joins them. push and verify read the volumes as they are.",
        show_default=False,
    ),
]
OciLayout = Annotated[
    Path | None,
    typer.Option(
        "--oci-layout", metavar="DIR", help="Write every image into (or add to) this OCI layout."
    ),
]
Cache = Annotated[
    Path | None,
    typer.Option(
        "--cache",
        metavar="DIR",
        help=environment(
            "Keep verified blobs in DIR across runs and outputs (by default none are kept "
            "apart from the archives that hold them).",
            "BULKPULL_CACHE",
        ),
        show_default=False,
    ),
]
Force = Annotated[
    bool, typer.Option("--force", help="Rewrite archives that already hold the image.")
]
Platforms = Annotated[
    list[str] | None,
    typer.Option(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help=environment(
            "Platform to pick from multi-platform images; repeat for several (each gets its "
            "own archive, or all go in the bundle or layout), or all for every platform of an "
            "index, under its own digest.",
            "BULKPULL_PLATFORM",
            "linux/amd64",
        ),
        show_default=False,
    ),
]

# What travels with the images, and what they must be signed with.
NoReferrers = Annotated[
    bool,
    typer.Option(
        "--no-referrers",
        help="Leave out the signatures, SBOMs and attestations that travel with the images by "
        "default (into a bundle, a layout or a registry).",
    ),
]
ReferrersType = Annotated[
    list[str] | None,
    typer.Option(
        "--referrers-type",
        metavar="MEDIA_TYPE",
        help="Carry only referrers of this artifact, config or layer media type (such as "
        "application/vnd.dev.cosign.simplesigning.v1+json for cosign signatures); repeatable.",
        show_default=False,
    ),
]
VerifyKey = Annotated[
    Path | None,
    typer.Option(
        "--verify-key",
        metavar="FILE",
        dir_okay=False,
        help="A cosign public key (PEM): each image must have a cosign signature that "
        "verifies with it, or it fails.",
    ),
]

# How hard to work.
Jobs = Annotated[
    int | None,
    typer.Option(
        "-j",
        "--jobs",
        min=1,
        metavar="N",
        help=environment("Images resolved and written at once.", "BULKPULL_JOBS", "4"),
        show_default=False,
    ),
]
MaxDownloads = Annotated[
    int | None,
    typer.Option(
        "--max-downloads",
        min=1,
        metavar="N",
        help=environment(
            "Blob downloads at once, all images together.", "BULKPULL_MAX_DOWNLOADS", "8"
        ),
        show_default=False,
    ),
]

# Registries: how to reach them and log in.
PlainHttp = Annotated[bool, typer.Option("--plain-http", help="Use HTTP, not HTTPS.")]
SkipTlsVerify = Annotated[
    bool, typer.Option("--skip-tls-verify", help="Accept any TLS certificate.")
]
Username = Annotated[
    str | None, typer.Option("-u", "--username", metavar="USER", help="Registry user.")
]
Password = Annotated[
    str | None,
    typer.Option(
        "-p", "--password", metavar="PASSWORD", help="Registry password (prefer --password-stdin)."
    ),
]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]
Creds = Annotated[
    list[str] | None,
    typer.Option(
        "--creds",
        metavar="REGISTRY=USER:PASSWORD",
        help="Login for one registry; repeatable. Without it (or -u) logins come from "
        "podman's auth.json, then docker's config.json.",
    ),
]
Proxy = Annotated[
    str | None,
    typer.Option(
        "--proxy",
        metavar="URL",
        help=environment(
            "Send every request through this http://, https://, socks4://, socks5:// or "
            "socks5h:// proxy.",
            "BULKPULL_PROXY",
            "HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY",
        ),
    ),
]
CaCert = Annotated[
    Path | None,
    typer.Option(
        "--ca-cert",
        metavar="FILE",
        exists=True,
        dir_okay=False,
        help=environment("Also trust the CA certificates in this PEM file.", "BULKPULL_CA_CERT"),
    ),
]
InsecureRegistries = Annotated[
    list[str] | None,
    typer.Option(
        "--insecure-registry",
        metavar="HOST[:PORT]",
        help=environment(
            "Reach this registry over unverified HTTPS or plain HTTP; repeatable.",
            "BULKPULL_INSECURE_REGISTRY",
        ),
    ),
]
Mirrors = Annotated[
    list[str] | None,
    typer.Option(
        "--mirror",
        metavar="REGISTRY=MIRROR",
        help=environment(
            "Pull REGISTRY's images from MIRROR (host[:port][/namespace]) first, falling back "
            "to REGISTRY; repeatable.",
            "BULKPULL_MIRROR",
        ),
    ),
]
Retries = Annotated[
    int | None,
    typer.Option(
        "--retries",
        min=0,
        metavar="N",
        help=environment(
            "Repeats of a request that failed for a temporary reason.", "BULKPULL_RETRIES", "3"
        ),
        show_default=False,
    ),
]
RetryDelay = Annotated[
    float | None,
    typer.Option(
        "--retry-delay",
        min=0.0,
        metavar="SECONDS",
        help=environment(
            "First backoff; doubles with jitter up to 60 s.", "BULKPULL_RETRY_DELAY", "2.0"
        ),
        show_default=False,
    ),
]
Timeout = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        min=0.1,
        metavar="SECONDS",
        help=environment("To connect, and of silence while reading.", "BULKPULL_TIMEOUT", "60.0"),
        show_default=False,
    ),
]

ToRegistry = Annotated[
    str | None,
    typer.Option(
        "--to",
        metavar="REGISTRY[/NAMESPACE]",
        show_default=False,
        help="Copy every image into this registry (as push names them) instead of writing "
        "archives; an image whose tag there already names the source's digest is left alone.",
    ),
]

# What the run leaves and shows.
MaxUploads = Annotated[
    int | None,
    typer.Option(
        "--max-uploads",
        min=1,
        metavar="N",
        help=environment(
            "Blob uploads at once, all images together (with --to).", "BULKPULL_MAX_UPLOADS", "8"
        ),
        show_default=False,
    ),
]
StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        metavar="DIR",
        help="Where unfinished uploads are kept for the next run to resume, and where "
        "shards on one machine meet over shared blobs.  "
        "[default: $XDG_STATE_HOME/bulkpull/uploads]",
        show_default=False,
    ),
]
Shard = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="K/N",
        envvar="BULKPULL_SHARD",
        show_default=False,
        help="Take only part K (from 0) of N of the list, as N processes given the same list "
        "share it out: each image belongs to one part, by a hash of its name.",
    ),
]
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Resolve every image to its digest and size; download no blob, write no archive.",
    ),
]
ReportFile = Annotated[
    Path | None,
    typer.Option(
        "--report",
        metavar="FILE.json",
        help="Write every result and the totals as JSON (also when interrupted).",
    ),
]
Have = Annotated[
    list[Path] | None,
    typer.Option(
        "--have",
        metavar="FILE",
        help=(
            "The far side holds these images (a lock file, a --report, or an inventory of "
            "verify --inventory); the bundle or layout leaves out their blobs: a delta for "
            "bulkpull push. Repeatable."
        ),
    ),
]
LockFile = Annotated[
    Path | None,
    typer.Option(
        "--lock",
        metavar="FILE",
        help="Write the list again with every image pinned to its digest; a valid list.",
    ),
]
Verbose = Annotated[
    bool, typer.Option("-v", "--verbose", help="Log requests, retries and every stage.")
]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="Print only failures and the totals.")]
Version = Annotated[
    bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
]
