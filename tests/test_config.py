"""Settings: one typed object read from OPENBAILIAN_* variables."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from openbailian.config import Settings


def test_models_are_read_from_the_environment_as_json(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENBAILIAN_HOME", str(tmp_path))
    monkeypatch.setenv(
        "OPENBAILIAN_MODELS",
        '{"qwen-plus": {"provider": "openai", "base_url": "http://gpu:8000/v1", "model": "Qwen/Qwen3-8B"}}',
    )
    settings = Settings()
    assert set(settings.all_models) == {"local", "echo", "qwen-plus"}
    assert settings.all_models["qwen-plus"].model == "Qwen/Qwen3-8B"
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'openbailian.db'}"


def test_a_typo_in_a_model_definition_is_an_error_not_ignored(monkeypatch):
    monkeypatch.setenv("OPENBAILIAN_MODELS", '{"x": {"provider": "echo", "contxt_length": 5}}')
    with pytest.raises(ValidationError, match="contxt_length"):
        Settings()


def test_an_unknown_provider_is_an_error():
    with pytest.raises(ValidationError, match="provider"):
        Settings(models={"x": {"provider": "gpt"}})


def test_health_check_reports_the_database(server):
    assert server.http.get("/healthz").json() == {"status": "ok"}
