"""Pull images from your own asyncio code, with a progress line drawn from bulkpull's events.

    python examples/pull_library.py alpine:3.20 busybox:1.36 --out-dir bundles/
    python examples/pull_library.py alpine:3.20 busybox:1.36 --bundle offline.tar
    python examples/pull_library.py alpine:3.20 --report report.json --lock images.lock

The callback sees the same events the ``bulkpull`` command draws its bars from: blobs needed
(once per run, however many images share them), bytes received, blobs verified, retries, and
every image's stages and result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import bulkpull


class ProgressLine:
    """Bytes done of bytes to download, rewritten in place on a terminal; results above it."""

    def __init__(self) -> None:
        self.sizes: dict[bulkpull.Digest, int] = {}
        self.received: dict[bulkpull.Digest, int] = {}
        self.in_place = sys.stderr.isatty()

    def __call__(self, event: bulkpull.Event) -> None:
        if isinstance(event, bulkpull.BlobNeeded) and not event.present:
            self.sizes[event.digest] = event.size
        elif isinstance(event, bulkpull.BytesReceived):
            self.received[event.digest] = self.received.get(event.digest, 0) + event.count
            self.draw()
        elif isinstance(event, bulkpull.BlobDone) and event.digest in self.sizes:
            self.received[event.digest] = self.sizes[event.digest]
            self.draw()
        elif isinstance(event, bulkpull.ImageStage) and event.stage is bulkpull.Stage.DOWNLOADING:
            self.say(f"{event.spec.source}: downloading {len(event.blobs)} blobs")
        elif isinstance(event, bulkpull.Retrying):
            what = event.spec.source if event.spec else f"blob {event.digest}"
            tries = f"try {event.attempt} of {event.attempts} failed"
            self.say(f"{what}: retrying in {event.delay:.1f} s ({tries}): {event.error}")
        elif isinstance(event, bulkpull.ImageDone):
            self.say(describe(event.result))

    def draw(self) -> None:
        done = sum(min(self.received.get(d, 0), size) for d, size in self.sizes.items())
        total = sum(self.sizes.values())
        if self.in_place:
            print(f"\r{done / 2**20:8.1f} / {total / 2**20:.1f} MiB", end="", file=sys.stderr)

    def say(self, text: str) -> None:
        print(("\r\033[K" if self.in_place else "") + text, file=sys.stderr)


def describe(result: bulkpull.ImageResult) -> str:
    if result.error is not None:
        return f"failed {result.spec.source}: {result.error}"
    return f"{result.status} {result.spec.target} {result.manifest_digest} -> {result.archive}"


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("images", nargs="+")
    parser.add_argument("--out-dir", default="bundles", help="one archive per image here")
    parser.add_argument("--bundle", type=Path, help="every image in this one archive instead")
    parser.add_argument("--platform", default="linux/amd64")
    parser.add_argument("--report", type=Path, help="write the JSON report here")
    parser.add_argument("--lock", type=Path, help="write a lock file (an image list) here")
    args = parser.parse_args()

    # Proxies, logins and BULKPULL_* from the environment, as the bulkpull command reads them.
    options = bulkpull.PullOptions.from_environment(
        platforms=bulkpull.parse_platforms(args.platform),
        retry=bulkpull.RetryPolicy(retries=5, delay=1.0),
    )
    specs = [bulkpull.image_spec(image) for image in args.images]
    to = bulkpull.Destination.bundle(args.bundle) if args.bundle else args.out_dir
    report = await bulkpull.pull_images(specs, to, options, on_event=ProgressLine())
    print(f"{len(report.results) - len(report.failed)} pulled, {len(report.failed)} failed")
    if args.report:
        args.report.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    if args.lock:
        args.lock.write_text("\n".join(report.lock_lines()) + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
