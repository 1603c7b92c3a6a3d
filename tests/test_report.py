"""What a run leaves for scripts and for the next run: the ``--report`` JSON, lock files, dry runs,
and the progress events a library caller hears.

The report is checked against the JSON Schema below, which is the README's documentation of it
in machine-readable form (a test keeps the two in step).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from support import imagefactory as f
from support.commandline import run_cli
from support.fakeregistry import FakeRegistry, Faults, Start

import bulkpull
from bulkpull import (
    BlobDone,
    BlobNeeded,
    BytesReceived,
    Destination,
    Event,
    ImageDone,
    ImageStage,
    Stage,
)

README = Path(__file__).parent.parent / "README.md"
Schema = dict[str, Any]


def strict_object(properties: Schema, *, nullable: bool = False) -> Schema:
    """An object with exactly ``properties``, every one of them required."""
    return {
        "type": ["object", "null"] if nullable else "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


DIGEST: Schema = {"type": "string", "pattern": r"^sha256:[0-9a-f]{64}$"}
OPTIONAL_DIGEST: Schema = {**DIGEST, "type": ["string", "null"]}
COUNT: Schema = {"type": "integer", "minimum": 0}
TEXT: Schema = {"type": "string"}
OPTIONAL_TEXT: Schema = {"type": ["string", "null"]}
LAYER = strict_object({"digest": DIGEST, "size": COUNT, "media_type": TEXT})
ERROR = strict_object(
    {"type": TEXT, "code": OPTIONAL_TEXT, "status": {"type": ["integer", "null"]}, "message": TEXT},
    nullable=True,
)
REFERRER = strict_object(
    {
        "type": TEXT,
        "digest": DIGEST,
        "size": COUNT,
        "subject": DIGEST,
        "source": {"enum": ["referrers API", "referrers tag schema", "cosign tag"]},
        "tag": OPTIONAL_TEXT,
    }
)
SKIPPED_REFERRER = strict_object({"digest": DIGEST, "subject": DIGEST, "reason": TEXT})
SIGNATURE = strict_object(
    {
        "image": DIGEST,
        "outcome": TEXT,
        "message": TEXT,
        "key": DIGEST,
        "signature": OPTIONAL_DIGEST,
        "signatures": COUNT,
    },
    nullable=True,
)
IMAGE = strict_object(
    {
        "reference": TEXT,
        "name": TEXT,
        "origin": OPTIONAL_TEXT,
        "status": {"enum": ["pulled", "up-to-date", "resolved", "failed", "interrupted"]},
        "manifest_digest": OPTIONAL_DIGEST,
        "source_digest": OPTIONAL_DIGEST,
        "written_digest": OPTIONAL_DIGEST,
        "narrowed": strict_object({"kept": COUNT, "listed": COUNT}, nullable=True),
        "config_digest": OPTIONAL_DIGEST,
        "platform": {**OPTIONAL_TEXT, "pattern": r"^[a-z0-9]+/[a-z0-9_]+(/\w+)?$"},
        "size": COUNT,
        "layers": {"type": "array", "items": LAYER},
        "archive": OPTIONAL_TEXT,
        "error": ERROR,
        "tries": {"type": ["integer", "null"], "minimum": 1},
        "referrers": {"type": "array", "items": REFERRER},
        "skipped_referrers": {"type": "array", "items": SKIPPED_REFERRER},
        "signature": SIGNATURE,
    }
)
OPTIONAL_COUNT: Schema = {"type": ["integer", "null"], "minimum": 0}
REGISTRY = strict_object(
    {
        "registry": TEXT,
        "manifest_gets": COUNT,
        "manifest_heads": COUNT,
        "pull_limit": strict_object(
            {
                "limit": OPTIONAL_COUNT,
                "remaining": OPTIONAL_COUNT,
                "window_seconds": OPTIONAL_COUNT,
            },
            nullable=True,
        ),
        "rate_limited": {"type": "boolean"},
    }
)
TOTALS = (
    "images",
    "pulled",
    "up-to-date",
    "resolved",
    "failed",
    "interrupted",
    "bytes_downloaded",
    "bytes_reused",
)
REPLACED = strict_object({"name": TEXT, "digest": DIGEST, "archive": TEXT})
REPORT_SCHEMA = strict_object(
    {
        "version": {"const": 1},
        "started": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$"},
        "seconds": {"type": "number", "minimum": 0},
        "totals": strict_object(dict.fromkeys(TOTALS, COUNT)),
        "images": {"type": "array", "items": IMAGE},
        "registries": {"type": "array", "items": REGISTRY},
        "replaced": {"type": "array", "items": REPLACED},
        "delta": strict_object(
            {"have_images": COUNT, "blobs_left_out": COUNT, "bytes_left_out": COUNT},
            nullable=True,
        ),
        "volumes": {"type": "array", "items": TEXT},
    }
)
JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
}


def schema_errors(value: object, schema: Schema, where: str = "$") -> list[str]:
    """Where ``value`` breaks ``schema``: the JSON Schema keywords used above, nothing more."""
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_is(value, name) for name in names):
            return [f"{where}: {value!r} is not of type {types}"]
    errors = []
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str) and not re.search(schema.get("pattern", ""), value):
        errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, int | float) and value < schema.get("minimum", value):
        errors.append(f"{where}: {value} is below {schema['minimum']}")
    if isinstance(value, dict):
        properties: dict[str, Schema] = schema.get("properties", {})
        errors += [
            f"{where}: no {name!r}" for name in schema.get("required", ()) if name not in value
        ]
        if schema.get("additionalProperties") is False:
            errors += [f"{where}: unexpected {name!r}" for name in value if name not in properties]
        for name, sub in properties.items():
            if name in value:
                errors += schema_errors(value[name], sub, f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{where}[{index}]")
    return errors


def _is(value: object, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    return isinstance(value, JSON_TYPES[name])


def property_names(schema: Schema) -> set[str]:
    """Every property name anywhere in ``schema``."""
    names: set[str] = set()
    for name, sub in (schema.get("properties") or {}).items():
        names |= {name} | property_names(sub)
    if isinstance(schema.get("items"), dict):
        names |= property_names(schema["items"])
    return names


def test_the_schema_checker_reports_each_kind_of_violation() -> None:
    schema = strict_object({"n": COUNT, "d": DIGEST, "s": {"enum": ["a"]}, "l": {"items": COUNT}})

    errors = schema_errors({"n": -1, "d": "md5:x", "s": "b", "l": [True], "x": 1}, schema)

    assert errors == [
        "$: unexpected 'x'",
        "$.n: -1 is below 0",
        "$.d: 'md5:x' does not match ^sha256:[0-9a-f]{64}$",
        "$.s: 'b' is not one of ['a']",
        "$.l[0]: True is not of type integer",
    ]
    assert schema_errors({}, schema)[0] == "$: no 'n'"


def test_the_readme_documents_every_report_field() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### `--report FILE.json`") :]
    section = section[: section.index("\n## ", 1)]

    missing = sorted(name for name in property_names(REPORT_SCHEMA) if f"`{name}`" not in section)

    assert missing == []


async def test_the_report_has_one_record_per_image_and_matches_its_schema(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    image = f.make_image([f.random_layer(1000), f.random_layer(2000)])
    registry.add("x/y", "1", image)
    flaky = f.make_image([f.random_layer(1000)])
    registry.add("x/flaky", "1", flaky)
    registry.faults[flaky.layers[0].digest] = Faults(statuses=[503] * 10)
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/x/y:1 local/renamed\n{host}/x/flaky:1\n")
    report_file = tmp_path / "report.json"

    code, out, _ = await run_cli(
        str(listing),
        *("-o", str(tmp_path / "out"), "--retries", "1", "--retry-delay", "0"),
        *("--report", str(report_file)),
    )
    report = json.loads(report_file.read_text())

    assert code == 1
    assert schema_errors(report, REPORT_SCHEMA) == []
    pulled, failed = report["images"]
    assert pulled["reference"] == f"{host}/x/y:1"
    assert pulled["name"] == "docker.io/local/renamed:1"
    assert pulled["origin"] == f"{listing}:1"
    assert pulled["manifest_digest"] == image.digest
    assert pulled["config_digest"] == image.config_digest
    assert [layer["digest"] for layer in pulled["layers"]] == [x.digest for x in image.layers]
    assert pulled["archive"] == str(tmp_path / "out" / "local_renamed_1.tar")
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "UNAVAILABLE"
    assert failed["error"]["status"] == 503
    assert failed["tries"] == 2
    assert report["registries"] == [
        {
            "registry": host,
            "manifest_gets": 2,
            "manifest_heads": 0,
            "pull_limit": None,
            "rate_limited": False,
        }
    ]
    assert report["totals"]["pulled"] == 1
    assert report["totals"]["failed"] == 1
    assert report["totals"]["bytes_downloaded"] >= sum(map(len, image.blobs.values()))
    assert "(after 2 tries)" in out
    assert f"report written to {report_file}" in out


async def test_a_lock_file_is_a_list_with_every_line_pinned(start: Start, tmp_path: Path) -> None:
    registry = FakeRegistry()
    image = f.make_image([f.random_layer(1000)])
    registry.add("x/y", "1", image)
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"# team images\n{host}/x/y:1 local/renamed\n{host}/x/y:gone\n")
    lock = tmp_path / "images.lock"

    code, _, _ = await run_cli(str(listing), "-o", str(tmp_path / "out"), "--lock", str(lock))
    lines = lock.read_text().splitlines()
    specs = bulkpull.read_image_list(lock)

    assert code == 1
    assert lines[0].startswith("# bulkpull lock file")
    assert f"# not pinned (it failed): {host}/x/y:gone" in lines
    assert [line for line in lines if not line.startswith("#")] == [
        f"{host}/x/y:1@{image.digest} docker.io/local/renamed:1",
        f"{host}/x/y:gone",
    ]
    assert [str(spec.target) for spec in specs] == [
        "docker.io/local/renamed:1",
        f"{host}/x/y:gone",
    ]


async def test_pulling_a_lock_file_gives_the_same_images_after_the_tag_moved(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    before = f.make_image([f.random_layer(1000)], label="before")
    registry.add("x/y", "1", before)
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/x/y:1\n")
    lock = tmp_path / "images.lock"
    await run_cli(str(listing), "-o", str(tmp_path / "first"), "--lock", str(lock))
    registry.add("x/y", "1", f.make_image([f.random_layer(1000)], label="after"))

    from_lock = await pulled_digests(lock, tmp_path / "again")
    from_list = await pulled_digests(listing, tmp_path / "moved")

    assert from_lock == [before.digest]
    assert from_list != [before.digest]
    assert (tmp_path / "again" / f"127.0.0.1_{host.split(':')[1]}_x_y_1.tar").is_file()


async def test_a_lock_keeps_the_platforms_the_run_chose_from_an_index(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    amd64 = f.make_image([f.random_layer(1000)], arch="amd64")
    arm64 = f.make_image([f.random_layer(1000)], arch="arm64")
    index = f.make_index([amd64, arm64])
    registry.add("x/multi", "1", index)
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/x/multi:1\n")
    lock = tmp_path / "images.lock"

    await run_cli(str(listing), "--platform", "linux/arm64", "--dry-run", "--lock", str(lock))
    again = await pulled_digests(lock, tmp_path / "out")  # with the default platform

    assert f"{host}/x/multi:1@{index.digest} platform=linux/arm64" in lock.read_text()
    assert again == [arm64.digest]


async def pulled_digests(listing: Path, out_dir: Path) -> list[str]:
    """Pull ``listing`` with the command line; the manifest digests its report names."""
    report = out_dir / "report.json"
    code, _, err = await run_cli(str(listing), "-o", str(out_dir), "--report", str(report))
    assert code == 0, err
    return [image["manifest_digest"] for image in json.loads(report.read_text())["images"]]


async def test_a_dry_run_prints_full_digests_and_sizes_and_downloads_no_blob(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    image = f.make_image([f.random_layer(3000)])
    registry.add("x/y", "1", image)
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/x/y:1\n")
    report_file = tmp_path / "report.json"

    code, out, _ = await run_cli(
        str(listing), "-o", str(tmp_path / "out"), "--dry-run", "--report", str(report_file)
    )
    report = json.loads(report_file.read_text())

    assert code == 0
    assert f"resolved  {host}/x/y:1  {image.digest}  -  " in out
    assert "1 image: 1 resolved, 0 failed" in out
    assert [seen.path for seen in registry.seen if "/blobs/" in seen.path] == []
    assert not (tmp_path / "out").exists()
    assert schema_errors(report, REPORT_SCHEMA) == []
    assert report["images"][0]["status"] == "resolved"
    assert report["images"][0]["size"] == len(image.manifest) + sum(map(len, image.blobs.values()))


async def test_a_dry_run_after_a_pull_asks_the_registry_with_head_only(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    registry.add("x/y", "1", f.make_image([f.random_layer(1000)]))
    host = await start(registry.app())
    listing = tmp_path / "images.txt"
    listing.write_text(f"{host}/x/y:1\n")
    await run_cli(str(listing), "-o", str(tmp_path / "out"))
    registry.seen.clear()

    code, _, err = await run_cli(str(listing), "-o", str(tmp_path / "out"), "--dry-run")

    assert code == 0, err
    assert registry.count("HEAD", "/manifests/1") == 1
    assert registry.count("GET", "/manifests/1") == 0


async def test_progress_events_count_a_shared_layer_once_and_finish_every_awaited_blob(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    shared = f.random_layer(5000)
    for name in ("a", "b"):
        registry.add(f"x/{name}", "1", f.make_image([shared, f.random_layer(1000)], label=name))
    host = await start(registry.app())
    events: list[Event] = []

    report = await bulkpull.pull_images(
        [f"{host}/x/a:1", f"{host}/x/b:1"], tmp_path, on_event=events.append
    )

    needs = [event for event in events if isinstance(event, BlobNeeded)]
    needed = [event.digest for event in needs]
    done = {event.digest for event in events if isinstance(event, BlobDone)}
    awaited = {
        digest
        for event in events
        if isinstance(event, ImageStage) and event.stage is Stage.DOWNLOADING
        for digest in event.blobs
    }
    received = sum(event.count for event in events if isinstance(event, BytesReceived))
    assert len(needed) == len(set(needed)) == 5  # two configs, two own layers, one shared
    assert awaited == done == set(needed)
    assert received == report.bytes_downloaded
    assert sum(isinstance(event, ImageDone) for event in events) == 2
    # Each names the image whose need started the download: the shared layer's is one of two.
    assert {event.spec for event in needs} == {result.spec for result in report.results}


async def test_a_bundle_reports_progress_while_downloading_and_results_once_written(
    start: Start, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    registry.add("x/y", "1", f.make_image([f.random_layer(1000)]))
    host = await start(registry.app())
    events: list[Event] = []

    await bulkpull.pull_images(
        [f"{host}/x/y:1"], Destination.bundle(tmp_path / "all.tar"), on_event=events.append
    )

    kinds = [type(event).__name__ for event in events]
    assert kinds[0] == "ImageStage"
    assert "BytesReceived" in kinds
    assert kinds[-1] == "ImageDone"
    assert kinds.count("ImageDone") == 1


def test_an_interrupted_image_is_not_ok_and_is_counted_apart() -> None:
    report = bulkpull.PullReport(
        (
            bulkpull.ImageResult(bulkpull.image_spec("alpine")),
            bulkpull.ImageResult(bulkpull.image_spec("busybox"), bulkpull.Status.INTERRUPTED),
        ),
        started="2026-11-28T03:39:20+00:00",
    )

    totals = report.to_json()["totals"]

    assert not report.ok
    assert report.failed == report.results[1:]
    assert isinstance(totals, dict)
    assert (totals["pulled"], totals["interrupted"], totals["failed"]) == (1, 1, 0)
    assert schema_errors(report.to_json(), REPORT_SCHEMA) == []
