"""The one layer in front of every route (``api/middleware.py``): request ids as a client sees
them (the boundary and the failure counting: test_boundary.py, test_auth_failures.py)."""

from __future__ import annotations

import uuid

from tests.support import LiveServer, make_settings


def test_every_answer_has_its_own_version_4_request_id(server):
    app_id = server.app()
    answers = [server.call(app_id, {"input": {"prompt": "hi"}}) for _ in range(5)]
    answers += [server.http.get("/healthz"), server.http.get("/api/v1/nothing")]
    ids = [a.headers["x-request-id"] for a in answers]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert [a.json()["request_id"] for a in answers[:5]] == ids[:5]
    assert answers[-1].json()["request_id"] == ids[-1]  # an error body repeats its id


def test_the_sdk_reads_the_request_id_of_an_answer_and_of_an_error(server, monkeypatch):
    import dashscope
    from dashscope import Application

    monkeypatch.setattr(dashscope, "base_http_api_url", server.base_http_api_url)
    app_id = server.app()
    answer = Application.call(api_key=server.key(), app_id=app_id, prompt="你好")
    assert answer.status_code == 200 and uuid.UUID(answer.request_id).version == 4
    refused = Application.call(api_key="sk-not-a-key", app_id=app_id, prompt="你好")
    assert refused.status_code == 401 and refused.code == "InvalidApiKey"
    assert uuid.UUID(refused.request_id).version == 4 and refused.request_id != answer.request_id


def test_healthz_answers_while_the_database_does(server):
    response = server.http.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_http_telemetry_is_off_unless_asked_for(tmp_path, database_url):
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # an SDK configured in the process, as opentelemetry-instrument does
    spans: dict[bool, list[str]] = {}
    for enabled in (False, True):
        live = LiveServer(make_settings(tmp_path / f"home-{enabled}", database_url, http_telemetry=enabled)).start()
        try:
            exporter.clear()
            assert live.http.get("/healthz").status_code == 200
            spans[enabled] = [span.name for span in exporter.get_finished_spans()]
        finally:
            live.stop()
    assert spans[False] == []
    assert any("/healthz" in name for name in spans[True]), spans[True]
