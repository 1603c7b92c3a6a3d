"""``bulkpull push SOURCE... --to REGISTRY[/NAMESPACE]``: archives, bundles and OCI layouts into
a registry, every digest kept, with the progress, summary and exit codes of a pull.

The flow: options (the pull's registry flags, ``inputs``), the plan (which image goes where,
refused with exit 2 before any request when a source cannot be pushed), a headline, the run
under a display, the summary, then ``--report``. Ctrl-C and SIGTERM stop the run: each upload
under way is kept in the state directory, so the next run resumes it. Imports the public
``bulkpull`` API, typer and its siblings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

import bulkpull
from bulkpull import InvalidOptionError, PushOptions, PushPlan, PushReport, SourceError
from bulkpull.cli import flags, inputs, results, runs
from bulkpull.cli.commands import usage_error
from bulkpull.cli.tally import Tally
from bulkpull.cli.text import count_text

SUMMARY = "Push archives, bundles and OCI layouts into a registry, digests intact."
EXAMPLES = """\b
Examples:
  bulkpull push offline.tar --to registry.internal:5000/mirror
  bulkpull push bundles/*.tar layout/ --to registry.internal:5000/mirror --dry-run
  bulkpull push layout/ --to 127.0.0.1:5000 --plain-http --report push.json

\b
docker.io/library/alpine:3.20 goes to REGISTRY/NAMESPACE/library/alpine:3.20; an image
whose name already names REGISTRY keeps its path.
Exit codes: 0 all pushed, 1 some failed, 2 usage error, 130 interrupted."""

Sources = Annotated[
    list[Path],
    typer.Argument(
        metavar="SOURCE...",
        show_default=False,
        help="Archives (per-image or bundles), OCI archives and OCI layout directories: "
        "anything with an index.json; a bundle split with --split as FILE.001 or "
        "FILE.sha256 (its volumes are read as they are, checked against the list first).",
    ),
]
To = Annotated[
    str,
    typer.Option(
        "--to",
        metavar="REGISTRY[/NAMESPACE]",
        show_default=False,
        help="The registry to push to, and a namespace in it for images named elsewhere.",
    ),
]
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Ask the registry what it lacks (images, blobs, bytes); write nothing.",
    ),
]


def push(
    sources: Sources,
    to: To,
    jobs: flags.Jobs = None,
    max_uploads: flags.MaxUploads = None,
    plain_http: flags.PlainHttp = False,
    skip_tls_verify: flags.SkipTlsVerify = False,
    username: flags.Username = None,
    password: flags.Password = None,
    password_stdin: flags.PasswordStdin = False,
    creds: flags.Creds = None,
    proxy: flags.Proxy = None,
    ca_cert: flags.CaCert = None,
    insecure_registry: flags.InsecureRegistries = None,
    retries: flags.Retries = None,
    retry_delay: flags.RetryDelay = None,
    timeout: flags.Timeout = None,
    state_dir: flags.StateDir = None,
    no_referrers: flags.NoReferrers = False,
    referrers_type: flags.ReferrersType = None,
    dry_run: DryRun = False,
    report_file: flags.ReportFile = None,
    verbose: flags.Verbose = False,
    quiet: flags.Quiet = False,
    version: flags.Version = False,
) -> None:
    """Push every image of every SOURCE to the registry --to names, byte for byte: manifests
    and indexes keep their digests, blobs the registry has are skipped, shared ones mounted,
    and an upload cut off resumes (in the next run too). The signatures, SBOMs and
    attestations a bundle or layout carries follow their images."""
    login = inputs.keychain(username, password, password_stdin, creds or [], list_on_stdin=False)
    base = inputs.pull_options(
        **inputs.network_flags(
            plain_http, skip_tls_verify, proxy, ca_cert, insecure_registry, timeout
        ),
        **inputs.referrer_flags(no_referrers, referrers_type, None),
        **inputs.retry_flags(retries, retry_delay),
        credentials=login,
        jobs=jobs,
    )
    own: dict[str, Any] = {"max_uploads": max_uploads, "state_dir": state_dir}
    try:
        options = PushOptions.from_environment(
            pull=base, **{name: value for name, value in own.items() if value is not None}
        )
        plan = bulkpull.plan_push(sources, to)
    except (SourceError, InvalidOptionError) as exc:
        usage_error(str(exc))
    run = _Run(plan, sources, options, dry_run, verbose=verbose, quiet=quiet)
    run.start()
    raise typer.Exit(run.conclude(report_file))


class _Run(runs.Run[PushReport]):
    """One push (or dry run) under its display, from the headline to the report."""

    done = "pushed"
    kept = "unfinished uploads are kept for the next run"

    def __init__(
        self,
        plan: PushPlan,
        sources: list[Path],
        options: PushOptions,
        dry_run: bool,
        *,
        verbose: bool,
        quiet: bool,
    ) -> None:
        super().__init__(plan.images, (), dry_run=dry_run, verbose=verbose, quiet=quiet)
        self.plan = plan
        self.sources = sources
        self.options = options

    def headline(self) -> str:
        """``pushing 12 images from layout to registry.internal:5000/mirror``."""
        images = count_text(len(self.plan.images), "image")
        where = ", ".join(str(source) for source in self.sources)
        if self.dry_run:
            target = self.plan.target
            return f"checking {images} from {where} against {target}; dry run: nothing written"
        return f"pushing {images} from {where} to {self.plan.target}"

    def interrupted_report(self, tally: Tally, seconds: float) -> PushReport:
        images = [(spec, self.plan.source_of(spec)) for spec in self.plan.images]
        target = str(self.plan.target)
        return results.interrupted_push_report(target, images, tally, self.started, seconds)

    async def work(self) -> PushReport:
        """Push; an upload under way when stopped is kept in the state directory."""
        return await bulkpull.push_images(
            self.sources,
            self.plan.target,
            self.options,
            dry_run=self.dry_run,
            on_event=self.display.handle,
        )
