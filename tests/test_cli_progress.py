"""What a person sees: live bars on a real terminal (tmux), plain lines in pipes, and the polish
around them (help, version, completion, environment variables, one-line errors).

The terminal tests run ``bulkpull`` inside a private tmux server against the in-process fake
registry, whose blobs arrive slowly enough to catch the display mid-run. Without tmux they skip;
under ``CI=true`` they fail instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support import imagefactory as f
from support.commandline import run_cli
from support.fakeregistry import FakeRegistry, Faults, Start
from support.terminal import MIB, OpenPane, slow_registry

TIMESTAMP = re.compile(r"^\d\d:\d\d:\d\d ")


async def test_a_terminal_shows_live_bars_while_pulling_then_a_summary_table(
    start: Start,
    tmp_path: Path,
    terminal: OpenPane,
) -> None:
    host, listing = await slow_registry(start, tmp_path)

    pane = await terminal(str(listing), "-o", "out")
    during = await pane.wait_for(lambda screen: "downloading" in screen and "MiB/s" in screen)
    status = await pane.wait_for_exit()
    after = await pane.screen()

    assert status == 0, after
    assert f"pulling 3 images from {host}/team/" in during
    assert "of 3 images" in during
    assert "━" in during
    assert re.search(r"^app\d:1 +\d/3 blobs +\d\.\d/\d\.\d MiB .*downloading", during, re.M), during
    assert re.search(r"MiB / \d\.\d MiB", during), during
    assert re.search(r"status\s+image\s+digest\s+platform\s+size\s+archive or error", after)
    assert f"{host}/team/app2:1" in after
    assert "3 images: 3 pulled, 0 failed" in after
    # Three images of 3 MiB sharing 1 MiB: 7 MiB downloaded, the shared layer once.
    assert "7.0 MiB downloaded" in after


async def test_a_pipe_gets_timestamped_lines_without_control_characters(
    start: Start, tmp_path: Path
) -> None:
    host, listing = await slow_registry(start, tmp_path, images=2)
    missing = tmp_path / "with-missing.txt"
    missing.write_text(listing.read_text() + f"{host}/team/gone:1\n")

    code, out, err = await run_cli(str(missing), "-o", str(tmp_path / "out"), "-v")

    assert code == 1
    assert "\x1b" not in out + err
    assert "\r" not in out + err
    assert all(TIMESTAMP.match(line) for line in err.splitlines()), err
    assert f"failed  {host}/team/gone:1  GET http://{host}/v2/team/gone/manifests/1: 404" in err
    assert re.search(rf"pulled  {host}/team/app0:1  sha256:[0-9a-f]{{12}}  linux/amd64", err)
    assert "3 images: 2 pulled, 1 failed" in out


async def test_verbose_logs_each_request_and_its_status(start: Start, tmp_path: Path) -> None:
    registry = FakeRegistry()
    image = f.make_image([f.random_layer(1000)])
    registry.add("x/y", "1", image)
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/x/y:1\n")

    code, _, err = await run_cli(str(listing), "-o", str(tmp_path), "--plain-http", "-v")

    assert code == 0, err
    assert f"GET http://{host}/v2/x/y/blobs/{image.layers[0].digest}: 200" in err
    assert "downloading 127.0.0.1" in err


async def test_quiet_prints_failures_and_the_summary_only(start: Start, tmp_path: Path) -> None:
    registry = FakeRegistry()
    registry.add("x/y", "1", f.make_image([f.random_layer(1000)]))
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/x/y:1\n{host}/x/y:2\n")

    code, out, err = await run_cli(str(listing), "-o", str(tmp_path), "--plain-http", "-q")

    assert code == 1
    assert [line.split()[1:3] for line in err.splitlines()] == [["failed", f"{host}/x/y:2"]]
    assert out.splitlines()[0] == "2 images: 1 pulled, 1 failed"
    assert len(out.splitlines()) == 2


async def test_environment_variables_stand_in_for_flags(start: Start, tmp_path: Path) -> None:
    registry = FakeRegistry()
    amd64 = f.make_image([f.random_layer(1000)], arch="amd64")
    arm64 = f.make_image([f.random_layer(1000)], arch="arm64")
    registry.add("x/multi", "1", f.make_index([amd64, arm64]))
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/x/multi:1\n")
    env = {"BULKPULL_OUT_DIR": str(tmp_path / "from-env"), "BULKPULL_PLATFORM": "linux/arm64"}

    code, out, err = await run_cli(str(listing), env=env)

    assert code == 0, err
    assert arm64.digest[:19] in out
    assert (tmp_path / "from-env" / f"127.0.0.1_{host.split(':')[1]}_x_multi_1.tar").is_file()


async def test_help_shows_examples_and_environment_variables() -> None:
    code, out, _ = await run_cli("--help")
    words = " ".join(out.split())  # help is wrapped to the width of the terminal

    assert code == 0
    assert "bulkpull images.txt --dry-run --lock images.lock" in out
    for variable in ("BULKPULL_OUT_DIR", "BULKPULL_JOBS", "BULKPULL_PLATFORM", "BULKPULL_PROXY"):
        assert f"env var: {variable}" in words


async def test_version_needs_no_image_list() -> None:
    code, out, _ = await run_cli("--version")

    assert code == 0
    assert re.fullmatch(r"bulkpull \d+\.\d+\.\d+\S*\n", out)


# verify reads archives, and with --registry a registry: its network flags, none of a pull's.
VERIFY_FLAGS = [
    "--lock",
    "--registry",
    "--inventory",
    "--plain-http",
    "--skip-tls-verify",
    "--username",
    "--password",
    "--password-stdin",
    "--creds",
    "--proxy",
    "--ca-cert",
    "--insecure-registry",
    "--timeout",
    "--verify-key",
    "--help",
]


@pytest.mark.parametrize(
    ("words", "offered"),
    [
        pytest.param("bulkpull --dry", ["--dry-run"], id="a-pull-flag-first"),
        pytest.param("bulkpull -o out --dry", ["--dry-run"], id="a-pull-flag-later"),
        pytest.param("bulkpull ver", ["verify"], id="a-command"),
        pytest.param("bulkpull verify --", VERIFY_FLAGS, id="only-the-flags-of-verify"),
        pytest.param("bulkpull pull --plain", ["--plain-http"], id="a-flag-of-pull-named"),
    ],
)
async def test_shell_completion_offers_commands_and_their_flags(
    words: str, offered: list[str]
) -> None:
    env = {
        "_BULKPULL_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - 1),
    }

    code, out, _ = await run_cli(env=env)

    assert code == 0
    assert out.split() == offered


async def test_an_out_dir_under_a_file_is_a_usage_error_in_one_line_without_traceback(
    tmp_path: Path,
) -> None:
    listing = tmp_path / "images.txt"
    listing.write_text("127.0.0.1:1/x/y:1\n")
    (tmp_path / "file").write_text("")

    code, _, err = await run_cli(str(listing), "-o", str(tmp_path / "file" / "out"), "-q")

    assert code == 2
    assert err.strip().splitlines() == [
        f"bulkpull: output directory {tmp_path / 'file' / 'out'}: a file is in the way of the "
        "directory"
    ]


async def test_a_hundred_images_at_80_columns_keep_rows_apart_and_end_on_one_screen(
    start: Start, tmp_path: Path, terminal: OpenPane
) -> None:
    host, listing = await slow_registry(start, tmp_path, images=100, own=MIB // 2, delay=0.1)
    with listing.open("a") as extra:
        extra.write("".join(f"{host}/team/gone{number}:1\n" for number in range(3)))

    def downloading(screen: str) -> list[str]:
        return re.findall(r"^(app\d+:1) +\d+/3 blobs", screen, re.M)

    pane = await terminal(str(listing), "-o", "out", size=(80, 24))
    during = await pane.wait_for(
        lambda screen: len(downloading(screen)) >= 3 and "MiB / " in screen
    )
    status = await pane.wait_for_exit()
    after = (await pane.screen()).rstrip("\n").splitlines()

    rows = downloading(during)
    assert len(rows) == len(set(rows)), during
    [overall] = [line for line in during.splitlines() if "of 103 images" in line]
    assert "MiB /" in overall  # bytes on the same line as the image count
    assert status == 1
    assert len(after) <= 30, "\n".join(after)
    totals = after.index("103 images: 100 pulled, 3 failed")
    failures = [number for number, line in enumerate(after) if line.startswith("failed  ")]
    assert len(failures) == 3, "\n".join(after)
    assert max(failures) < totals, "\n".join(after)
    assert "100 more images not listed here; --report FILE.json lists every image" in after


async def test_a_retry_shows_on_its_image_row_with_reason_try_and_wait(
    start: Start, tmp_path: Path, terminal: OpenPane
) -> None:
    registry = FakeRegistry()
    image = f.make_image([f.random_layer(1000)])
    registry.add("x/y", "1", image)
    registry.faults[image.layers[0].digest] = Faults(statuses=[503])
    host = await start(registry.app())

    pane = await terminal("-i", f"{host}/x/y:1", "-o", "out", "--retry-delay", "30", size=(120, 24))
    during = await pane.wait_for(lambda screen: "retrying in" in screen)

    [row] = [line for line in during.splitlines() if "retrying in" in line]
    assert re.fullmatch(
        rf"{host}/x/y:1 +\d/2 blobs +\d\.\d/\d\.\d KiB +[━╸╺ ]* *retrying in \d+\.\d s "
        r"\(try 1 of 4 failed\): 503 UNAVAILABLE: injected 503 *",
        row,
    ), during


async def test_a_pipe_announces_each_retry_with_reason_try_and_wait(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    image = f.make_image([f.random_layer(1000)])
    registry.add("x/y", "1", image)
    registry.faults["x/y:1"] = Faults(statuses=[503])
    registry.faults[image.layers[0].digest] = Faults(statuses=[502])
    host = await start(registry.app())

    code, _, err = await run_cli(
        "-i", f"{host}/x/y:1", "-o", str(tmp_path), "--retry-delay", "0.1", "--retries", "2"
    )

    assert code == 0, err
    short = image.layers[0].digest[:19]
    assert re.search(
        rf"retrying {host}/x/y:1 in 0\.\d s \(try 1 of 3 failed\): GET http://{host}/v2/x/y/"
        r"manifests/1: 503",
        err,
    ), err
    assert re.search(
        rf"retrying blob {short} of {host}/x/y:1 in 0\.\d s \(try 1 of 3 failed\): GET .*: 502",
        err,
    ), err
