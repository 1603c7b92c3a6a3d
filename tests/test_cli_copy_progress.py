"""What a person sees while ``bulkpull LIST --to`` copies: live bars and rows on a real
terminal (tmux), then the summary table; the source serves its blobs slowly enough to catch
the display mid-run. Without tmux the test skips; under ``CI=true`` it fails instead."""

from __future__ import annotations

import re
from pathlib import Path

from support.fakeregistry import FakeRegistry, Start
from support.fakeupload import FakeUploads
from support.terminal import OpenPane, slow_registry


async def test_a_terminal_shows_live_bars_while_copying_then_a_summary_table(
    start: Start, tmp_path: Path, terminal: OpenPane
) -> None:
    host, listing = await slow_registry(start, tmp_path)
    uploads = FakeUploads(FakeRegistry(), tmp_path / "target")
    target = await start(uploads.app())

    to = f"{target}/mirror"
    pane = await terminal(str(listing), "--to", to, "--cache", "store", "--state-dir", "state")
    during = await pane.wait_for(lambda screen: "uploading" in screen and "MiB/s" in screen)
    status = await pane.wait_for_exit()
    after = await pane.screen()

    assert status == 0, after
    assert f"copying 3 images (linux/amd64) to {to}" in during
    assert "of 3 images" in during
    assert "━" in during
    assert re.search(r"^app\d:1 +\d/3 blobs +\d\.\d/\d\.\d MiB .*uploading", during, re.M), during
    assert re.search(r"MiB / \d\.\d MiB", during), during
    assert re.search(r"status\s+image\s+digest\s+size\s+target or error", after), after
    assert re.search(
        rf"pushed +{host}/team/app2:1 +sha256:\w{{12}} +3\.0 MiB +{to}/team/app2:1", after
    )
    assert "3 images: 3 pushed, 0 failed" in after
    # Three images of 3 MiB sharing 1 MiB: 7 MiB sent, the shared layer once, mounted twice.
    assert f"7.0 MiB sent to {to}; 7 blobs uploaded, 2 mounted" in after
