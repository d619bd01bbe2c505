"""Fuzzing the whole HTTP surface against a live server (SQLite, or PostgreSQL when
``OPENBAILIAN_TEST_POSTGRES_URL`` is set): schemathesis generates valid and invalid
requests for every operation of the app's OpenAPI schema, and hand-written bad bodies
(deep nesting, huge numbers, surrogates, NUL, invalid UTF-8, lying Content-Type) go to
every JSON route. The budget is bounded (``FUZZ_EXAMPLES`` per operation and mode).
Passing means: no 5xx at all, and the server still answers afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

from tests.support import POSTGRES_URL, LiveServer, PostgresDatabase, make_settings

FUZZ_EXAMPLES = int(os.environ.get("OPENBAILIAN_FUZZ_EXAMPLES", "4"))

BAD_BODIES: list[tuple[bytes, str]] = [
    (b"[" * 50_000 + b"]" * 50_000, "application/json"),
    (b'{"a":' * 500 + b"1" + b"}" * 500, "application/json"),
    (b'{"n": ' + b"9" * 10_000 + b"}", "application/json"),
    (b'{"n": 1e99999}', "application/json"),
    (b'{"s": "\\ud800", "input": {"prompt": "\\udfff"}}', "application/json"),
    (b'{"s": "a\\u0000b", "name": "\\u0000", "FileId": "\\u0000"}', "application/json"),
    (b'{"s": "\xff\xfe\xed\xa0\x80"}', "application/json"),
    (b'{"input": {"prompt": "\\ud800"}}', "text/plain"),
    (b'{"input": {"prompt": "\\ud800"}}', "application/octet-stream"),
    (b"name=%00&content=%ED%A0%80&x=%FF", "application/x-www-form-urlencoded"),
    (b'{"input": {"prompt": "x"}}', "multipart/form-data; boundary=nope"),
    (b"\x00\x01\x02", "application/json"),
    (b"", "application/json"),
]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    database = PostgresDatabase(POSTGRES_URL) if POSTGRES_URL else None
    url = database.create() if database else None
    live = LiveServer(make_settings(tmp_path_factory.mktemp("fuzz-home"), url)).start()
    yield live
    live.stop()
    if database:
        database.drop()


def auth_headers(server: LiveServer) -> dict[str, str]:
    key = server.key("ws1")
    return {"Authorization": f"Bearer {key}", "x-acs-bearer-token": key}


def seeded_ids(server: LiveServer) -> dict[str, str]:
    """Real ids of ws1, so generated requests also reach the code behind the lookups."""
    headers = auth_headers(server)
    app_id = server.app("ws1")
    memory_id = server.http.post("/manage/v1/memories", json={}, headers=headers).json()["memory_id"]
    base = server.http.post("/manage/v1/knowledge/bases", json={"name": "kb"}, headers=headers).json()
    return {"app_id": app_id, "memory_id": memory_id, "index_id": base["index_id"], "WorkspaceId": "ws1"}


def test_schemathesis_finds_no_server_error(fuzz_server: LiveServer) -> None:
    server = fuzz_server
    headers = auth_headers(server)
    ids = seeded_ids(server)
    schema = schemathesis.openapi.from_dict(server.http.get("/openapi.json").json())
    failures: list[str] = []
    operations = 0
    sent: list[int] = []
    session = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        known = {p.name: ids[p.name] for p in operation.path_parameters if p.name in ids}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=known or None)

            @settings(
                max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=True,
                phases=[Phase.generate], suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def run(case) -> None:  # type: ignore[no-untyped-def]
                sent.append(1)
                try:
                    response = case.call(base_url=server.url, session=session, headers=headers, timeout=30)
                except requests.RequestException as error:
                    failures.append(f"{operation.label} [{mode}]: {type(error).__name__}: {error}")
                    return
                if response.status_code >= 500:
                    failures.append(f"{operation.label} [{mode}]: {response.status_code} {response.text[:300]}")

            try:
                run()
            except Unsatisfiable:  # nothing in this operation can be made invalid
                pass
    print(f"fuzzed {operations} operations with {len(sent)} requests")
    assert failures == [], "\n".join(failures[:30])
    assert operations > 30 and len(sent) > 3 * operations  # the schema really covers the faces
    assert server.http.get("/healthz").status_code == 200
    assert server.call(server.app("ws1"), {"input": {"prompt": "still here"}}).status_code == 200


def test_hand_written_bad_bodies_get_no_server_error(fuzz_server: LiveServer) -> None:
    server = fuzz_server
    headers = auth_headers(server)
    ids = seeded_ids(server)
    schema = server.http.get("/openapi.json").json()
    failures = []
    for path, methods in schema["paths"].items():
        concrete = path
        for name, value in ids.items():
            concrete = concrete.replace("{" + name + "}", value)
        concrete = concrete.replace("{", "x").replace("}", "x")
        for method in methods:
            if method.upper() not in {"POST", "PUT", "PATCH"}:
                continue
            for body, content_type in BAD_BODIES:
                response = server.http.request(
                    method.upper(), concrete, content=body, headers={**headers, "Content-Type": content_type}
                )
                if response.status_code >= 500:
                    failures.append(f"{method.upper()} {path} [{content_type}] {body[:40]!r}: {response.status_code}")
                elif response.status_code >= 400:
                    assert response.json(), (path, response.text)  # always an error body, never empty
    assert failures == [], "\n".join(failures[:30])
    assert server.http.get("/healthz").status_code == 200
    assert server.call(server.app("ws1"), {"input": {"prompt": "still here"}}).status_code == 200
