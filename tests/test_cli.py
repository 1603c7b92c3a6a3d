"""The command line as users run it: a real process, its output and its exit code."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import imagefactory as f
from support.commandline import interrupt_once, run_cli
from support.fakeregistry import FakeRegistry, Faults, Start


async def test_all_pulled_exits_zero_and_summarises_each_image(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    image = f.make_image([f.random_layer(1000)])
    registry.add("x/y", "1", image)
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"# a comment\n\n{host}/x/y:1\n{host}/x/y:1 local/renamed:2\n")

    code, out, err = await run_cli(str(listing), "-o", str(tmp_path / "out"), "--plain-http")

    assert code == 0, err
    assert (tmp_path / "out" / f"127.0.0.1_{host.split(':')[1]}_x_y_1.tar").is_file()
    assert (tmp_path / "out" / "local_renamed_2.tar").is_file()
    assert "2 images: 2 pulled, 0 failed" in out
    assert image.digest[:19] in out


async def test_some_failed_exits_one_and_names_image_and_reason(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    registry.add("x/y", "1", f.make_image([f.random_layer(1000)]))
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/x/y:1\n{host}/x/y:missing\n")

    code, out, err = await run_cli(str(listing), "-o", str(tmp_path / "out"), "--plain-http")

    assert code == 1
    assert f"failed  {host}/x/y:missing" in err
    assert "MANIFEST_UNKNOWN" in err
    assert "2 images: 1 pulled, 1 failed" in out
    assert "Traceback" not in err


async def test_a_bad_line_stops_the_run_before_any_request(start: Start, tmp_path: Path) -> None:
    registry = FakeRegistry()
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/x/y:1\n\n{host}/Upper/Case:1\n")

    code, _, err = await run_cli(str(listing), "-o", str(tmp_path / "out"))

    assert code == 2
    assert f"{listing}:3: invalid reference" in err
    assert "must be lowercase" in err
    assert registry.seen == []


async def test_the_list_can_come_from_stdin(start: Start, tmp_path: Path) -> None:
    registry = FakeRegistry()
    registry.add("x/y", "1", f.make_image([f.random_layer(1000)]))
    host = await start(registry.app())

    code, out, err = await run_cli(
        "-", "-o", str(tmp_path), "--plain-http", stdin=f"{host}/x/y:1\n".encode()
    )

    assert code == 0, err
    assert "1 image: 1 pulled" in out


async def test_usage_errors_exit_two(tmp_path: Path) -> None:
    listing = tmp_path / "images.txt"
    listing.write_text("alpine\n")

    bad_platform = await run_cli(str(listing), "--platform", "linux")
    no_user = await run_cli(str(listing), "--password", "x")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    nothing = await run_cli(str(empty))
    missing_file = await run_cli(str(tmp_path / "nope.txt"))

    for code, _, err in (bad_platform, no_user, nothing, missing_file):
        assert code == 2, err
        assert "Traceback" not in err
    assert "needs --username" in no_user[2]
    assert "no images listed" in nothing[2]


async def test_the_password_never_appears_in_output(start: Start, tmp_path: Path) -> None:
    registry = FakeRegistry(auth="bearer", username="alice", password="pa55-word-xyz")
    registry.add("x/y", "1", f.make_image([f.random_layer(1000)]))
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/x/y:1\n{host}/x/y:2\n")

    code, out, err = await run_cli(
        str(listing),
        "-o",
        str(tmp_path),
        "--plain-http",
        "-v",
        "-u",
        "alice",
        "--password-stdin",
        stdin=b"pa55-word-xyz\n",
    )

    assert code == 1
    assert "pa55-word-xyz" not in out + err
    assert not any(token in out + err for token in registry.tokens)


async def test_a_username_without_a_password_asks_for_it_on_the_terminal(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry(auth="bearer", username="alice", password="pa55-word-xyz")
    registry.add("x/y", "1", f.make_image([f.random_layer(1000)]))
    host = await start(registry.app())
    leader, follower = os.openpty()
    args = ["-i", f"{host}/x/y:1", "-o", str(tmp_path), "--plain-http", "-u", "alice"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bulkpull", *args, stdin=follower, stdout=follower, stderr=follower
    )
    os.close(follower)

    asked = await asyncio.to_thread(read_until, leader, b"Password for alice: ")
    os.write(leader, b"pa55-word-xyz\n")
    rest = await asyncio.to_thread(read_until, leader, b"1 image: ")
    code = await asyncio.wait_for(process.wait(), 60)
    os.close(leader)

    assert asked.endswith(b"Password for alice: ")
    assert code == 0, rest.decode(errors="replace")
    assert b"pa55-word-xyz" not in rest


def read_until(fd: int, wanted: bytes, limit: int = 1 << 20) -> bytes:
    """What a terminal shows until ``wanted`` appears (or the program closes it)."""
    seen = b""
    while wanted not in seen and len(seen) < limit:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the other side of the terminal closed
            break
        if not chunk:
            break
        seen += chunk
    return seen


async def test_images_named_with_i_need_no_list_file(start: Start, tmp_path: Path) -> None:
    registry = FakeRegistry()
    for name in ("a", "b"):
        registry.add(f"x/{name}", "1", f.make_image([f.random_layer(1000)], label=name))
    host = await start(registry.app())

    code, out, err = await run_cli(
        "-i", f"{host}/x/a:1", "--image", f"{host}/x/b:1", "-o", str(tmp_path)
    )

    assert code == 0, err
    assert "2 images: 2 pulled, 0 failed" in out
    port = host.split(":")[1]
    assert {p.name for p in tmp_path.glob("*.tar")} == {
        f"127.0.0.1_{port}_x_a_1.tar",
        f"127.0.0.1_{port}_x_b_1.tar",
    }


async def test_a_list_file_and_i_images_are_pulled_together_in_that_order(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    for name in ("a", "b"):
        registry.add(f"x/{name}", "1", f.make_image([f.random_layer(1000)], label=name))
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/x/a:1\n")
    report_file = tmp_path / "report.json"

    code, _, err = await run_cli(
        str(listing), "-i", f"{host}/x/b:1", "-o", str(tmp_path), "--report", str(report_file)
    )

    assert code == 0, err
    images = json.loads(report_file.read_text())["images"]
    assert [(image["name"], image["origin"]) for image in images] == [
        (f"{host}/x/a:1", f"{listing}:1"),
        (f"{host}/x/b:1", "--image"),
    ]


async def test_an_image_listed_again_and_given_with_i_is_pulled_once_into_its_archive(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    image = f.make_image([f.random_layer(1000)])
    registry.add("x/y", "1", image)
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/x/y:1\n{host}/x/y:1  # again\n")

    code, out, err = await run_cli(str(listing), "-i", f"{host}/x/y:1", "-o", str(tmp_path / "out"))

    assert code == 0, err
    assert "1 image: 1 pulled, 0 failed" in out
    assert [path.name for path in (tmp_path / "out").iterdir()] == [
        f"127.0.0.1_{host.split(':')[1]}_x_y_1.tar"
    ]
    assert registry.count("GET", f"/blobs/{image.layers[0].digest}") == 1


async def test_an_output_path_with_control_characters_is_shown_escaped(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    registry.add("x/y", "1", f.make_image([f.random_layer(1000)]))
    host = await start(registry.app())
    out_dir, report = tmp_path / "out\x1b[2J", tmp_path / "report\x1b[2J.json"

    code, out, err = await run_cli(
        "-i", f"{host}/x/y:1", "-o", str(out_dir), "--report", str(report)
    )

    assert code == 0, err
    assert "\x1b" not in out + err
    assert f"{tmp_path}/out\\x1b[2J/127.0.0.1_" in out
    assert f"into {tmp_path}/out\\x1b[2J" in err
    assert f"report written to {tmp_path}/report\\x1b[2J.json" in out


async def test_pull_may_be_named_as_a_command(start: Start, tmp_path: Path) -> None:
    registry = FakeRegistry()
    registry.add("x/y", "1", f.make_image([f.random_layer(1000)]))
    host = await start(registry.app())

    code, out, err = await run_cli("pull", "-i", f"{host}/x/y:1", "-o", str(tmp_path))

    assert code == 0, err
    assert "1 image: 1 pulled" in out


async def test_an_image_given_as_the_list_file_gets_a_hint_to_use_i(tmp_path: Path) -> None:
    code, _, err = await run_cli("127.0.0.1:5000/small/web:1.0")

    assert code == 2
    assert err == (
        "bulkpull: 127.0.0.1:5000/small/web:1.0: cannot read: No such file or directory; to pull "
        "the image 127.0.0.1:5000/small/web:1.0, use: bulkpull -i 127.0.0.1:5000/small/web:1.0\n"
    )


async def test_a_missing_list_file_is_named_without_a_line_number(tmp_path: Path) -> None:
    code, _, err = await run_cli(str(tmp_path / "images.txt"))

    assert code == 2
    assert err == f"bulkpull: {tmp_path / 'images.txt'}: cannot read: No such file or directory\n"


async def test_nothing_to_pull_is_a_usage_error_that_says_what_to_give() -> None:
    code, _, err = await run_cli("-o", "out")

    assert code == 2
    assert "give an image list file (IMAGES_FILE, or - for stdin) or -i REF" in err


async def test_a_bad_i_reference_is_a_usage_error_naming_the_flag() -> None:
    code, _, err = await run_cli("-i", "Upper/Case:1")

    assert code == 2
    assert err.startswith("bulkpull: --image: invalid reference 'Upper/Case:1'")


async def test_help_names_every_command_in_its_usage_lines() -> None:
    code, out, _ = await run_cli("--help")

    assert code == 0
    assert out.startswith(
        "Usage: bulkpull [pull] [OPTIONS] [IMAGES_FILE]\n"
        "   or: bulkpull push [OPTIONS] SOURCE...\n"
        "   or: bulkpull verify [OPTIONS] [PATH...]\n"
    )
    assert re.search(r"^  verify  ", out, re.MULTILINE)
    assert re.search(r"^  push  ", out, re.MULTILINE)
    assert "{" not in out
    assert not re.search(r"<(str|list|Path)", out)


async def test_help_says_every_platform_is_platform_all() -> None:
    code, out, _ = await run_cli("--help")

    assert code == 0
    platform = " ".join(out.split()).partition("--platform OS/ARCH[/VARIANT] ")[2]
    assert "or all for every platform of an index" in platform.split("[env var")[0]


async def test_verify_help_lists_its_arguments_without_type_labels() -> None:
    code, out, _ = await run_cli("verify", "--help")

    assert code == 0
    assert out.startswith("Usage: bulkpull verify [OPTIONS] [PATH...]\n")
    assert "<" not in out


async def test_a_mistyped_command_is_named_with_the_one_meant(tmp_path: Path) -> None:
    code, _, err = await run_cli("verfy", str(tmp_path / "x.tar"))

    assert code == 2
    assert "No such command 'verfy'. Did you mean 'verify'?" in err


async def test_a_list_file_named_like_a_command_is_still_a_list(tmp_path: Path) -> None:
    (tmp_path / "verfy").write_text("# nothing\n")

    code, _, err = await run_cli(str(tmp_path / "verfy"))

    assert code == 2
    assert "no images listed" in err


async def test_closed_standard_input_is_a_usage_error_not_a_traceback() -> None:
    process = await asyncio.create_subprocess_exec(
        "sh",
        "-c",
        f'exec "{sys.executable}" -m bulkpull - <&-',
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()

    assert process.returncode == 2
    assert err.decode() == "bulkpull: <stdin>: cannot read: standard input is closed\n"


async def test_a_byte_order_mark_on_standard_input_is_ignored(start: Start, tmp_path: Path) -> None:
    registry = FakeRegistry()
    registry.add("x/y", "1", f.make_image([f.random_layer(1000)]))
    host = await start(registry.app())

    code, out, err = await run_cli("-", "-o", str(tmp_path), stdin=f"\ufeff{host}/x/y:1\n".encode())

    assert code == 0, err
    assert "1 image: 1 pulled" in out


@pytest.mark.parametrize(
    ("lines", "flags"),
    [
        pytest.param(
            [
                "127.0.0.1:1/multi/app:oci platform=linux/amd64,linux/arm64",
                "127.0.0.1:1/other/app:1 127.0.0.1:1/multi/app:oci_linux_amd64",
            ],
            [],
            id="platforms-on-the-line",
        ),
        pytest.param(
            [
                "127.0.0.1:1/multi/app:oci",
                "127.0.0.1:1/other/app:1 127.0.0.1:1/multi/app:oci_linux_arm64",
            ],
            ["--platform", "linux/amd64", "--platform", "linux/arm64"],
            id="platforms-for-the-run",
        ),
    ],
)
async def test_two_lines_that_would_write_one_archive_stop_the_run_before_any_request(
    tmp_path: Path, lines: list[str], flags: list[str]
) -> None:
    listing = tmp_path / "images.txt"
    listing.write_text("\n".join(lines) + "\n")

    code, _, err = await run_cli(str(listing), "-o", str(tmp_path / "out"), *flags)

    assert code == 2
    assert f"bulkpull: {listing}:2: 127.0.0.1:1/multi/app:oci_linux_" in err
    assert "the archive of line 1" in err
    assert not (tmp_path / "out").exists()


async def test_a_flag_wins_over_its_environment_variable(start: Start, tmp_path: Path) -> None:
    registry = FakeRegistry()
    registry.add("x/y", "1", f.make_image([f.random_layer(1000)]))
    host = await start(registry.app())
    env = {"BULKPULL_JOBS": "0"}

    refused = await run_cli("-i", f"{host}/x/y:1", "-o", str(tmp_path), env=env)
    flagged = await run_cli("-i", f"{host}/x/y:1", "-o", str(tmp_path), "-j", "2", env=env)

    assert refused[0] == 2
    assert refused[2] == "bulkpull: BULKPULL_JOBS='0': must be at least 1\n"
    assert flagged[0] == 0, flagged[2]


async def test_an_interrupted_run_writes_its_report_with_unfinished_images_interrupted(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    registry.add("x/quick", "1", f.make_image([f.random_layer(1000)]))
    slow = f.random_layer(8 * 1024 * 1024)
    registry.add("x/slow", "1", f.make_image([slow]))
    registry.faults[slow.digest] = Faults(chunk_delay=0.2)
    host = await start(registry.app())
    report_file = tmp_path / "report.json"
    images = ["-i", f"{host}/x/quick:1", "-i", f"{host}/x/slow:1"]
    code, out, err = await interrupt_once(
        *images, "-o", str(tmp_path / "out"), "--report", str(report_file), printed=b"pulled  "
    )

    assert code == 130, err
    report = json.loads(report_file.read_text())
    assert [image["status"] for image in report["images"]] == ["pulled", "interrupted"]
    assert report["totals"]["interrupted"] == 1
    assert f"report written to {report_file}" in out


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_start_without_the_http_stack(flag: str) -> None:
    probe = (
        "import sys\n"
        f"sys.argv = ['bulkpull', {flag!r}]\n"
        "from bulkpull.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('loaded:', sorted(m for m in sys.modules if m.split('.')[0] in "
        "('aiohttp', 'aiohttp_socks')))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)

    assert done.stdout.splitlines()[-1] == "loaded: []"


def test_only_a_run_given_a_key_loads_the_cryptography_library() -> None:
    probe = (
        "import sys\n"
        "import bulkpull.cli, bulkpull.engine.copy, bulkpull.engine.push\n"
        "import bulkpull.engine.verify_registry\n"
        "print('before a key:', 'cryptography' in sys.modules)\n"
        "import bulkpull\n"
        "bulkpull.load_public_key\n"
        "print('with a key:', 'cryptography' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)

    assert done.stdout.splitlines() == ["before a key: False", "with a key: True"]
