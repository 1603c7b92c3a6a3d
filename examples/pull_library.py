"""Pull images from your own asyncio code and act on each result as it arrives.

python examples/pull_library.py alpine:3.20 busybox:1.36 --out-dir bundles/
"""

from __future__ import annotations

import argparse
import asyncio

import bulkpull


def show(event: bulkpull.Event) -> None:
    """Called for every progress event; this example reports finished images only."""
    if not isinstance(event, bulkpull.ImageDone):
        return
    result = event.result
    if result.error is not None:
        print(f"failed {result.spec.source}: {result.error}")
    else:
        print(f"pulled {result.spec.target} {result.manifest_digest} -> {result.archive}")


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("images", nargs="+")
    parser.add_argument("--out-dir", default="bundles")
    parser.add_argument("--platform", default="linux/amd64")
    args = parser.parse_args()

    options = bulkpull.PullOptions(
        platform=bulkpull.Platform.parse(args.platform),
        max_downloads=8,
        retry=bulkpull.RetryPolicy(retries=5, delay=1.0),
    )
    specs = [bulkpull.image_spec(image) for image in args.images]
    report = await bulkpull.pull_images(specs, args.out_dir, options, on_event=show)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
