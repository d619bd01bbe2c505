"""Custom plugins: an HTTP API described by a schema, and how one call of it is made.

A plugin file (YAML or JSON)::

    name: get_weather              # the function name the model sees
    title: 天气查询                 # display name (thoughts' action_name); default: name
    description: 查询城市的天气
    method: GET                    # GET, POST, PUT, PATCH or DELETE
    url: https://api.example.com/weather/{city}   # {x} is filled from the arguments
    parameters:                    # JSON schema of what the model fills
      type: object
      properties: {city: {type: string, description: 城市}}
      required: [city]
    passthrough: [tenant]          # names only the caller gives: hidden from the model
    headers: {X-Client: bailian}   # fixed headers
    auth:                          # none | user_token | service_token
      type: user_token             # user_token: biz_params.user_defined_tokens[tool_id].user_token
      header: Authorization
      scheme: Bearer               # prefix before the token; "" for none
    timeout: 10

Every value in ``biz_params.user_defined_params[tool_id]`` is merged into the
request, over the model's arguments; names listed in ``passthrough`` are also
removed from the schema the model sees and ignored when the model gives them.
Arguments go in
the query string for GET and DELETE and in a JSON body otherwise. The model
never sees pass-through values or tokens: they are not in the function's
schema, and the observation is the response body with any token redacted.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from openbailian.crypto import SecretBox
from openbailian.errors import InvalidParameter, invalid_input
from openbailian.tools.outbound import OutboundBlocked, OutboundError, OutboundGuard, fetch

__all__ = [
    "PluginAuth",
    "PluginSpec",
    "parse_spec",
    "call_plugin",
    "public_spec",
    "model_parameters",
    "MAX_OBSERVATION_CHARS",
    "sealed_spec",
    "opened_spec",
    "check_plugin_url",
]

MAX_OBSERVATION_CHARS = 4000
FUNCTION_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class PluginAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["none", "user_token", "service_token"] = "none"
    header: str = Field(default="Authorization", pattern=r"^[A-Za-z0-9-]{1,64}$")
    scheme: str = Field(default="Bearer", max_length=32)
    token: str | None = Field(default=None, max_length=4096)  # service_token only

    @model_validator(mode="after")
    def _token_matches_type(self) -> PluginAuth:
        if self.type == "service_token" and not self.token:
            raise ValueError("auth.token is required for auth.type service_token")
        if self.type != "service_token" and self.token:
            raise ValueError("auth.token is only used with auth.type service_token")
        return self


class PluginSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=FUNCTION_NAME)
    title: str = Field(default="", max_length=100)
    description: str = Field(min_length=1, max_length=2000)
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str = Field(min_length=8, max_length=2000)
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    passthrough: list[str] = Field(default_factory=list, max_length=50)
    headers: dict[str, str] = Field(default_factory=dict)
    auth: PluginAuth = Field(default_factory=PluginAuth)
    timeout: float = Field(default=10.0, gt=0, le=60)

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("url must start with http:// or https:// and name a host")
        return value

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type", "object") != "object" or not isinstance(
            value.get("properties", {}), dict
        ):
            raise ValueError("parameters must be a JSON schema of type object with properties")
        if len(json.dumps(value)) > 20_000:
            raise ValueError("parameters schema is too large")
        return {"type": "object", "properties": {}, **value}

    @property
    def display_name(self) -> str:
        return self.title or self.name


def parse_spec(data: Any) -> PluginSpec:
    if not isinstance(data, dict):
        raise InvalidParameter("A plugin must be a mapping (name, description, method, url, …)")
    try:
        return PluginSpec.model_validate(data)
    except ValidationError as error:
        raise invalid_input(error, "plugin") from None


def model_parameters(spec: PluginSpec) -> dict[str, Any]:
    """The JSON schema the model sees: without the pass-through names."""
    if not spec.passthrough:
        return spec.parameters
    hidden = set(spec.passthrough)
    properties = {k: v for k, v in spec.parameters.get("properties", {}).items() if k not in hidden}
    required = [r for r in spec.parameters.get("required", []) if r not in hidden]
    schema = {**spec.parameters, "properties": properties}
    if "required" in spec.parameters:
        schema["required"] = required
    return schema


def sealed_spec(spec: PluginSpec, box: SecretBox) -> dict[str, Any]:
    """The spec as stored: a service token sealed with the server key, never in plaintext."""
    data = spec.model_dump(mode="json")
    if data["auth"].get("token"):
        data["auth"]["token"] = box.seal(data["auth"]["token"])
    return data


def opened_spec(stored: dict[str, Any], box: SecretBox | None) -> PluginSpec:
    """The stored spec with its service token opened (``box=None``: masked, for display)."""
    auth = dict(stored.get("auth") or {})
    token = auth.get("token")
    if token:
        if box is None:
            auth["token"] = "***"
        elif SecretBox.is_sealed(token):
            auth["token"] = box.open(token)
    return PluginSpec.model_validate({**stored, "auth": auth})


async def check_plugin_url(spec: PluginSpec, guard: OutboundGuard) -> None:
    """Registration applies the call-time rules to the URL (placeholders filled with a
    letter): a loopback, private or metadata destination is refused at once. A host that
    does not resolve now is accepted; every call checks again, after DNS and on redirects."""
    try:
        await guard.check(httpx.URL(_PLACEHOLDER.sub("x", spec.url)))
    except OutboundBlocked as error:
        raise InvalidParameter(f"url: {error}") from None
    except (OutboundError, httpx.InvalidURL):
        return


def public_spec(spec: PluginSpec) -> dict[str, Any]:
    """The spec as shown to managers: a service token is never shown back."""
    data = spec.model_dump(mode="json")
    if data["auth"].get("token"):
        data["auth"]["token"] = "***"
    return data


def _missing(spec: PluginSpec, arguments: dict[str, Any]) -> list[str]:
    required = spec.parameters.get("required") or []
    return [name for name in required if isinstance(name, str) and name not in arguments]


def _fill_url(url: str, values: dict[str, Any]) -> tuple[str, set[str]]:
    used: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            return match.group(0)
        used.add(name)
        return quote(str(values[name]), safe="")

    return _PLACEHOLDER.sub(replace, url), used


async def call_plugin(
    spec: PluginSpec,
    arguments: dict[str, Any],
    *,
    guard: OutboundGuard,
    passthrough: dict[str, Any] | None = None,
    user_token: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    max_bytes: int = 256 * 1024,
) -> str:
    """The observation for the model: the response text, or a short error. Never raises."""
    secrets = [s for s in (user_token, spec.auth.token) if s]
    try:
        return _redact(
            await _call(spec, arguments, guard, passthrough or {}, user_token, transport, max_bytes),
            secrets,
        )
    except OutboundError as error:
        return _redact(f"Error: {error}", secrets)
    except Exception as error:  # a tool failure is an observation, never a crash
        return _redact(f"Error: the tool failed ({type(error).__name__})", secrets)


async def _call(
    spec: PluginSpec,
    arguments: object,  # checked: a test call or a model may send anything
    guard: OutboundGuard,
    passthrough: dict[str, Any],
    user_token: str | None,
    transport: httpx.AsyncBaseTransport | None,
    max_bytes: int,
) -> str:
    if not isinstance(arguments, dict):
        return "Error: the arguments must be a JSON object"
    # The caller's values (trusted: they come with the API key) override the model's.
    values = {**{k: v for k, v in arguments.items() if k not in spec.passthrough}, **passthrough}
    missing = _missing(spec, values)
    if missing:
        return "Error: missing required argument(s): " + ", ".join(missing)
    url, used = _fill_url(spec.url, values)
    values = {k: v for k, v in values.items() if k not in used}
    headers = dict(spec.headers)
    if spec.auth.type != "none":
        token = user_token if spec.auth.type == "user_token" else spec.auth.token
        if not token:
            return (
                "Error: this tool needs a user token "
                "(biz_params.user_defined_tokens[tool_id].user_token)"
            )
        headers[spec.auth.header] = f"{spec.auth.scheme} {token}".strip()
    in_query = spec.method in ("GET", "DELETE")
    response = await fetch(
        guard,
        spec.method,
        url,
        params={k: _query_value(v) for k, v in values.items()} if in_query and values else None,
        json=None if in_query else values,
        headers=headers,
        timeout=spec.timeout,
        max_bytes=max_bytes,
        transport=transport,
    )
    text = response.text.strip()
    if len(text) > MAX_OBSERVATION_CHARS:
        text, response_truncated = text[:MAX_OBSERVATION_CHARS], True
    else:
        response_truncated = response.truncated
    if response_truncated:
        text += "\n[response truncated]"
    if response.status >= 400:
        return f"Error: HTTP {response.status}: {text}"
    return text or f"HTTP {response.status} (empty response)"


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
