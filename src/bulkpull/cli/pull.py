"""``bulkpull [pull] IMAGES_FILE``: pull a list of images into archives, with progress, a
summary, and the exit code that says how it went.

The flow: images and options (``inputs``), a headline, the run under a display (``display``),
the summary, then ``--report`` and ``--lock`` (``results``). Ctrl-C and SIGTERM stop the run
the same way: verified blobs stay, no archive is half-written, and the report says which
images were ``interrupted``. Imports the public ``bulkpull`` API, typer and its siblings.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import typer

import bulkpull
from bulkpull import (
    Destination,
    DestinationError,
    ImageSpec,
    PullOptions,
    PullReport,
)
from bulkpull.cli import flags, inputs, results, runs
from bulkpull.cli.commands import usage_error

if TYPE_CHECKING:  # a run that needs it imports it: it brings the HTTP stack
    from bulkpull import HaveFile
from bulkpull.cli.copy import CopyRun
from bulkpull.cli.tally import Tally

SUMMARY = "Pull the images of a list (and of -i) into archives."
EXAMPLES = """\b
Examples:
  bulkpull images.txt                          one archive per image in bundles/
  bulkpull -i alpine:3.20 -i busybox:1.36      images named on the command line
  bulkpull images.txt --bundle offline.tar     every image in one archive
  bulkpull images.txt --oci-layout layout/     an OCI layout for skopeo copy oci:...
  bulkpull images.txt -o bundles/ --oci-layout layout/   both, each blob downloaded once
  bulkpull images.txt --cache ~/.cache/bulkpull   keep verified blobs for the next lists
  bulkpull images.txt --platform linux/arm64 --platform linux/amd64
  bulkpull images.txt --bundle offline.tar --platform all   every platform, exact digests
  bulkpull images.txt --bundle offline.tar --verify-key cosign.pub   signed images only
  bulkpull images.txt --bundle offline.tar --split 4GiB   volumes for a FAT32 stick
  bulkpull images.txt --dry-run --lock images.lock   pin every tag, download nothing
  bulkpull images.lock --report report.json    the pinned images, and a JSON report
  bulkpull new.txt --bundle delta.tar --have site.lock   leave out what the far side holds
  bulkpull images.txt --to registry.internal:5000/mirror   registry to registry, no archive
  bulkpull images.txt --to registry.internal:5000 --shard 0/3   one of three machines' part
  bulkpull verify bundles/*.tar                check archives

\b
Each flag marked [env var: ...] can be set in the environment instead.
Exit codes: 0 all pulled, 1 some failed, 2 usage error, 130 interrupted."""


def pull(
    ctx: typer.Context,
    images_file: flags.ImagesFile = None,
    image: flags.Images = None,
    out_dir: flags.OutDir = None,
    bundle: flags.Bundle = None,
    split: flags.Split = None,
    oci_layout: flags.OciLayout = None,
    to_registry: flags.ToRegistry = None,
    cache: flags.Cache = None,
    force: flags.Force = False,
    jobs: flags.Jobs = None,
    max_downloads: flags.MaxDownloads = None,
    max_uploads: flags.MaxUploads = None,
    state_dir: flags.StateDir = None,
    platform: flags.Platforms = None,
    no_referrers: flags.NoReferrers = False,
    referrers_type: flags.ReferrersType = None,
    verify_key: flags.VerifyKey = None,
    plain_http: flags.PlainHttp = False,
    skip_tls_verify: flags.SkipTlsVerify = False,
    username: flags.Username = None,
    password: flags.Password = None,
    password_stdin: flags.PasswordStdin = False,
    creds: flags.Creds = None,
    proxy: flags.Proxy = None,
    ca_cert: flags.CaCert = None,
    insecure_registry: flags.InsecureRegistries = None,
    mirror: flags.Mirrors = None,
    retries: flags.Retries = None,
    retry_delay: flags.RetryDelay = None,
    timeout: flags.Timeout = None,
    shard: flags.Shard = None,
    have: flags.Have = None,
    dry_run: flags.DryRun = False,
    report_file: flags.ReportFile = None,
    lock_file: flags.LockFile = None,
    verbose: flags.Verbose = False,
    quiet: flags.Quiet = False,
    version: flags.Version = False,
) -> None:
    """Pull every image in IMAGES_FILE (or - for stdin) and every -i REF into archives (with
    --to: into a registry). Each line is SOURCE [NEW_NAME] [platform=OS/ARCH[,...]|all]; blank
    lines and # comments are ignored. Archives load with docker, podman, skopeo and ctr."""
    listed = inputs.image_specs(images_file, image or [])
    login = inputs.keychain(username, password, password_stdin, creds or [], images_file == "-")
    options = inputs.pull_options(
        **inputs.network_flags(
            plain_http, skip_tls_verify, proxy, ca_cert, insecure_registry, timeout
        ),
        **inputs.retry_flags(retries, retry_delay),
        **inputs.referrer_flags(no_referrers, referrers_type, inputs.verify_key(verify_key)),
        credentials=login,
        platforms=platform,
        mirrors=mirror,
        **inputs.work_flags(force, jobs, max_downloads, cache),
    )
    # The outputs, --shard and the copy's own flags are read back from ctx by _chosen.
    run = _run_for(listed, _chosen(ctx), options, dry_run, verbose, quiet)
    raise typer.Exit(run.conclude(report_file, lock_file, inputs.list_source(images_file, image)))


def _chosen(ctx: typer.Context) -> _Chosen:
    """The outputs, the part of the list and the copy's flags as parsed (``ctx.params``),
    with what came from the environment told apart. ``BULKPULL_OUT_DIR`` is set once per
    machine and stands for the default ``bundles`` only: beside ``--bundle``, ``--oci-layout``
    or ``--to`` it is passed over, where ``-o`` would add per-image archives to every bundle
    or refuse every copy and split. A bad ``BULKPULL_SHARD`` is named as the variable."""
    given = ctx.params
    named = any(given[name] is not None for name in ("bundle", "oci_layout", "to_registry"))
    out_dir = None if named and _from_environment(ctx, "out_dir") else given["out_dir"]
    outputs = (out_dir, given["bundle"], given["oci_layout"], given["split"])
    shard = (given["shard"], "BULKPULL_SHARD" if _from_environment(ctx, "shard") else "--shard")
    uploads = given["have"], given["max_uploads"], given["state_dir"]
    return _Chosen(shard, given["to_registry"], outputs, *uploads)


def _from_environment(ctx: typer.Context, parameter: str) -> bool:
    """Whether ``parameter`` came from its ``BULKPULL_*`` variable, not the command line."""
    source = ctx.get_parameter_source(parameter)
    return source is not None and source.name == "ENVIRONMENT"


class _Chosen(NamedTuple):
    """What the flags chose besides the options: the part of the list (``--shard``), and where
    it goes: a registry (``--to``, with the push's own flags), else the outputs (a delta
    against the ``--have`` files)."""

    shard: tuple[str | None, str]
    """``--shard`` and where it came from: the flag, or ``BULKPULL_SHARD``."""
    to_registry: str | None
    outputs: tuple[Path | None, Path | None, Path | None, str | None]
    have: list[Path] | None
    max_uploads: int | None
    state_dir: Path | None

    @property
    def uploads(self) -> dict[str, Any]:
        """The push's own flags that were given, as :class:`PushOptions` fields."""
        given = {"max_uploads": self.max_uploads, "state_dir": self.state_dir}
        return {name: value for name, value in given.items() if value is not None}


def _run_for(
    listed: list[ImageSpec],
    chosen: _Chosen,
    options: PullOptions,
    dry_run: bool,
    verbose: bool,
    quiet: bool,
) -> _Run | CopyRun:
    """A copy into the registry ``--to`` names, else a pull into the outputs the flags name,
    of the part of the list ``--shard`` names, a delta against the ``--have`` files;
    started: its headline said."""
    holding = inputs.have_files(chosen.have or [], chosen.to_registry is not None, dry_run)
    _refuse_flags_that_cannot_go_together(chosen, options)
    part = inputs.shard_of(*chosen.shard)
    run: _Run | CopyRun
    if chosen.to_registry is not None:
        run = CopyRun(
            listed,
            chosen.to_registry,
            options,
            dry_run,
            part=part,
            push=chosen.uploads,
            verbose=verbose,
            quiet=quiet,
        )
    else:
        specs = listed if part is None else part.select(listed)
        into = inputs.destinations(*chosen.outputs)
        checked = inputs.checked(specs, options, into)
        run = _Run(checked, options, into, dry_run, verbose=verbose, quiet=quiet)
        run.have = holding
    if part is not None:
        run.shard = (part, len(listed))
    run.start()
    return run


def _refuse_flags_that_cannot_go_together(chosen: _Chosen, options: PullOptions) -> None:
    """A usage error for flags one run cannot honour together, before any request: outputs
    and ``--force`` beside ``--to`` (a copy writes no archive, and an image whose tag already
    names its digest is never copied again), ``--split`` beside other outputs, the push's
    own flags without ``--to``."""
    copying = chosen.to_registry is not None
    if copying and any(chosen.outputs):
        usage_error(
            "--to copies into a registry and writes no archive: drop "
            "-o/--bundle/--oci-layout/--split"
        )
    if copying and options.force:
        usage_error(
            "--force rewrites archives; --to writes none, and copies an image whose tag the "
            "registry already has under the same digest never again: drop --force"
        )
    out_dir, _, oci_layout, split = chosen.outputs
    if split is not None and (out_dir is not None or oci_layout is not None):
        usage_error("--split writes the --bundle alone in volumes: drop -o/--oci-layout")
    if not copying and chosen.uploads:
        given = " and ".join(f"--{name.replace('_', '-')}" for name in chosen.uploads)
        usage_error(f"{given}: only for a copy into a registry (--to REGISTRY)")


class _Run(runs.Run[PullReport]):
    """One pull (or dry run) under its display, from the headline to the report and lock."""

    done = "pulled"
    kept = "verified and partial blobs are kept for the next run"

    def __init__(
        self,
        specs: list[ImageSpec],
        options: PullOptions,
        to: list[Destination],
        dry_run: bool,
        *,
        verbose: bool,
        quiet: bool,
    ) -> None:
        super().__init__(specs, options.platforms, dry_run=dry_run, verbose=verbose, quiet=quiet)
        self.specs = specs
        self.options = options
        self.to = to
        self.have: list[HaveFile] = []

    def headline(self) -> str:
        """``pulling 100 images from 127.0.0.1:5000/team/ (linux/amd64) into bundles``: the
        registry and namespace every image shares are said here once, and left out of rows."""
        platforms, images = runs.platforms_text(self.options), self.images_text()
        prefix = self.display.labels.prefix
        where = f" from {prefix}" if prefix else ""
        if self.dry_run:
            return f"resolving {images}{where} ({platforms}); dry run: no blob is downloaded"
        into = " and ".join(str(destination) for destination in self.to)
        return f"pulling {images}{where} ({platforms}) into {into}"

    def wait(self) -> PullReport | None:
        """The report, or None when the run was interrupted; an output that cannot be one
        (found before any download) is a usage error."""
        try:
            return super().wait()
        except DestinationError as exc:
            usage_error(str(exc))

    def interrupted_report(self, tally: Tally, seconds: float) -> PullReport:
        return results.interrupted_report(self.specs, tally, self.started, seconds)

    async def work(self) -> PullReport:
        """Pull, or only resolve; an interruption writes no archive."""
        if self.dry_run:
            # Manifests already in the store are read from it: a dry run after a pull costs
            # one HEAD per tag.
            return await bulkpull.resolve_images(
                self.specs, self.options, destination=self.to, on_event=self.display.handle
            )
        return await bulkpull.pull_images(
            self.specs, self.to, self.options, on_event=self.display.handle, have=self.have
        )
