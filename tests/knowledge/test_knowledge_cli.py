"""``openbailian kb`` as a script uses it: --json in, JSON out."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from openbailian.cli import app


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENBAILIAN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OPENBAILIAN_DATABASE_URL", raising=False)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args))

    return invoke


def test_create_add_wait_and_list(run, corpus):
    created = run("kb", "create", "--name", "phones", "--json")
    assert created.exit_code == 0, created.output
    index_id = json.loads(created.output)["index_id"]
    added = run("kb", "add", index_id, str(corpus["phones"]), str(corpus["hr"]),
                "--tag", "catalog", "--meta", "dept=sales", "--wait", "--json")
    assert added.exit_code == 0, added.output
    files = json.loads(added.output)["files"]
    assert [f["status"] for f in files] == ["FILE_IS_READY", "FILE_IS_READY"]
    assert {"file_id", "name", "status"} <= set(files[0])
    listed = json.loads(run("kb", "docs", index_id, "--json").output)["files"]
    assert listed[0]["tags"] == ["catalog"] and listed[0]["metadata"] == {"dept": "sales"}
    assert json.loads(run("kb", "list", "--json").output)["indexes"][0]["index_id"] == index_id


def test_add_wait_shows_each_files_chunks_embedded(run, corpus):
    index_id = json.loads(run("kb", "create", "--name", "phones", "--json").output)["index_id"]
    added = run("kb", "add", index_id, str(corpus["phones"]), str(corpus["hr"]), "--wait")
    assert added.exit_code == 0, added.output
    for document in json.loads(run("kb", "docs", index_id, "--json").output)["files"]:
        row = next(line for line in added.output.splitlines() if line.startswith(document["name"]))
        assert f"{document['chunks']}/{document['chunks']} chunks" in row, added.output


def test_errors_exit_non_zero_and_store_nothing(run, corpus, tmp_path):
    index_id = json.loads(run("kb", "create", "--name", "x", "--json").output)["index_id"]
    bad = tmp_path / "a.exe"
    bad.write_bytes(b"MZ")
    result = run("kb", "add", index_id, str(corpus["phones"]), str(bad), "--json")
    assert result.exit_code == 1 and ".exe" in result.output
    assert json.loads(run("kb", "docs", index_id, "--json").output)["files"] == []
    assert run("kb", "add", "nope", str(corpus["phones"]), "--json").exit_code == 1
    assert run("kb", "add", index_id, str(corpus["phones"]), "--meta", "novalue", "--json").exit_code == 1


def test_show_and_reindex_a_document(run, corpus):
    index_id = json.loads(run("kb", "create", "--name", "phones", "--json").output)["index_id"]
    added = json.loads(run("kb", "add", index_id, str(corpus["phones"]), "--wait", "--json").output)
    file_id = added["files"][0]["file_id"]
    shown = json.loads(run("kb", "show", file_id, "--json").output)
    assert shown["status"] == "FILE_IS_READY" and shown["index_id"] == index_id and shown["chunks"] > 0
    assert [h["status"] for h in shown["history"]][-1] == "FILE_IS_READY"

    again = run("kb", "reindex", file_id, "--wait", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["files"][0]["status"] == "FILE_IS_READY"
    reshown = json.loads(run("kb", "show", file_id, "--json").output)
    assert reshown["chunks"] == shown["chunks"]  # replaced, not duplicated
    assert len(reshown["history"]) > len(shown["history"])
    human = run("kb", "show", file_id)
    assert human.exit_code == 0 and "FILE_IS_READY" in human.output and corpus["phones"].name in human.output


def test_reindex_of_a_broken_document_fails_again_and_unknown_ids_are_errors(run, corpus, tmp_path):
    index_id = json.loads(run("kb", "create", "--name", "x", "--json").output)["index_id"]
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7 not really a pdf")
    added = run("kb", "add", index_id, str(broken), "--wait", "--json")
    assert added.exit_code == 1
    file_id = json.loads(added.output)["files"][0]["file_id"]
    again = run("kb", "reindex", file_id, "--wait", "--json")
    assert again.exit_code == 1
    assert json.loads(again.output)["files"][0]["status"] == "PARSE_FAILED"
    for command in ("show", "reindex"):
        result = run("kb", command, "no-such-file", "--json")
        assert result.exit_code == 1 and "NotFound" in result.output


def test_every_kb_command_finds_a_base_of_another_workspace_by_id(run, corpus):
    index_id = json.loads(run("kb", "create", "--name", "team", "--workspace", "team-a", "--json").output)["index_id"]
    added = run("kb", "add", index_id, str(corpus["hr"]), "--wait", "--json")
    assert added.exit_code == 0, added.output
    [file] = json.loads(added.output)["files"]
    assert file["status"] == "FILE_IS_READY"
    assert [f["file_id"] for f in json.loads(run("kb", "docs", index_id, "--json").output)["files"]] == [file["file_id"]]
    assert json.loads(run("kb", "show", file["file_id"], "--json").output)["index_id"] == index_id
    # --workspace stays a check: the wrong one is refused, naming it; nothing is added.
    wrong = run("kb", "add", index_id, str(corpus["phones"]), "--workspace", "team-b", "--json")
    assert wrong.exit_code == 1 and "team-b" in wrong.output
    assert run("kb", "docs", index_id, "--workspace", "team-a", "--json").exit_code == 0
    assert run("kb", "rm", file["file_id"], "--workspace", "team-b", "--json").exit_code == 1
    assert run("kb", "rm", file["file_id"], "--json").exit_code == 0
    assert run("kb", "delete", index_id, "--json").exit_code == 0
    gone = run("kb", "docs", index_id, "--json")
    assert gone.exit_code == 1 and "does not exist" in gone.output


def test_add_wait_rebuilds_a_corrupt_model_file_and_finds_the_same(run, corpus, tmp_path):
    """A damaged model file under the home is replaced, not loaded: the next ``kb add`` works and
    leaves the file that was built before (tests/knowledge/test_e5onnx.py: identical vectors)."""
    index_id = json.loads(run("kb", "create", "--name", "phones", "--json").output)["index_id"]
    assert run("kb", "add", index_id, str(corpus["phones"]), "--wait", "--json").exit_code == 0
    [model] = (tmp_path / "home" / "models").glob("*.onnx")
    good = model.read_bytes()
    model.write_bytes(good[: len(good) // 2] + bytes(1000))
    added = run("kb", "add", index_id, str(corpus["hr"]), "--wait", "--json")
    assert added.exit_code == 0, added.output
    assert [f["status"] for f in json.loads(added.output)["files"]] == ["FILE_IS_READY"]
    assert [p.name for p in model.parent.iterdir()] == [model.name] and model.read_bytes() == good
