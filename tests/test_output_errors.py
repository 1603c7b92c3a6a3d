"""Files that cannot be used end their own image, never the run; outputs that cannot be are
usage errors before the first request.

Each test runs the command line as users do: the run must print its summary, write its report
and exit with the documented code, whatever the output directory holds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support import imagefactory as f
from support.commandline import run_cli
from support.fakeregistry import FakeRegistry, Start


class Served:
    """A fake registry with two small images, ``x/good:1`` and ``x/other:1``."""

    def __init__(self, registry: FakeRegistry, host: str) -> None:
        self.registry = registry
        self.host = host
        self.good = f.make_image([f.random_layer(2000)], label="good")
        self.other = f.make_image([f.random_layer(2000)], label="other")
        registry.add("x/good", "1", self.good)
        registry.add("x/other", "1", self.other)

    def archive(self, out: Path, repository: str) -> Path:
        return out / f"127.0.0.1_{self.host.split(':')[1]}_{repository.replace('/', '_')}_1.tar"


@pytest.fixture
async def served(start: Start) -> Served:
    registry = FakeRegistry()
    return Served(registry, await start(registry.app()))


def listing(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "images.txt"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


async def test_a_layer_descriptor_of_size_zero_fails_its_image_and_the_run_still_reports(
    served: Served, tmp_path: Path
) -> None:
    layer = f.random_layer(1000)
    image = f.make_image([layer])
    manifest = json.loads(image.manifest)
    manifest["layers"][0]["size"] = 0
    raw = json.dumps(manifest).encode()
    served.registry.put_manifest("x/zero", "1", raw, image.media_type)
    served.registry.blobs.update(image.blobs)
    images = listing(tmp_path, f"{served.host}/x/zero:1", f"{served.host}/x/good:1")
    report = tmp_path / "report.json"

    code, out, err = await run_cli(
        str(images), "-o", str(tmp_path / "out"), "--retry-delay", "0", "--report", str(report)
    )

    assert code == 1, err
    assert "Traceback" not in err
    assert f"failed  {served.host}/x/zero:1" in err
    assert "2 images: 1 pulled, 1 failed" in out
    statuses = [record["status"] for record in json.loads(report.read_text())["images"]]
    assert statuses == ["failed", "pulled"]
    assert served.archive(tmp_path / "out", "x/good").is_file()


async def test_a_store_file_that_cannot_be_used_fails_only_its_image_naming_the_path(
    served: Served, tmp_path: Path
) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    layer_hex = served.good.layers[0].digest.removeprefix("sha256:")
    partial = cache / "sha256" / f"{layer_hex}.partial"
    partial.mkdir(parents=True)  # a directory where the partial file of a layer goes
    images = listing(tmp_path, f"{served.host}/x/good:1", f"{served.host}/x/other:1")
    report = tmp_path / "report.json"

    code, out_text, err = await run_cli(
        str(images), "-o", str(out), "--cache", str(cache), "--report", str(report)
    )

    assert code == 1, err
    assert "Traceback" not in err
    failed, pulled = json.loads(report.read_text())["images"]
    assert failed["error"]["type"] == "OutputError"
    assert str(partial) in failed["error"]["message"]
    assert pulled["status"] == "pulled"
    assert "2 images: 1 pulled, 1 failed" in out_text


NESTED = b"[" * 200_000 + b"]" * 200_000
BAD_INDEXES = {
    "not JSON": (b"{not json", "not JSON"),
    "a list": (b"[]", "not an OCI image index (a JSON array)"),
    "manifests an object": (
        b'{"schemaVersion":2,"manifests":{"x":{}}}',
        '"manifests" must be a list of descriptors, not object',
    ),
    "manifests of numbers": (b'{"manifests":[1]}', '"manifests" must be a list of descriptors'),
    "nested too deep": (NESTED, "not JSON"),
}


@pytest.mark.parametrize(("content", "message"), BAD_INDEXES.values(), ids=BAD_INDEXES.keys())
async def test_a_layout_index_that_is_not_an_oci_index_fails_each_image_and_is_left_alone(
    served: Served, tmp_path: Path, content: bytes, message: str
) -> None:
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_bytes(content)
    images = listing(tmp_path, f"{served.host}/x/good:1", f"{served.host}/x/other:1")
    report = tmp_path / "report.json"

    code, out, err = await run_cli(
        str(images), "--oci-layout", str(layout), "--report", str(report)
    )

    assert code == 1, err
    assert "Traceback" not in err
    records = json.loads(report.read_text())["images"]
    assert [record["status"] for record in records] == ["failed", "failed"]
    for record in records:
        assert record["error"]["message"].startswith(f"{layout / 'index.json'}: {message}")
    assert "2 images: 2 failed" in out
    assert (layout / "index.json").read_bytes() == content
    # Found before any blob is fetched: nothing is added to the layout.
    assert sorted(p.name for p in layout.iterdir()) == ["index.json", "oci-layout"]


async def test_an_output_that_cannot_be_is_a_usage_error_before_any_request(
    served: Served, tmp_path: Path
) -> None:
    images = listing(tmp_path, f"{served.host}/x/good:1")
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    a_directory = tmp_path / "a-directory"
    a_directory.mkdir()
    fifo = tmp_path / "fifo.tar"
    os.mkfifo(fifo)

    runs = {
        "out dir is a file": (("-o", str(a_file)), f"output directory {a_file}: a file is"),
        "layout is a file": (("--oci-layout", str(a_file)), f"OCI layout {a_file}: a file is"),
        "bundle is a directory": (
            ("--bundle", str(a_directory)),
            f"bundle {a_directory} is a directory; name the archive file to write",
        ),
        "bundle is a FIFO": (("--bundle", str(fifo)), f"bundle {fifo} is a FIFO"),
        "bundle name too long": (
            ("--bundle", str(tmp_path / ("b" * 252 + ".tar"))),
            "is 256 bytes long; a file name may have at most 255",
        ),
    }
    for flags, message in runs.values():
        code, _, err = await run_cli(str(images), *flags)

        assert code == 2, (flags, err)
        assert "Traceback" not in err
        assert message in err, err
    assert served.registry.seen == []


async def test_an_archive_name_longer_than_a_file_name_may_be_is_a_usage_error_naming_the_line(
    served: Served, tmp_path: Path
) -> None:
    long_name = "registry.example/" + "a" * 240 + ":1"
    images = listing(tmp_path, f"{served.host}/x/good:1", f"{served.host}/x/other:1 {long_name}")

    code, _, err = await run_cli(str(images), "-o", str(tmp_path / "out"))

    assert code == 2, err
    assert f"{images}:2: the archive name registry.example_aaa" in err
    assert "a file name may have at most 255" in err
    assert served.registry.seen == []
    assert not (tmp_path / "out").exists()
