"""The run as the display's tally follows it: rows that say what each image is doing, and
numbers that agree with each other."""

from __future__ import annotations

from pathlib import Path

from bulkpull import (
    BlobDone,
    BlobNeeded,
    BytesReceived,
    BytesSent,
    Digest,
    Event,
    ImageDone,
    ImageResult,
    ImageStage,
    NotFoundError,
    PushDone,
    PushEvent,
    PushResult,
    PushStatus,
    Retrying,
    Stage,
    Status,
    TransportError,
    image_spec,
)
from bulkpull.cli.tally import Tally

SHARED = Digest.of(b"shared layer")
OWN_A = Digest.of(b"a's layer")
OWN_B = Digest.of(b"b's layer")
A = image_spec("127.0.0.1:5000/x/a:1")
B = image_spec("127.0.0.1:5000/x/b:1")


def tally_of(*events: PushEvent, now: float = 0.0) -> Tally:
    tally = Tally(images=2)
    for event in events:
        tally.apply(event, now)
    return tally


def both_downloading() -> list[Event]:
    return [
        ImageStage(A, Stage.DOWNLOADING, (SHARED, OWN_A)),
        ImageStage(B, Stage.DOWNLOADING, (SHARED, OWN_B)),
        BlobNeeded(OWN_B, 1000, present=False, spec=B),
        BlobNeeded(SHARED, 3000, present=False, spec=B),
        BlobNeeded(OWN_A, 1000, present=False, spec=A),
    ]


def test_an_image_whose_missing_blobs_another_image_downloads_says_it_waits() -> None:
    # A entered downloading first, but B's need started the shared layer's download.
    tally = tally_of(*both_downloading(), BytesReceived(OWN_A, 1000), BlobDone(OWN_A))

    a, b = (tally.row(tally.in_flight[spec], now=0.0) for spec in (A, B))

    assert a.note == "waiting for another image's download"
    assert a.counts == "1/2 blobs  0.9/3.9 KiB"
    assert b.note == "downloading"


def test_a_row_counts_a_blob_whole_only_once_it_is_verified() -> None:
    events = [*both_downloading(), BytesReceived(SHARED, 3000), BytesReceived(OWN_A, 1000)]
    before = tally_of(*events)
    after = tally_of(*events, BlobDone(SHARED), BlobDone(OWN_A))

    row_before = before.row(before.in_flight[A], now=0.0)
    row_after = after.row(after.in_flight[A], now=0.0)

    assert (row_before.blobs_done, row_before.bytes_done) == (0, 3998)
    assert row_before.bytes_done < row_before.bytes_total  # type: ignore[operator]
    assert (row_after.blobs_done, row_after.bytes_done, row_after.bytes_total) == (2, 4000, 4000)


def test_a_blob_retry_shows_on_every_row_waiting_for_it_until_its_wait_is_over() -> None:
    error = TransportError("GET http://127.0.0.1:5000/v2/x/a/blobs/sha256:ab: timed out")
    tally = tally_of(*both_downloading(), Retrying(error, 1, 4, 2.0, digest=SHARED), now=10.0)

    during = [tally.row(tally.in_flight[spec], now=11.0).note for spec in (A, B)]
    after = tally.row(tally.in_flight[A], now=12.5).note

    assert during == ["retrying in 1.0 s (try 1 of 4 failed): timed out"] * 2
    assert after == "downloading"


def test_an_image_retry_shows_on_its_own_row_while_resolving() -> None:
    error = TransportError("GET http://127.0.0.1:5000/v2/: cannot connect: Connection refused")
    tally = tally_of(
        ImageStage(A, Stage.RESOLVING),
        ImageStage(B, Stage.RESOLVING),
        Retrying(error, 2, 4, 4.0, spec=A),
    )

    notes = [row.note for row in tally.rows(now=1.0)]

    assert notes == [
        "retrying in 3.0 s (try 2 of 4 failed): cannot connect: Connection refused",
        "resolving",
    ]


def test_rows_put_the_busiest_first_and_keep_start_order_otherwise() -> None:
    tally = tally_of(
        ImageStage(A, Stage.RESOLVING),
        ImageStage(B, Stage.DOWNLOADING, (OWN_B,)),
        BlobNeeded(OWN_B, 1000, present=False),
    )

    assert [row.stage.spec for row in tally.rows(now=0.0)] == [B, A]


def test_finished_failed_and_pulled_count_images_and_stored_blobs_count_as_reused() -> None:
    failure = NotFoundError("GET", "http://127.0.0.1:5000/v2/x/b/manifests/1", 404)
    tally = tally_of(
        ImageStage(A, Stage.DOWNLOADING, (SHARED,)),
        BlobNeeded(SHARED, 3000, present=True),
        ImageDone(ImageResult(A)),
        ImageDone(ImageResult(B, Status.FAILED, error=failure)),
    )

    assert (tally.finished, tally.failed, tally.pulled, tally.reused) == (2, 1, 1, 3000)
    assert tally.in_flight == {}
    assert tally.overall_fields(0.0, dry_run=False) == ["2 of 2 images (1 failed)"]


def test_a_push_is_told_in_the_same_rows_with_the_words_of_an_upload() -> None:
    tally = tally_of(
        ImageStage(A, Stage.UPLOADING, (SHARED, OWN_A)),
        ImageStage(B, Stage.UPLOADING, (SHARED, OWN_B)),
        BlobNeeded(SHARED, 3000, present=False, spec=B),
        BlobNeeded(OWN_A, 1000, present=False, spec=A),
        BlobNeeded(OWN_B, 1000, present=True, spec=B),
        BytesSent(OWN_A, 1000),
        BlobDone(OWN_A),
        BytesSent(SHARED, 1500),
    )

    a, b = (tally.row(tally.in_flight[spec], now=0.0) for spec in (A, B))

    assert a.note == "waiting for another image's upload"
    assert b.note == "uploading"
    assert b.counts == "0/2 blobs  1.4/3.9 KiB"
    assert tally.overall_fields(0.0, dry_run=False)[1] == "2.4 KiB / 3.9 KiB"


def test_a_pushed_image_is_finished_and_a_checking_one_says_so() -> None:
    pushed = PushResult(A, PushStatus.PUSHED, Path("layout"))
    tally = tally_of(ImageStage(B, Stage.CHECKING), PushDone(pushed))

    assert (tally.finished, tally.pulled) == (1, 1)
    assert [row.note for row in tally.rows(now=0.0)] == ["checking"]
