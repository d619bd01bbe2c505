"""Running an app: validate a request, then stream its events.

``Engine.prepare`` does every check that can fail a request before anything is
sent, so those failures become plain HTTP errors. ``PreparedRun.events`` then
takes the session's lock, loads and trims history, streams the model, and
stores the turn: whole when the model finished, marked as cut when the
consumer went away mid-answer, not at all when the model failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import anyio

from openbailian.engine.app_config import AppConfig
from openbailian.engine.augment import (
    Augmentation,
    CallContext,
    ContextSource,
    ToolRunner,
    ToolSpec,
    TurnObserver,
)
from openbailian.engine.call import AppStamp, Call, SessionAhead
from openbailian.engine.context import fill_variables, system_message, trim_history
from openbailian.engine.events import (
    Event,
    Finished,
    ModelUsage,
    ReasoningDelta,
    References,
    TextDelta,
    Thought,
)
from openbailian.engine.sessions import SessionStore, new_session_id
from openbailian.engine.tool_loop import function_specs, run_with_tools
from openbailian.errors import InvalidParameter
from openbailian.providers.base import (
    ChatMessage,
    GenerationOptions,
    ModelChunk,
    ModelProvider,
    ModelTimeout,
)
from openbailian.providers.registry import ModelRegistry

__all__ = ["Engine", "PreparedRun", "AppLoader"]

CHAT_ROLES = {"system", "user", "assistant"}
_T = TypeVar("_T")

logger = logging.getLogger("openbailian.engine")


class AppLoader:
    """Finds the published config of an app the caller's workspace may call."""

    async def published(
        self, app_id: str, workspace_id: str, stamp: AppStamp | None = None
    ) -> AppConfig:  # pragma: no cover
        raise NotImplementedError


@dataclass(slots=True)
class PreparedRun:
    context: CallContext  # the call, with the config it runs and its question
    provider: ModelProvider
    system: list[ChatMessage]
    history: list[ChatMessage] | None  # None: load from the stored session
    current: list[ChatMessage]  # messages this call adds to the conversation
    session_id: str
    options: GenerationOptions
    max_history_turns: int
    augmentation: Augmentation
    tools: list[ToolSpec]
    _engine: Engine
    ahead: SessionAhead | None = None  # the stored session as read with the key

    def events(self) -> AsyncGenerator[Event, None]:
        return self._engine._events(self)


