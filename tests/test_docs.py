"""The user documentation cannot silently fall behind the code.

- every ``Settings`` field has a row ``OPENBAILIAN_<FIELD>`` in docs/configuration.md, and
  every ``OPENBAILIAN_*`` name the docs mention is a real setting;
- every ``ModelSpec`` field is documented in docs/configuration.md;
- every code of ``ERROR_TABLE`` has a row in docs/errors.md with the right HTTP status,
  and the table lists no code the server cannot return;
- every package and top-level module of ``openbailian`` and every migration appears in
  docs/architecture.md;
- relative links between the docs lead to files that exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from openbailian.api.errors import ERROR_TABLE
from openbailian.config import ModelSpec, Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PACKAGE = ROOT / "openbailian"
OWN_DOCS = [
    DOCS / "configuration.md",
    DOCS / "deployment.md",
    DOCS / "errors.md",
    DOCS / "architecture.md",
    ROOT / "README.zh-CN.md",
]
# Environment variables the docs may name that are not Settings fields.
NOT_SETTINGS = {"OPENBAILIAN_TEST_POSTGRES_URL"}
# Codes answered by the HTTP layer itself (api/errors.py handlers), not by ERROR_TABLE.
HANDLER_CODES = {"NotFound": 404, "MethodNotAllowed": 405, "InvalidRequest": None, "InternalError": 500}
# Docs written by others, which may not exist yet when these docs link to them.
OTHERS_DOCS = {"benchmarks.md"}

ROW = re.compile(r"^\|\s*(\d{3}|other)\s*\|\s*`([A-Za-z.]+)`\s*\|", re.MULTILINE)


def read(path: Path) -> str:
    assert path.exists(), f"{path.relative_to(ROOT)} is missing"
    return path.read_text(encoding="utf-8")


def env_name(field: str) -> str:
    return f"OPENBAILIAN_{field.upper()}"


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_has_a_row_in_configuration(field: str) -> None:
    text = read(DOCS / "configuration.md")
    assert re.search(rf"^\|\s*`{env_name(field)}`\s*\|", text, re.MULTILINE), (
        f"docs/configuration.md has no table row for {env_name(field)}"
    )


def test_docs_name_only_real_settings() -> None:
    known = {env_name(f) for f in Settings.model_fields} | NOT_SETTINGS
    for path in OWN_DOCS:
        named = set(re.findall(r"OPENBAILIAN_[A-Z0-9_]*[A-Z0-9]", read(path)))
        unknown = sorted(named - known)
        assert not unknown, f"{path.relative_to(ROOT)} names settings that do not exist: {unknown}"


@pytest.mark.parametrize("field", sorted(ModelSpec.model_fields))
def test_every_model_spec_field_is_documented(field: str) -> None:
    text = read(DOCS / "configuration.md")
    assert re.search(rf"^\|\s*`{field}`\s*\|", text, re.MULTILINE), (
        f"docs/configuration.md does not document the model field `{field}`"
    )


def documented_codes() -> dict[str, set[str]]:
    """code → HTTP statuses of its rows in docs/errors.md."""
    rows: dict[str, set[str]] = {}
    for status, code in ROW.findall(read(DOCS / "errors.md")):
        rows.setdefault(code, set()).add(status)
    return rows


@pytest.mark.parametrize(
    ("status", "code"), sorted({(status, code) for _, status, code in ERROR_TABLE}), ids=lambda v: str(v)
)
def test_every_error_code_has_a_row_with_its_status(status: int, code: str) -> None:
    rows = documented_codes()
    assert code in rows, f"docs/errors.md has no table row for {code}"
    assert str(status) in rows[code], f"docs/errors.md gives {code} the status {rows[code]}, not {status}"


def test_errors_table_lists_only_codes_the_server_returns() -> None:
    known = {code for _, _, code in ERROR_TABLE} | set(HANDLER_CODES)
    unknown = sorted(set(documented_codes()) - known)
    assert not unknown, f"docs/errors.md documents codes the server never returns: {unknown}"


def test_errors_doc_shows_the_in_stream_error_framing() -> None:
    from openbailian.api.completion.render import sse_error_block

    block = sse_error_block(7, 503, "ModelServiceUnavailable", "m", "r").decode()
    head = block.split("data:")[0]
    text = read(DOCS / "errors.md")
    assert head in text, (
        "docs/errors.md no longer shows the event:error framing the server sends"
    )


def package_parts() -> list[str]:
    parts = []
    for path in sorted(PACKAGE.iterdir()):
        if path.is_dir() and any(path.glob("*.py")):  # namespace packages (files/) too
            parts.append(f"{path.name}/")
        elif path.suffix == ".py" and path.name != "__init__.py":
            parts.append(path.name)
    return parts


@pytest.mark.parametrize("part", package_parts())
def test_architecture_maps_every_package(part: str) -> None:
    assert f"`{part}`" in read(DOCS / "architecture.md"), f"docs/architecture.md does not map {part}"


@pytest.mark.parametrize(
    "revision",
    sorted(p.name.split("_", 1)[0] for p in (PACKAGE / "storage/migrations/versions").glob("[0-9]*.py")),
)
def test_architecture_lists_every_migration(revision: str) -> None:
    assert revision in read(DOCS / "architecture.md"), f"docs/architecture.md does not list migration {revision}"


@pytest.mark.parametrize("path", OWN_DOCS, ids=lambda p: p.name)
def test_relative_links_lead_somewhere(path: Path) -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", read(path)):
        if "://" in target or target.startswith("mailto:") or Path(target).name in OTHERS_DOCS:
            continue
        assert (path.parent / target).exists(), f"{path.relative_to(ROOT)} links to missing {target}"
