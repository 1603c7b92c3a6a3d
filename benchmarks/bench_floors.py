"""Floors: what moving the bytes alone costs, without manifests, checks or archive formats.

A floor is a lower bound, not a competitor. Each fetches every distinct blob once with curl:

- ``floor``: ``curl --parallel``, straight to files (the wall-time floor of a pull);
- ``floor-tee``: ``curl URL | tee FILE | openssl dgst -sha256`` (or ``sha256sum``), one blob
  after the other (the CPU floor of downloading, writing and hashing each byte once);
- ``floor-cat``: ``curl --parallel`` into a scratch directory, then ``cat`` of each image's blobs
  into a file of its own, then the scratch directory removed (the floor of one archive per image:
  shared blobs downloaded once, copied into every archive that holds them).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from bench_infra import BenchError, require_tool
from bench_measure import Measurement
from bench_model import Context, Pullable, Route, Tool
from bench_timing import log_file, measured, timing

_SCRATCH = ".blobs"


def _blob_sources(pullables: Sequence[Pullable]) -> dict[str, tuple[str, int]]:
    """Repository to fetch each distinct blob from, and its size, by digest."""
    blobs: dict[str, tuple[str, int]] = {}
    for p in pullables:
        for blob in p.image.blobs:
            blobs.setdefault(blob.digest, (p.repository, blob.size))
    return blobs


def _blob_url(route: Route, repository: str, digest: str) -> str:
    return f"{route.url}/v2/{repository}/blobs/{digest}"


def _file_name(digest: str) -> str:
    return digest.removeprefix("sha256:")


def _curl_parallel(
    ctx: Context, blobs: dict[str, tuple[str, int]], route: Route, into: Path
) -> list[str]:
    """A ``curl --parallel`` command fetching ``blobs`` into ``into``, its config written."""
    config = ctx.workdir / f"curl-{into.name.strip('.')}.cfg"
    config.write_text(
        "".join(
            f'url = "{_blob_url(route, repository, digest)}"\n'
            f'output = "{into / _file_name(digest)}"\n'
            for digest, (repository, _) in blobs.items()
        )
    )
    return [
        require_tool("curl"),
        "--silent",
        "--show-error",
        "--fail",
        "--noproxy",
        "*",
        "--parallel",
        "--parallel-max",
        str(ctx.settings.floor_parallel),
        "--config",
        str(config),
    ]


def _check_sizes(what: str, files: dict[Path, int]) -> None:
    for path, size in files.items():
        if not path.is_file() or path.stat().st_size != size:
            raise BenchError(f"{what}: {path} missing or not {size} bytes")


def _scripted(ctx: Context, route: Route, name: str, lines: Sequence[str]) -> Measurement:
    """``bash`` running ``lines`` (stopping at the first failure, in pipes too), measured."""
    script = ctx.workdir / f"{name}.sh"
    script.write_text("set -euo pipefail\n" + "".join(f"{line}\n" for line in lines))
    command = [require_tool("bash"), str(script)]
    return timing(ctx, route)(lambda: measured(ctx, command, log_file(ctx, name)))


def floor_tool(ctx: Context, pullables: Sequence[Pullable], route: Route) -> Tool:
    """Every distinct blob once, ``curl --parallel``, straight to files."""
    blobs = _blob_sources(pullables)
    log = log_file(ctx, "floor")

    def run(out: Path) -> Measurement:
        command = _curl_parallel(ctx, blobs, route, out)
        return timing(ctx, route)(lambda: measured(ctx, command, log))

    def check(out: Path) -> None:
        _check_sizes("curl floor", {out / _file_name(d): size for d, (_, size) in blobs.items()})

    moved = sum(size for _, size in blobs.values())
    return Tool("floor", f"curl floor -Z{ctx.settings.floor_parallel}", run, check, moved)


HASHERS = {"openssl": ("openssl", "dgst", "-sha256", "-r"), "sha256sum": ("sha256sum",)}
"""Commands that print ``HEX ...`` for the SHA-256 of their input; ``--floor-hash`` chooses."""


def floor_tee_tool(ctx: Context, pullables: Sequence[Pullable], route: Route) -> Tool:
    """Every distinct blob once, ``curl URL | tee FILE | HASHER``, one after the other.

    The hasher is OpenSSL's by default: GNU coreutils' ``sha256sum`` (Debian 12 builds it
    without OpenSSL) does not use the CPU's SHA instructions and takes several times as long as
    the hashing of a Python program (hashlib is OpenSSL's), so it would be no floor.
    """
    blobs = _blob_sources(pullables)
    sums = ctx.workdir / "floor-tee.sha256"
    curl = shlex.join(
        [require_tool("curl"), "--silent", "--show-error", "--fail", "--noproxy", "*"]
    )
    hasher_name = ctx.settings.floor_hasher
    first, *rest = HASHERS[hasher_name]
    hasher = shlex.join([require_tool(first), *rest])

    def run(out: Path) -> Measurement:
        lines = [f": > {shlex.quote(str(sums))}"]
        for digest, (repository, _) in blobs.items():
            url = shlex.quote(_blob_url(route, repository, digest))
            target = shlex.quote(str(out / _file_name(digest)))
            lines.append(f"{curl} {url} | tee {target} | {hasher} >> {shlex.quote(str(sums))}")
        return _scripted(ctx, route, "floor-tee", lines)

    def check(out: Path) -> None:
        _check_sizes("curl|tee floor", {out / _file_name(d): s for d, (_, s) in blobs.items()})
        hashed = {line.split()[0] for line in sums.read_text().splitlines() if line.strip()}
        wrong = sorted(d for d in blobs if _file_name(d) not in hashed)
        if wrong:
            raise BenchError(f"curl|tee floor: {hasher_name} did not print the digests {wrong}")

    moved = sum(size for _, size in blobs.values())
    return Tool("floor-tee", f"curl|tee|{hasher_name}", run, check, moved)


def floor_cat_tool(ctx: Context, pullables: Sequence[Pullable], route: Route) -> Tool:
    """The distinct blobs with ``curl --parallel``, then ``cat`` of each image's into a file.

    The blobs go to a hidden scratch directory, removed at the end: what stays is one file per
    image, of its blobs' size (an archive's size but for a few KiB of headers and JSON).
    """
    blobs = _blob_sources(pullables)

    def run(out: Path) -> Measurement:
        scratch = out / _SCRATCH
        lines = [f"mkdir {shlex.quote(str(scratch))}"]
        lines.append(shlex.join(_curl_parallel(ctx, blobs, route, scratch)))
        for i, p in enumerate(pullables):
            parts = [str(scratch / _file_name(blob.digest)) for blob in p.image.blobs]
            lines.append(f"cat {shlex.join(parts)} > {shlex.quote(str(out / f'{i}.tar'))}")
        lines.append(f"rm -r {shlex.quote(str(scratch))}")
        return _scripted(ctx, route, "floor-cat", lines)

    def check(out: Path) -> None:
        files = {out / f"{i}.tar": p.image.pulled_bytes for i, p in enumerate(pullables)}
        _check_sizes("curl+cat floor", files)
        if (out / _SCRATCH).exists():
            raise BenchError(f"curl+cat floor: {out / _SCRATCH} was not removed")

    moved = sum(size for _, size in blobs.values())
    label = f"curl -Z{ctx.settings.floor_parallel} + cat"
    return Tool("floor-cat", label, run, check, moved)
