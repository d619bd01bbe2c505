"""The prompt-template family through the official SDK (unmodified), signed and with a
bearer token: create, get, update, list (paging, name and type filters), delete, with
``variables`` read from the ``{{…}}`` of the content; bad input answers in the bare
lower-camel envelope and changes nothing; another workspace's templates are answered
exactly like missing ones."""

from __future__ import annotations

from typing import Any

import pytest
from alibabacloud_bailian20231229 import models
from alibabacloud_bailian20231229.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException

from tests.api.openapi.conftest import WORKSPACE, OpenApi, create_key


def refused(call, status: int, code: str, mentions: str = "") -> dict[str, Any]:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientException) as caught:
        call()
    error = caught.value
    assert (error.status_code, error.code) == (status, code), error.data
    body = error.data
    assert body["requestId"] and body["RequestId"] == body["requestId"]
    assert body["code"] == body["Code"] == code and mentions in body["message"], body
    return body


def create(sdk: Client, name: str, content: str, workspace: str = WORKSPACE) -> str:
    body = sdk.create_prompt_template(workspace, models.CreatePromptTemplateRequest(name=name, content=content)).body
    assert body.request_id
    return body.prompt_template_id


def listing(sdk: Client, **query: Any) -> models.ListPromptTemplatesResponseBody:
    return sdk.list_prompt_templates(WORKSPACE, models.ListPromptTemplatesRequest(**query)).body


def test_prompt_templates_end_to_end(sdk: Client) -> None:
    template_id = create(sdk, "美食推荐", "请推荐{{city}}的{{ dish }}，只说{{city}}的")
    got = sdk.get_prompt_template(WORKSPACE, template_id, models.GetPromptTemplateRequest()).body
    assert (got.prompt_template_id, got.name, got.workspace_id) == (template_id, "美食推荐", WORKSPACE)
    assert got.content == "请推荐{{city}}的{{ dish }}，只说{{city}}的"
    assert got.variables == ["city", "dish"]  # each once, in order of first use

    sdk.update_prompt_template(WORKSPACE, template_id, models.UpdatePromptTemplateRequest(content="{{user}}你好"))
    got = sdk.get_prompt_template(WORKSPACE, template_id, models.GetPromptTemplateRequest()).body
    assert (got.name, got.content, got.variables) == ("美食推荐", "{{user}}你好", ["user"])
    sdk.update_prompt_template(WORKSPACE, template_id, models.UpdatePromptTemplateRequest(name="问候"))
    got = sdk.get_prompt_template(WORKSPACE, template_id, models.GetPromptTemplateRequest()).body
    assert (got.name, got.content) == ("问候", "{{user}}你好")

    body = listing(sdk)
    assert body.workspace_id == WORKSPACE and body.total_count == 1 and body.next_token is None
    (item,) = body.prompt_templates
    assert (item.prompt_template_id, item.name, item.type, item.variables) == (template_id, "问候", "Custom", ["user"])

    assert sdk.delete_prompt_template(WORKSPACE, template_id, models.DeletePromptTemplateRequest()).body.request_id
    refused(lambda: sdk.get_prompt_template(WORKSPACE, template_id, models.GetPromptTemplateRequest()),
            404, "PromptTemplateNotFound", template_id)
    assert listing(sdk).total_count == 0


def test_listing_pages_and_filters(openapi: OpenApi) -> None:
    sdk = openapi.signed
    made = [create(sdk, name, f"{name} {{{{x{n}}}}}") for n, name in enumerate(
        ["Daily Report", "weekly report", "菜单", "周报 report", "Summary"]
    )]
    seen, token, pages = [], None, 0
    while True:
        body = listing(sdk, max_results=2, next_token=token)
        assert body.total_count == 5 and body.max_results == 2 and len(body.prompt_templates) <= 2
        seen += [t.prompt_template_id for t in body.prompt_templates]
        pages += 1
        token = body.next_token
        if token is None:
            break
    assert seen == made and pages == 3  # creation order, each once

    reports = listing(sdk, name="REPORT")  # part of the name, any case
    assert [t.name for t in reports.prompt_templates] == ["Daily Report", "weekly report", "周报 report"]
    assert reports.total_count == 3
    assert listing(sdk, name="菜").prompt_templates[0].variables == ["x2"]
    assert listing(sdk, type="Custom").total_count == 5
    assert listing(sdk, type="System").total_count == 0  # no preset templates here
    assert listing(sdk, name="nothing like it").prompt_templates == []


