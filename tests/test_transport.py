"""Transport behaviour that a whole pull does not isolate: throttling, Retry-After, redaction."""

from __future__ import annotations

import email.utils

import imagefactory as f
import pytest
from conftest import Start
from fakeregistry import FakeRegistry, Faults

from bulkpull import RegistryError, RetryPolicy, TransportError
from bulkpull.transport import Transport, open_session, parse_retry_after, redact


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        (" 30 ", 30.0),
        ("soon", None),
        (email.utils.formatdate(1_000_060, usegmt=True), 60.0),
        (email.utils.formatdate(999_000, usegmt=True), None),
    ],
)
def test_retry_after_accepts_seconds_or_a_future_http_date(
    header: str | None, expected: float | None
) -> None:
    assert parse_retry_after(header, now=1_000_000) == expected


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@registry.example/v2/", "https://registry.example/v2/"),
        ("https://cdn.example/blob?X-Amz-Signature=abc&t=1", "https://cdn.example/blob"),
        ("http://127.0.0.1:5000/v2/x/manifests/1", "http://127.0.0.1:5000/v2/x/manifests/1"),
    ],
)
def test_urls_in_messages_carry_no_credentials_or_signatures(url: str, shown: str) -> None:
    assert redact(url) == shown


async def test_a_429_pauses_requests_to_that_registry_for_every_caller(start: Start) -> None:
    registry = FakeRegistry()
    image = f.make_image([f.random_layer(100), f.random_layer(100)])
    registry.add("x/y", "1", image)
    first, second = (layer.digest for layer in image.layers)
    registry.faults[first] = Faults(statuses=[429], retry_after="1")
    host = await start(registry.app())

    async with open_session(timeout=5, connections=4) as session:
        transport = Transport(session, retry=RetryPolicy(retries=0), plain_http=True)
        with pytest.raises(RegistryError) as throttled:
            async with transport.request("GET", host, "x/y", f"/v2/x/y/blobs/{first}"):
                pass
        async with transport.request("GET", host, "x/y", f"/v2/x/y/blobs/{second}") as response:
            assert response.status == 200

    assert throttled.value.status == 429
    assert throttled.value.retry_after == 1.0
    refused, other = (s for s in registry.seen if "/blobs/" in s.path)
    # The other caller's request reached the registry only after the pause it asked for.
    assert other.at - refused.at >= 0.9


async def test_an_unreachable_registry_is_a_transport_error_naming_the_url() -> None:
    async with open_session(timeout=2, connections=1) as session:
        transport = Transport(session, retry=RetryPolicy(retries=0), plain_http=True)
        with pytest.raises(TransportError) as caught:
            async with transport.request("GET", "127.0.0.1:9", "x/y", "/v2/x/y/manifests/1"):
                pass
    assert "http://127.0.0.1:9/v2/" in str(caught.value)
