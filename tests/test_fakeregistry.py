"""The fake registry holds its tokens to their scopes, as a real token server's tokens are held:
a test that passes against it cannot be sending one repository's token for another."""

from __future__ import annotations

import aiohttp
from support import imagefactory as f
from support.fakeregistry import FakeRegistry, Start


async def test_a_token_is_good_for_the_repository_it_was_issued_for_only(start: Start) -> None:
    registry = FakeRegistry(auth="bearer")
    image = f.make_image([f.random_layer(100)])
    registry.add("team/a", "1", image)
    registry.add("team/b", "1", image)
    host = await start(registry.app())

    async with aiohttp.ClientSession() as session:
        query = {"service": "fake-registry", "scope": "repository:team/a:pull"}
        async with session.get(f"http://{host}/token", params=query) as answer:
            token = (await answer.json())["token"]
        sent = {"Authorization": f"Bearer {token}"}
        statuses = []
        for repository in ("team/a", "team/b"):
            url = f"http://{host}/v2/{repository}/manifests/1"
            async with session.get(url, headers=sent) as answer:
                statuses.append(answer.status)
        async with session.get(f"http://{host}/v2/", headers=sent) as answer:
            statuses.append(answer.status)

    assert statuses == [200, 401, 200]