def test_bad_input_is_refused_and_changes_nothing(openapi: OpenApi) -> None:
    sdk = openapi.signed
    template_id = create(sdk, "原名", "原来的{{a}}")

    def create_with(**fields: Any):  # type: ignore[no-untyped-def]
        return lambda: sdk.create_prompt_template(WORKSPACE, models.CreatePromptTemplateRequest(**fields))

    refused(create_with(content="x"), 400, "InvalidParameter", "name")
    refused(create_with(name="x"), 400, "InvalidParameter", "content")
    refused(create_with(name="x", content="   "), 400, "InvalidParameter", "content")
    refused(create_with(name="x" * 101, content="x"), 400, "InvalidParameter", "name")
    refused(create_with(name="x", content="x" * 20_001), 400, "InvalidParameter", "content")
    for query, mentions in (
        ({"max_results": 0}, "maxResults"), ({"max_results": 101}, "maxResults"),
        ({"next_token": "garbage"}, "nextToken"), ({"type": "Other"}, "type"),
    ):
        refused(lambda: listing(sdk, **query), 400, "InvalidParameter", mentions)
    refused(lambda: sdk.update_prompt_template(WORKSPACE, template_id, models.UpdatePromptTemplateRequest()),
            400, "InvalidParameter")
    refused(lambda: sdk.update_prompt_template(WORKSPACE, template_id, models.UpdatePromptTemplateRequest(name="")),
            400, "InvalidParameter", "name")
    for operation in (
        lambda: sdk.get_prompt_template(WORKSPACE, "pt_nope", models.GetPromptTemplateRequest()),
        lambda: sdk.update_prompt_template(WORKSPACE, "pt_nope", models.UpdatePromptTemplateRequest(name="x")),
        lambda: sdk.delete_prompt_template(WORKSPACE, "pt_nope", models.DeletePromptTemplateRequest()),
    ):
        refused(operation, 404, "PromptTemplateNotFound", "pt_nope")

    # another workspace's template looks exactly like a missing one, and is left alone
    other = openapi.client(credentials=create_key(openapi.server, "ws-other"))
    theirs = create(other, "theirs", "他们的{{b}}", workspace="ws-other")
    missing = refused(lambda: sdk.get_prompt_template(WORKSPACE, "pt_nope", models.GetPromptTemplateRequest()),
                      404, "PromptTemplateNotFound")
    foreign = refused(lambda: sdk.get_prompt_template(WORKSPACE, theirs, models.GetPromptTemplateRequest()),
                      404, "PromptTemplateNotFound")
    assert foreign["message"].replace(theirs, "ID") == missing["message"].replace("pt_nope", "ID")
    refused(lambda: sdk.update_prompt_template(WORKSPACE, theirs, models.UpdatePromptTemplateRequest(name="x")),
            404, "PromptTemplateNotFound")
    refused(lambda: sdk.delete_prompt_template(WORKSPACE, theirs, models.DeletePromptTemplateRequest()),
            404, "PromptTemplateNotFound")
    kept = other.get_prompt_template("ws-other", theirs, models.GetPromptTemplateRequest()).body
    assert (kept.name, kept.content, kept.variables) == ("theirs", "他们的{{b}}", ["b"])

    got = sdk.get_prompt_template(WORKSPACE, template_id, models.GetPromptTemplateRequest()).body
    assert (got.name, got.content, got.variables) == ("原名", "原来的{{a}}", ["a"])
    body = listing(sdk)
    assert body.total_count == 1 and [t.prompt_template_id for t in body.prompt_templates] == [template_id]
