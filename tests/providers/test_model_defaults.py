"""A model's own generation defaults (its spec's max_tokens and sampling) reach the model server
when neither the call nor the app sets them; the call and the app still win."""

from __future__ import annotations

import pytest

from openbailian.config import BUILTIN_MODELS
from tests.providers.test_openai import chunk
from tests.support import LiveServer, make_settings


@pytest.fixture
def server(tmp_path, database_url, fake_openai):
    models = {"small": {"provider": "openai", "base_url": fake_openai.url, "model": "small",
                        "max_tokens": 50, "temperature": 0.3, "top_p": 0.8}}
    live = LiveServer(make_settings(tmp_path / "home", database_url, models=models)).start()
    yield live
    live.stop()


def sent(server, fake_openai, app_id, parameters):
    fake_openai.add(events=[chunk("ok"), chunk(finish_reason="stop")])
    response = server.call(app_id, {"input": {"prompt": "hi"}, "parameters": parameters})
    assert response.status_code == 200, response.text
    body = fake_openai.requests[-1].body
    return body.get("max_tokens"), body.get("temperature"), body.get("top_p")


def test_the_models_defaults_apply_and_the_call_and_app_win(server, fake_openai):
    plain = server.app(model="small")
    assert sent(server, fake_openai, plain, {}) == (50, 0.3, 0.8)
    assert sent(server, fake_openai, plain, {"max_tokens": 10, "temperature": 1.0}) == (10, 1.0, 0.8)
    tuned = server.app(model="small", parameters={"max_tokens": 200, "top_p": 0.5})
    assert sent(server, fake_openai, tuned, {}) == (200, 0.3, 0.5)


def test_the_bundled_model_answers_briefly_with_qwens_sampling():
    local = BUILTIN_MODELS["local"]
    assert (local.max_tokens, local.temperature, local.top_p, local.top_k) == (384, 0.7, 0.8, 20)


def test_a_bad_default_is_refused_naming_it(tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="temperature"):
        make_settings(tmp_path, models={"m": {"provider": "echo", "temperature": 5}})
