"""Parameter reading as the SDKs send values: JSON strings, booleans in two spellings,
numbers as strings; a bad value names its parameter."""

from __future__ import annotations

import pytest

from openbailian.api.openapi.params import Params
from openbailian.errors import InvalidParameter


def params(**values: str) -> Params:
    return Params.of(values.items())


@pytest.mark.parametrize(("raw", "expected"), [("True", True), ("true", True), ("False", False), ("false", False)])
def test_booleans_in_every_sdk_spelling(raw: str, expected: bool) -> None:
    assert params(EnableRewrite=raw).boolean("EnableRewrite") is expected


def test_json_strings_and_numbers() -> None:
    given = params(DocumentIds='["f1","f2"]', SearchFilters='[{"k":"v"}]', Config='{"a":1}', SizeInBytes="42")
    assert given.json_list("DocumentIds") == ["f1", "f2"]
    assert given.json_list("SearchFilters", item=dict) == [{"k": "v"}]
    assert given.json_object("Config") == {"a": 1}
    assert given.integer("SizeInBytes", minimum=1) == 42
    assert given.json_list("CategoryIds") is None and given.integer("Missing", default=7) == 7


@pytest.mark.parametrize(
    ("name", "raw", "read"),
    [
        ("DocumentIds", '["f1",', lambda p: p.json_list("DocumentIds")),
        ("DocumentIds", '"f1"', lambda p: p.json_list("DocumentIds")),
        ("DocumentIds", "[1, 2]", lambda p: p.json_list("DocumentIds")),
        ("DocumentIds", "[true]", lambda p: p.json_list("DocumentIds", item=int)),
        ("Columns", "[1]", lambda p: p.json_object("Columns")),
        ("Columns", "[" * 100_000, lambda p: p.json_value("Columns")),
        ("EnableRewrite", "yes", lambda p: p.boolean("EnableRewrite")),
        ("PageSize", "ten", lambda p: p.integer("PageSize")),
        ("PageSize", "0", lambda p: p.integer("PageSize", minimum=1)),
        ("RerankMinScore", "nan", lambda p: p.number("RerankMinScore", minimum=0, maximum=1)),
        ("StructureType", "graph", lambda p: p.choice("StructureType", ["structured", "unstructured"])),
        ("Name", "", lambda p: p.required_text("Name")),
    ],
)
def test_a_bad_value_names_its_parameter(name: str, raw: str, read) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidParameter, match=name):
        read(params(**{name: raw}))


def test_the_path_wins_over_the_body_which_wins_over_the_query() -> None:
    merged = Params.of([("Id", "path")], [("Id", "form"), ("Name", "form")], [("Id", "q"), ("Name", "q"), ("Q", "q")])
    assert (merged.text("Id"), merged.text("Name"), merged.text("Q")) == ("path", "form", "q")
