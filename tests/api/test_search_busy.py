"""A knowledge search that cannot read its PostgreSQL tables in time (``openbailian search
reindex`` or a migration holds them) is a clear ``503 Index.SearchBusy`` on every face that
searches — the OpenAPI ``Retrieve`` (the official SDK, in its envelope) and an application call
of an app linked to the base (the official dashscope SDK, streamed and not) — never a hang, a
500, or an answer made without the base; once the rebuild is done the same requests answer.
(The management face: ``tests/knowledge/test_search_pg.py``.)

Runs when ``OPENBAILIAN_TEST_POSTGRES_URL`` names a server with pgvector (``.ci/run``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dashscope
import psycopg
import pytest
from alibabacloud_bailian20231229 import models
from alibabacloud_tea_openapi.exceptions import ServerException
from dashscope import Application

from tests.api.openapi.conftest import create_key, sdk_client
from tests.api.test_seed_knowledge import create_base, upload
from tests.support import POSTGRES_URL, LiveServer

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="needs OPENBAILIAN_TEST_POSTGRES_URL")

WORKSPACE = "ws-busy"
QUESTION = "How often is the Wrenfield lamp's paraffin delivered?"


@contextmanager
def rebuilding(server: LiveServer) -> Iterator[None]:
    """What ``search reindex`` holds while it writes the rows: the search tables, emptied in a
    transaction not yet committed (rolled back here, so the base is as before)."""
    url = server.settings.resolved_database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as rebuild:
        rebuild.execute("TRUNCATE knowledge_chunk_search, knowledge_term_stats, knowledge_search_stats")
        yield
        rebuild.rollback()


@pytest.fixture
def linked(server: LiveServer, tmp_path: Path) -> tuple[str, str]:
    """A base of one ready document and an app searching it; (index id, app id)."""
    index_id = create_base(server, "lighthouse", workspace=WORKSPACE)
    guide = tmp_path / "guide.md"
    guide.write_text(
        "# Supplies\n\nParaffin for the Wrenfield lamp is delivered by boat every second Tuesday.\n", encoding="utf-8"
    )
    upload(server, index_id, guide, workspace=WORKSPACE)
    return index_id, server.app(WORKSPACE, knowledge_enabled=True, knowledge_base_ids=[index_id])


def test_the_openapi_retrieve_answers_503_search_busy_in_its_envelope(server: LiveServer, linked) -> None:
    index_id, _ = linked
    sdk = sdk_client(server, bearer_token=create_key(server, WORKSPACE)["api_key"])
    request = models.RetrieveRequest(index_id=index_id, query=QUESTION)
    assert sdk.retrieve(WORKSPACE, request).body.data.nodes
    with rebuilding(server):
        with pytest.raises(ServerException) as caught:  # the SDK's error for a 5xx answer
            sdk.retrieve(WORKSPACE, request)
    error = caught.value
    assert (error.status_code, error.code) == (503, "Index.SearchBusy"), error.data
    assert error.data["Success"] is False and error.data["Status"] == "503" and error.data["RequestId"]
    assert "retry when it has finished" in error.data["Message"] and error.data["Data"] is None
    nodes = sdk.retrieve(WORKSPACE, request).body.data.nodes
    assert nodes and "every second Tuesday" in nodes[0].text


def test_an_application_call_of_a_linked_app_is_a_503_search_busy_not_an_answer_without_the_base(
    server: LiveServer, linked, monkeypatch
) -> None:
    _, app_id = linked
    monkeypatch.setattr(dashscope, "base_http_api_url", server.base_http_api_url)
    key = server.key(WORKSPACE)
    first = Application.call(app_id=app_id, prompt=QUESTION, api_key=key)
    assert first.status_code == 200, first
    session_id = first.output.session_id
    with rebuilding(server):
        refused_call = Application.call(app_id=app_id, prompt=QUESTION, session_id=session_id, api_key=key)
        assert (refused_call.status_code, refused_call.code) == (503, "Index.SearchBusy"), refused_call
        assert "reindex" in refused_call.message and refused_call.request_id and refused_call.output is None
        # Streamed: the status line is sent before the search, so the error comes in the stream.
        pieces = list(Application.call(app_id=app_id, prompt=QUESTION, api_key=key, stream=True))
        assert (pieces[-1].status_code, pieces[-1].code) == (503, "Index.SearchBusy"), pieces[-1]
        assert all(piece.status_code != 200 or not piece.output.text for piece in pieces)
    again = Application.call(app_id=app_id, prompt=QUESTION, session_id=session_id, api_key=key)
    assert again.status_code == 200, again
    # The echo model shows what it was sent: the base's passage, and the session's turns
    # without the refused one (the first question and this one).
    sent = json.loads(again.output.text)["messages"]
    assert "every second Tuesday" in json.dumps(sent, ensure_ascii=False)
    assert [m["role"] for m in sent if m["role"] != "system"] == ["user", "assistant", "user"], sent
