"""Thin: read and check the body, prepare the run, render JSON or SSE."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.routing import Route

from openbailian.api.boundary import enforce_input_boundary
from openbailian.api.completion.protocol import BizParams, CompletionRequest
from openbailian.api.completion.render import (
    KEEPALIVE,
    StreamRenderer,
    collect_response,
)
from openbailian.api.deps import Caller, get_runtime, metered_caller
from openbailian.api.errors import error_status_and_code, request_id_of
from openbailian.api.fast import read_json_body
from openbailian.api.ratelimit import checks_address
from openbailian.api.sse import EventStreamResponse
from openbailian.api.usage_meter import counts_usage
from openbailian.engine.call import AppStamp, Call, SessionAhead, UsageSlip
from openbailian.engine.run import PreparedRun
from openbailian.errors import InvalidParameter
from openbailian.runtime import Runtime

__all__ = ["router", "fast_route"]

COMPLETION_PATH = "/api/v1/apps/{app_id}/completion"
router = APIRouter()

def parse_completion(data: Any) -> CompletionRequest:
    if not isinstance(data, dict):
        raise InvalidParameter("The request body must be a JSON object")
    try:
        parsed = CompletionRequest.model_validate(data)
    except ValidationError as error:
        raise InvalidParameter(_validation_message(error.errors()[0])) from None
    if parsed.input.history and parsed.input.messages is not None:
        raise InvalidParameter(
            "input.history and input.messages are two forms of the conversation: pass one "
            "(the SDK sends history only without messages)"
        )
    return parsed


def _validation_message(error: Any) -> str:
    where = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        return (
            f"{where} is not a parameter this server acts on, so it is refused rather than "
            "ignored (docs/errors.md lists the refused ones)"
        )
    if where == "model":
        return "model: an app's model is set in the app; send \"\" or leave it out"
    if where == "debug":
        return "debug: only an empty object is accepted"
    return f"{where}: {error['msg']}"


def _history_messages(body: CompletionRequest) -> list[dict[str, Any]] | None:
    """The caller's conversation as messages: ``messages``, or the older ``history`` pairs."""
    if body.input.messages is not None:
        return [m.model_dump() for m in body.input.messages]
    if body.input.history:
        messages: list[dict[str, Any]] = []
        for turn in body.input.history:
            messages += [{"role": "user", "content": turn.user}, {"role": "assistant", "content": turn.bot}]
        return messages
    return None


def _rag_options(body: CompletionRequest) -> dict[str, Any]:
    """``rag_options``, with ``parameters.session_file_ids`` (the spec's HTTP form) and
    ``input.doc_tag_codes`` joined in."""
    params = body.parameters
    options = params.rag_options.model_dump(exclude_none=True) if params.rag_options else {}
    if params.session_file_ids is not None:
        joined = [*options.get("session_file_ids", []), *params.session_file_ids]
        options["session_file_ids"] = list(dict.fromkeys(joined))
    tag_codes = body.input.doc_tag_codes or []
    if tag_codes:
        # Document tags like rag_options.tags: a document carrying any one of them is searched.
        if not all(tag_codes):
            raise InvalidParameter("input.doc_tag_codes must be a list of non-empty strings")
        options["tags"] = list(dict.fromkeys([*options.get("tags", []), *tag_codes]))
    return options


def to_call(
    body: CompletionRequest,
    *,
    app_id: str,
    workspace_id: str,
    request_id: str,
    app_stamp: AppStamp | None = None,
    usage: UsageSlip | None = None,
    session_ahead: SessionAhead | None = None,
) -> Call:
    """The wire request as the engine's one :class:`Call`."""
    params = body.parameters
    biz = body.input.biz_params or BizParams()
    return Call(
        app_id=app_id,
        workspace_id=workspace_id,
        request_id=request_id,
        prompt=body.input.prompt,
        messages=_history_messages(body),
        session_id=body.input.session_id,
        prompt_params=biz.user_prompt_params,
        enable_thinking=params.enable_thinking,
        temperature=params.temperature,
        top_p=params.top_p,
        top_k=params.top_k,
        seed=params.seed,
        max_tokens=params.max_tokens,
        memory_id=body.input.memory_id,
        rag_options=_rag_options(body),
        doc_reference_type=body.input.doc_reference_type or "simple",
        image_urls=tuple(body.input.image_list or ()),
        file_urls=tuple(body.input.file_list or ()),
        user_defined_params=biz.user_defined_params,
        user_defined_tokens=biz.user_defined_tokens,
        app_stamp=app_stamp,
        usage=usage,
        session_ahead=session_ahead,
    )


def wants_stream(request: Request) -> bool:
    sse = request.headers.get("x-dashscope-sse", "").lower() == "enable"
    return sse or "text/event-stream" in request.headers.get("accept", "")


@router.post(COMPLETION_PATH)  # the OpenAPI schema's entry; calls are served by fast_route
@checks_address  # in the key's query (metered_caller)
async def completion(app_id: str, request: Request) -> Response:
    runtime = get_runtime(request)
    caller = await metered_caller(request, runtime, app_id)
    response: Response = await _complete(app_id=app_id, request=request, caller=caller, runtime=runtime)
    return response


async def _completion_endpoint(request: Request) -> Response:
    # What the app-wide dependency does for this route (the address's failure budget is
    # read with the key, in metered_caller); FastAPI's routing through every included
    # router, its dependency solving and its handler were ~15% of a call's CPU.
    await enforce_input_boundary(request)
    return await completion(request.path_params["app_id"], request)


# A plain Starlette route, put before every router by create_app: same errors (the app's
# exception handlers), same middleware, same answer as the FastAPI route above.
fast_route = Route(COMPLETION_PATH, _completion_endpoint, methods=["POST"], include_in_schema=False)


@counts_usage
async def _complete(app_id: str, request: Request, caller: Caller, runtime: Runtime) -> Response:
    request_id = request_id_of(request)
    body = parse_completion(await read_json_body(request, runtime.settings.max_body_bytes, runtime.settings.max_json_depth))
    run = await runtime.engine.prepare(
        to_call(
            body,
            app_id=app_id,
            workspace_id=caller.workspace_id,
            request_id=request_id,
            app_stamp=caller.app,
            usage=getattr(request.state, "usage_slip", None),
            session_ahead=caller.session,
        )
    )
    has_thoughts = body.parameters.has_thoughts
    if not wants_stream(request):
        payload = await collect_response(run.events(), request_id=request_id, has_thoughts=has_thoughts)
        return JSONResponse(payload)
    renderer = StreamRenderer(
        request_id=request_id,
        session_id=run.session_id,
        incremental=body.parameters.incremental_output,
        has_thoughts=has_thoughts,
    )
    return EventStreamResponse(
        _sse(run, renderer),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        keepalive=runtime.settings.sse_keepalive_seconds,
        keepalive_block=KEEPALIVE,
    )


async def _sse(run: PreparedRun, renderer: StreamRenderer) -> AsyncGenerator[bytes, None]:
    try:
        async for event in run.events():
            block = renderer.render(event)
            if block is not None:
                yield block
    except Exception as error:  # reported in-stream: the 200 status line is already sent
        status, code, message = error_status_and_code(error)
        yield renderer.error(status, code, message)
