"""The per-key rate limit and the failed-authentication limit with two servers on one
database (each with its own limiter state, as two processes have), and what successful calls
cost the shared buckets: a key's calls take its tokens an allowance at a time, and a call
that authenticates never touches its address's failure bucket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from openbailian.services.limits import allowance_for
from openbailian.storage.db import Database
from openbailian.storage.models import RateBucket
from tests.support import LiveServer, make_settings

BODY = {"input": {"prompt": "hi"}}


@pytest.fixture
def two_servers(tmp_path, database_url, request) -> Iterator[tuple[LiveServer, LiveServer]]:
    url = database_url or f"sqlite:///{tmp_path / 'shared.db'}"
    overrides = getattr(request, "param", {})
    first = LiveServer(make_settings(tmp_path / "one", url, **overrides)).start()
    second = LiveServer(make_settings(tmp_path / "two", url, **overrides)).start()
    yield first, second
    second.stop()
    first.stop()


def buckets(server: LiveServer) -> dict[str, float]:
    """The stored rows of rate_buckets: key → tokens as last written."""

    async def read() -> dict[str, float]:
        db = Database(server.settings.resolved_database_url)
        try:
            async with db.session() as session:
                return {row.key: row.tokens for row in await session.scalars(select(RateBucket))}
        finally:
            await db.dispose()

    return asyncio.run(read())


def client_from(server: LiveServer, address: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, transport=httpx.HTTPTransport(local_address=address), timeout=60)


LIMIT = 200  # an allowance of 4 calls per write


@pytest.mark.parametrize("two_servers", [{"rate_limit_per_minute": LIMIT}], indirect=True)
def test_a_keys_limit_holds_across_two_servers_on_one_database(two_servers) -> None:
    assert allowance_for(LIMIT) == 4
    first, second = two_servers
    app_id = first.app()
    auth = first.auth()
    statuses: dict[int, list[int]] = {0: [], 1: []}
    started = time.monotonic()
    while 429 not in statuses[0] or 429 not in statuses[1]:
        assert len(statuses[0]) < 3 * LIMIT, "never limited"
        for n, server in enumerate((first, second)):
            answer = server.http.post(f"/api/v1/apps/{app_id}/completion", json=BODY, headers=auth)
            assert answer.status_code in {200, 429}, answer.text
            statuses[n].append(answer.status_code)
    elapsed = time.monotonic() - started
    answered = (statuses[0] + statuses[1]).count(200)
    # One budget for both (each with its own would have answered twice as many), plus the
    # refill while the calls ran; no allowance is left unspent (both ran dry, calling on).
    assert LIMIT <= answered <= LIMIT + int(elapsed * LIMIT / 60) + 1, (answered, elapsed)
    limited = second.http.post(f"/api/v1/apps/{app_id}/completion", json=BODY, headers=auth)
    assert limited.status_code == 429 and limited.json()["code"] == "Throttling.RateQuota"
    assert int(limited.headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    "two_servers", [{"rate_limit_per_minute": 6000, "auth_failures_per_minute": 3}], indirect=True
)
def test_successful_calls_write_one_allowance_and_no_failure(two_servers) -> None:
    first, second = two_servers
    app_id = first.app()
    for _ in range(20):
        assert first.call(app_id, BODY).status_code == 200
    stored = buckets(first)
    # Twenty calls, one write: the process took an allowance of 100 tokens and spent 20 of them.
    assert allowance_for(6000) == 100
    assert [tokens for key, tokens in stored.items() if key.startswith("key:")] == [5900.0]
    assert not [key for key in stored if key.startswith("auth:")], stored  # successes never count

    # Failures do count, and the other server refuses the address too (before the good key).
    with client_from(first, "127.0.0.2") as attacker, client_from(second, "127.0.0.2") as same_elsewhere, \
            client_from(second, "127.0.0.3") as neighbour:
        for guess in ("sk-guess-1", "sk-guess-2", "sk-guess-3"):
            refused = attacker.post(f"/api/v1/apps/{app_id}/completion", json=BODY,
                                    headers={"Authorization": f"Bearer {guess}"})
            assert refused.status_code == 401, refused.text
        assert buckets(first)["auth:127.0.0.2"] < 1
        for headers in (first.auth(), {"Authorization": "Bearer sk-unknown"}, {}):
            limited = same_elsewhere.post(f"/api/v1/apps/{app_id}/completion", json=BODY, headers=headers)
            assert limited.status_code == 429, limited.text
            assert set(limited.json()) == {"code", "message", "request_id"}
        admin = same_elsewhere.get("/manage/v1/workspaces", headers={"Authorization": f"Bearer {first.admin_token}"})
        assert admin.status_code == 429 and admin.json()["code"] == "Throttling.RateQuota", admin.text
        assert neighbour.post(f"/api/v1/apps/{app_id}/completion", json=BODY, headers=first.auth()).status_code == 200