class Engine:
    def __init__(
        self,
        apps: AppLoader,
        sessions: SessionStore,
        models: ModelRegistry,
        *,
        context_sources: Sequence[ContextSource] = (),
        observers: Sequence[TurnObserver] = (),
        tool_runner: ToolRunner | None = None,
        max_history_turns: int = 50,
        max_output_tokens: int = 1024,
        max_tool_rounds: int = 5,
        model_timeout: float = 300.0,
    ) -> None:
        self._apps = apps
        self._sessions = sessions
        self._models = models
        self._locks = sessions.locks
        self.context_sources = list(context_sources)
        self.observers = list(observers)
        self.tool_runner = tool_runner
        self._max_history_turns = max_history_turns
        self._max_output_tokens = max_output_tokens
        self._max_tool_rounds = max_tool_rounds
        self._model_timeout = model_timeout
        self._background: set[asyncio.Task[None]] = set()

    async def prepare(self, call: Call) -> PreparedRun:
        """Every check that can fail the call, done before anything is streamed."""
        config = call.config or await self._apps.published(
            call.app_id, call.workspace_id, call.app_stamp
        )
        caller_system, history, current = _conversation(call)
        instructions = fill_variables(config, call.prompt_params)
        session_id = new_session_id()
        stored_history: list[ChatMessage] | None = history
        ahead = None
        if call.messages is None and call.session_id:
            ahead = call.session_ahead if call.session_ahead and call.session_ahead.session_id == call.session_id else None
            if ahead is None:
                await self._sessions.check(call.session_id, call.app_id)
            else:
                self._sessions.check_ahead(ahead, call.app_id)
            session_id = call.session_id
            stored_history = None
        provider = await self._models.get(config.model)
        context = CallContext(
            call=call,
            config=config,
            query=current[-1]["content"],
            model_accepts_images=self._models.accepts_images(config.model),
        )
        augmentation = await self._augment(context)
        tools = await self.tool_runner.tools_for(context) if self.tool_runner else []
        options = self._options(context, provider, tools)
        system = system_message(instructions, caller_system, augmentation.context_blocks)
        prepared = PreparedRun(
            context=context,
            provider=provider,
            system=system,
            history=stored_history,
            current=current,
            session_id=session_id,
            options=options,
            max_history_turns=(
                config.max_history_turns
                if config.max_history_turns is not None
                else self._max_history_turns
            ),
            augmentation=augmentation,
            tools=list(tools),
            _engine=self,
            ahead=ahead,
        )
        # Fail now, not mid-stream, when even the new turn alone cannot fit.
        await trim_history(
            provider, system, [], current, max_turns=0, reserve_tokens=options.max_tokens or 0
        )
        return prepared

    async def _augment(self, context: CallContext) -> Augmentation:
        merged = Augmentation()
        for source in self.context_sources:
            numbered = context if context.numbered == merged.numbered else replace(context, numbered=merged.numbered)
            found = await source.gather(numbered)
            merged.numbered += found.numbered
            merged.context_blocks += found.context_blocks
            merged.thoughts += found.thoughts
            merged.references += found.references
            merged.images += found.images
        return merged

    def _options(
        self, context: CallContext, provider: ModelProvider, tools: Sequence[ToolSpec]
    ) -> GenerationOptions:
        call, config = context.call, context.config
        defaults, model = config.parameters, self._models.defaults(config.model)
        max_tokens = call.max_tokens or defaults.max_tokens or model.max_tokens or self._max_output_tokens
        max_tokens = min(max_tokens, max(1, provider.context_length // 2))
        return GenerationOptions(
            temperature=_first(call.temperature, defaults.temperature, model.temperature),
            top_p=_first(call.top_p, defaults.top_p, model.top_p),
            top_k=_first(call.top_k, defaults.top_k, model.top_k),
            seed=_first(call.seed, defaults.seed),
            max_tokens=max_tokens,
            enable_thinking=_first(call.enable_thinking, config.enable_thinking) or False,
            tools=function_specs(list(tools)),
        )

    async def _events(self, run: PreparedRun) -> AsyncGenerator[Event, None]:
        for thought in run.augmentation.thoughts:
            yield thought
        if run.augmentation.references and run.context.config.show_sources:
            yield References(list(run.augmentation.references))
        # A stored session may be continued through another process at the same time.
        async with self._locks.hold(run.session_id, across_processes=run.history is None):
            history = run.history
            if history is None:
                history = self._sessions.ahead_history(run.ahead) or await self._sessions.history(run.session_id)
            # With no history, prepare() has already checked that the turn fits:
            # counting it again would cost the local model two more tokenizer calls.
            messages = [*run.system, *run.current] if not history else await trim_history(
                run.provider,
                run.system,
                history,
                run.current,
                max_turns=run.max_history_turns,
                reserve_tokens=run.options.max_tokens or 0,
            )
            if run.augmentation.images:
                messages[-1] = _with_images(messages[-1], run.augmentation.images)
            stored = run.current if run.history is None else [*history, *run.current]
            # aclosing: when our consumer closes us, _generate is closed at once
            # (and stores the cut answer) rather than whenever it is collected.
            async with aclosing(self._generate(run, messages, stored)) as events:
                async for event in events:
                    yield event

    def _model_stream(
        self, run: PreparedRun, messages: list[ChatMessage]
    ) -> AsyncGenerator[ModelChunk | Thought, None]:
        if run.options.tools and self.tool_runner is not None:
            return run_with_tools(
                run.provider,
                messages,
                run.options,
                self.tool_runner,
                run.context,
                max_rounds=self._max_tool_rounds,
                tools=run.tools,
            )
        return run.provider.stream(messages, run.options)

    async def _generate(
        self, run: PreparedRun, messages: list[ChatMessage], to_store: list[ChatMessage]
    ) -> AsyncGenerator[Event, None]:
        answer: list[str] = []
        finish_reason, input_tokens, output_tokens = "stop", 0, 0
        try:
            stream = _idle_timeout(self._model_stream(run, messages), self._model_timeout, run)
            async with aclosing(stream) as chunks:
                async for chunk in chunks:
                    if isinstance(chunk, Thought):
                        yield chunk
                        continue
                    if chunk.reasoning:
                        yield ReasoningDelta(chunk.reasoning)
                    if chunk.text:
                        answer.append(chunk.text)
                        yield TextDelta(chunk.text)
                    if chunk.finish_reason:
                        finish_reason = chunk.finish_reason
                        input_tokens = chunk.input_tokens or 0
                        output_tokens = chunk.output_tokens or 0
        except (anyio.get_cancelled_exc_class(), GeneratorExit):
            # The consumer went away: keep what was said, marked as cut.
            await self._store(run, to_store, "".join(answer), cut=True, tokens=(input_tokens, output_tokens))
            raise
        await self._store(run, to_store, "".join(answer), cut=False, tokens=(input_tokens, output_tokens))
        self._observe(run, "".join(answer))
        usage = ModelUsage(run.provider.model_id, input_tokens, output_tokens)
        yield Finished(finish_reason, run.session_id, [usage])

    def _observe(self, run: PreparedRun, answer: str) -> None:
        """Tell observers (memory extraction) in the background: the reply never waits."""
        for observer in self.observers:
            task = asyncio.create_task(observer.turn_finished(run.context, run.context.query, answer))
            self._background.add(task)
            task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("background work after a turn failed", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait for background work started by finished turns (shutdown, tests)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def _store(
        self, run: PreparedRun, messages: list[ChatMessage], answer: str, *, cut: bool,
        tokens: tuple[int, int] = (0, 0),
    ) -> None:
        # Shielded: a client that disconnects while we write must not leave half a turn.
        call = run.context.call
        with anyio.CancelScope(shield=True):
            await self._sessions.append(
                session_id=run.session_id,
                app_id=call.app_id,
                workspace_id=call.workspace_id,
                messages=[m for m in messages if m["role"] != "system"],
                answer=answer,
                cut=cut,
                request_id=call.request_id,
                new=run.history is not None,  # None: continuing a stored session
                usage=call.usage,
                tokens=tokens,
            )


async def _idle_timeout(
    stream: AsyncGenerator[ModelChunk | Thought, None], seconds: float, run: PreparedRun
) -> AsyncGenerator[ModelChunk | Thought, None]:
    """The stream, failing with ModelTimeout when the model is silent for ``seconds``.

    One timer per stream, not one per chunk (``asyncio.timeout`` around each wait armed and
    cancelled a timer for every token): when it fires while a chunk came meanwhile, it is set
    again for the rest of the current silence; when the silence is whole, it cancels the wait."""
    loop = asyncio.get_running_loop()
    waiting: asyncio.Task[Any] | None = None  # the task waiting for the next chunk
    waited_from = 0.0
    timer: asyncio.TimerHandle | None = None
    timed_out = False

    def expire() -> None:
        nonlocal timer, timed_out
        timer = None
        if waiting is None:
            return  # between chunks: armed again at the next wait
        if loop.time() < waited_from + seconds:
            timer = loop.call_at(waited_from + seconds, expire)
            return
        timed_out = True
        waiting.cancel()

    async with aclosing(stream):
        iterator = aiter(stream)
        try:
            while True:
                waiting, waited_from = asyncio.current_task(), loop.time()
                if timer is None:
                    timer = loop.call_at(waited_from + seconds, expire)
                try:
                    item = await anext(iterator)
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    if timed_out and waiting is not None and waiting.uncancel() == 0:
                        raise ModelTimeout(
                            f"Model '{run.context.config.model}' sent nothing for {seconds:g} seconds"
                        ) from None
                    raise
                finally:
                    waiting = None
                yield item
        finally:
            if timer is not None:
                timer.cancel()


def _with_images(message: ChatMessage, images: list[str]) -> ChatMessage:
    """The user's question with images attached, as OpenAI-style content parts."""
    parts: list[dict[str, Any]] = [{"type": "text", "text": message["content"]}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in images]
    return {**message, "content": parts}


def _first(*values: _T | None) -> _T | None:
    """The first value that is set."""
    return next((v for v in values if v is not None), None)


def _conversation(call: Call) -> tuple[list[str], list[ChatMessage], list[ChatMessage]]:
    """Split the caller's input into (system texts, history, this turn's messages)."""
    if call.messages is None:
        if not call.prompt:
            raise InvalidParameter("input.prompt or input.messages is required")
        return [], [], [{"role": "user", "content": call.prompt}]
    messages = list(call.messages)
    if call.prompt:
        messages.append({"role": "user", "content": call.prompt})
    if not messages:
        raise InvalidParameter("input.messages must not be empty")
    for index, message in enumerate(messages):
        if message.get("role") not in CHAT_ROLES:
            raise InvalidParameter(
                f"input.messages[{index}].role must be one of system, user, assistant"
            )
    if messages[-1]["role"] != "user":
        raise InvalidParameter("The last message must be a user message (or pass prompt)")
    system = [m["content"] for m in messages if m["role"] == "system"]
    chat = [m for m in messages if m["role"] != "system"]
    return system, chat[:-1], chat[-1:]
