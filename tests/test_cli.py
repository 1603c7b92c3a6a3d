"""The command line as users run it: a real process, its output and its exit code."""

from __future__ import annotations

from pathlib import Path

import imagefactory as f
from commandline import run_cli
from conftest import Start
from fakeregistry import FakeRegistry


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
