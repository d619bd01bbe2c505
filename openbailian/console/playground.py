"""The playground: chat with an app's draft or published version, streamed to the page.

The page posts to ``/console/apps/{id}/chat`` and reads Server-Sent Events of the console's own
shape; the run is the same engine run as the DashScope call API's. Answers arrive as markdown
rendered on the server without raw HTML; thoughts and sources as plain text for the page to set
as text. Closing the connection (the stop button) stops the model and keeps the cut answer."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from openbailian.api.errors import error_status_and_code, request_id_of
from openbailian.api.fast import read_json_body
from openbailian.api.sse import EventStreamResponse
from openbailian.console.web import Changing, ConsoleRoute, SignedIn, page, render_markdown, runtime_of
from openbailian.engine.app_config import AppConfig
from openbailian.engine.call import Call
from openbailian.engine.events import Finished, ReasoningDelta, References, TextDelta, Thought
from openbailian.engine.run import PreparedRun
from openbailian.errors import AppNotPublished, InvalidParameter
from openbailian.services import apps as app_service
from openbailian.services import memory as memory_service

__all__ = ["router"]

router = APIRouter(prefix="/console/apps", route_class=ConsoleRoute, include_in_schema=False)
MAX_CHAT_BODY = 256 * 1024


@router.get("/{app_id}/playground")
async def playground(request: Request, app_id: str, user: SignedIn) -> Response:
    async with runtime_of(request).db.session() as session:
        app = await app_service.get_app(session, app_id, user.workspace_id)
        memories = (await memory_service.list_memories(session, user.workspace_id)).items
    draft = app.draft
    return await page(
        request, "playground.html", app=app, draft=draft,
        variables=list(draft.declared_variables().values()), memories=memories,
    )


def _chat_input(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidParameter("The request body must be a JSON object")
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidParameter("prompt must be a non-empty string")
    variables = data.get("variables") or {}
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        raise InvalidParameter("variables must be an object of strings")
    for key in ("session_id", "memory_id"):
        if data.get(key) is not None and not isinstance(data.get(key), str):
            raise InvalidParameter(f"{key} must be a string")
    file_ids = data.get("session_file_ids") or []
    if not isinstance(file_ids, list) or not all(isinstance(f, str) for f in file_ids):
        raise InvalidParameter("session_file_ids must be a list of file ids")
    if data.get("target", "draft") not in ("draft", "published"):
        raise InvalidParameter("target must be 'draft' or 'published'")
    return data


@router.post("/{app_id}/chat")
async def chat(request: Request, app_id: str, user: Changing) -> Response:
    runtime = runtime_of(request)
    data = _chat_input(await read_json_body(request, MAX_CHAT_BODY))
    async with runtime.db.session() as session:
        app = await app_service.get_app(session, app_id, user.workspace_id)
    config: AppConfig | None = None
    if data.get("target", "draft") == "draft":
        config = app.draft
    elif not app.published_version:
        raise AppNotPublished(f"App '{app_id}' has no published version; publish it first")
    run = await runtime.engine.prepare(
        Call(
            app_id=app.id,
            workspace_id=user.workspace_id,
            request_id=request_id_of(request),
            prompt=data["prompt"],
            session_id=data.get("session_id") or None,
            prompt_params={k: v for k, v in data.get("variables", {}).items() if v != ""},
            memory_id=data.get("memory_id") or None,
            rag_options={"session_file_ids": data["session_file_ids"]} if data.get("session_file_ids") else {},
            config=config,
        )
    )
    return EventStreamResponse(_events(run), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _sse(event: str, payload: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


async def _events(run: PreparedRun) -> AsyncGenerator[bytes, None]:
    answer = ""
    yield _sse("session", {"session_id": run.session_id})
    try:
        async for event in run.events():
            if isinstance(event, TextDelta):
                answer += event.text
                yield _sse("answer", {"html": render_markdown(answer)})
            elif isinstance(event, ReasoningDelta):
                yield _sse("reasoning", {"text": event.text})
            elif isinstance(event, Thought):
                yield _sse("thought", {
                    "action_type": event.action_type, "thought": event.thought,
                    "action": event.action_name or event.action, "observation": event.observation or "",
                })
            elif isinstance(event, References):
                yield _sse("sources", [
                    {"index_id": r.index_id, "doc_id": r.doc_id, "doc_name": r.doc_name, "title": r.title,
                     "text": r.text, "page_number": list(r.page_number)}
                    for r in event.items
                ])
            elif isinstance(event, Finished):
                yield _sse("done", {
                    "session_id": event.session_id, "finish_reason": event.finish_reason,
                    "usage": [{"model_id": u.model_id, "input_tokens": u.input_tokens,
                               "output_tokens": u.output_tokens} for u in event.usage],
                })
    except Exception as error:  # reported in-stream: the 200 status line is already sent
        _, code, message = error_status_and_code(error)
        yield _sse("error", {"code": code, "message": message})
