"""Named models from settings, built lazily and shared by every request."""

from __future__ import annotations

import asyncio

from openbailian.config import ModelSpec, Settings
from openbailian.errors import ModelNotFound
from openbailian.providers.base import GenerationOptions, ModelProvider

__all__ = ["ModelRegistry"]


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._providers: dict[str, ModelProvider] = {}
        self._lock = asyncio.Lock()

    @property
    def names(self) -> list[str]:
        return sorted(self._settings.all_models)

    def check(self, name: str) -> None:
        if name not in self._settings.all_models:
            raise ModelNotFound(
                f"Model '{name}' is not configured; available: {', '.join(self.names)}"
            )

    def accepts_images(self, name: str) -> bool:
        spec = self._settings.all_models.get(name)
        return bool(spec and spec.vision)

    def defaults(self, name: str) -> GenerationOptions:
        """The model's own generation defaults (its spec's max_tokens and sampling; unset: None)."""
        spec = self._settings.all_models.get(name)
        if spec is None:
            return GenerationOptions()
        return GenerationOptions(
            max_tokens=spec.max_tokens, temperature=spec.temperature, top_p=spec.top_p, top_k=spec.top_k
        )

    def register(self, name: str, provider: ModelProvider) -> None:
        """Install a ready provider under a name (tests, embedding applications)."""
        self._providers[name] = provider

    async def get(self, name: str) -> ModelProvider:
        if name in self._providers:
            return self._providers[name]
        self.check(name)
        async with self._lock:
            if name not in self._providers:
                spec = self._settings.all_models[name]
                self._providers[name] = await asyncio.to_thread(self._build, name, spec)
            return self._providers[name]

    def _build(self, name: str, spec: ModelSpec) -> ModelProvider:
        model_id = spec.model_id or name
        if spec.provider == "echo":
            from openbailian.providers.echo import EchoProvider

            return EchoProvider(
                model_id=model_id, delay=spec.delay, context_length=spec.context_length
            )
        if spec.provider == "openai":
            from openbailian.providers.openai import OpenAIProvider

            if not spec.base_url or not spec.model:
                raise ModelNotFound(f"Model '{name}' needs base_url and model")
            return OpenAIProvider(
                spec.base_url,
                spec.model,
                api_key=spec.api_key,
                context_length=spec.context_length,
                timeout=spec.timeout,
                max_retries=spec.max_retries,
                model_id=spec.model_id or spec.model,
            )
        from pathlib import Path

        from openbailian.providers.bundled import ensure_bundled_model
        from openbailian.providers.local import LocalProvider

        path = Path(spec.path) if spec.path else ensure_bundled_model(self._settings.model_cache_dir)
        return LocalProvider(
            path,
            model_id=spec.model_id or ("qwen2.5-coder-0.5b-instruct" if not spec.path else name),
            n_ctx=spec.n_ctx,
            n_parallel=spec.n_parallel,
            n_threads=spec.n_threads,
        )

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()
