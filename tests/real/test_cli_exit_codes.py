"""The CLI's exit codes against a real registry: 1 when an image fails, 2 for a bad list line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.archives import normalize_tagged, read_archives
from support.services import run
from support.testimages import PushedImages

pytestmark = pytest.mark.real


def _pull(command: list[str], lines: list[str], workdir: Path) -> tuple[str, int, Path]:
    list_file = workdir / "images.txt"
    list_file.write_text("".join(f"{line}\n" for line in lines))
    out_dir = workdir / "out"
    argv = [*command, str(list_file), "-o", str(out_dir), "--plain-http"]
    result = run(argv, check=False, timeout=300)
    output = (result.stdout + result.stderr).decode(errors="replace")
    return f"$ {' '.join(argv)}\n{output}", result.returncode, out_dir


def test_missing_image_fails_the_run_but_not_the_others(
    pushed_images: PushedImages, bulkpull_command: list[str], tmp_path: Path
) -> None:
    good = pushed_images.shared_oci_a
    missing = f"{pushed_images.registry.host}/bp/does-not-exist:nope"
    transcript, code, out_dir = _pull(bulkpull_command, [missing, good.reference], tmp_path)
    assert code == 1, transcript
    archives = read_archives(out_dir)
    assert [archive.normalized_repo_tags for archive in archives] == [
        {normalize_tagged(good.reference)}
    ], transcript
    assert "does-not-exist" in transcript


def test_bad_list_line_is_a_usage_error_before_any_pull(
    pushed_images: PushedImages, bulkpull_command: list[str], tmp_path: Path
) -> None:
    good = pushed_images.shared_oci_a.reference
    log_start = pushed_images.registry.log_offset()
    transcript, code, out_dir = _pull(bulkpull_command, [good, "Not//A Valid:ref!"], tmp_path)
    assert code == 2, transcript
    assert "images.txt:2" in transcript
    assert not out_dir.exists() or read_archives(out_dir) == [], transcript
    time.sleep(0.2)  # the registry logs a request just after answering it
    assert pushed_images.registry.requests(log_start) == [], "the registry was contacted"
