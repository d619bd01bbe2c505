"""jieba's prefix dictionary kept in the home: the same words and counts as jieba's own, so the
same search terms; a damaged copy is never used."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import jieba
import numpy as np

from openbailian.knowledge.bm25 import load_dictionary

TEXTS = [
    "自然语言处理是人工智能的一个重要方向，北京大学的研究者在这方面做了很多工作。",
    "Hybrid search: 关键词检索与向量检索结合，hit@5 更高。",
    "中华人民共和国国务院办公厅发布了关于进一步优化营商环境的通知。",
]


def _cuts(tokenizer: jieba.Tokenizer) -> list[list[str]]:
    return [list(tokenizer.cut_for_search(text)) for text in TEXTS]


def test_the_kept_dictionary_has_jiebas_words_and_counts_and_cuts_the_same(tmp_path):
    own = jieba.Tokenizer()
    own.initialize()
    first = jieba.Tokenizer()
    load_dictionary(first, tmp_path)  # builds it with jieba, then keeps it
    [kept] = tmp_path.glob("jieba-*.prefixes")
    assert oct(kept.stat().st_mode & 0o777) == "0o600"
    again = jieba.Tokenizer()
    load_dictionary(again, tmp_path)  # read from the kept file
    assert again.FREQ == own.FREQ and again.total == own.total
    assert _cuts(again) == _cuts(own) == _cuts(first)


def test_a_damaged_copy_is_not_used_and_is_written_again(tmp_path):
    load_dictionary(jieba.Tokenizer(), tmp_path)
    [kept] = tmp_path.glob("jieba-*.prefixes")
    data = bytearray(kept.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in the words or counts
    kept.write_bytes(bytes(data))
    loaded = jieba.Tokenizer()
    load_dictionary(loaded, tmp_path)
    own = jieba.Tokenizer()
    own.initialize()
    assert loaded.FREQ == own.FREQ and _cuts(loaded) == _cuts(own)
    assert kept.read_bytes() != bytes(data)  # written again, whole
    kept.write_bytes(b"OBJD1\n")  # cut short
    short = jieba.Tokenizer()
    load_dictionary(short, tmp_path)
    assert short.FREQ == own.FREQ


def _kb_add(home: Path, document: Path) -> list[tuple[str, str, bytes]]:
    """``openbailian kb add --wait`` in its own process (so jieba is loaded in it); the stored chunks."""
    env = {**os.environ, "OPENBAILIAN_HOME": str(home)}
    env.pop("OPENBAILIAN_DATABASE_URL", None)
    command = [sys.executable, "-c", "from openbailian.cli import main; main()"]

    def cli(*args: str) -> dict[str, object]:
        done = subprocess.run([*command, *args, "--json"], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        result: dict[str, object] = json.loads(done.stdout)
        return result

    index_id = str(cli("kb", "create", "--name", f"b{len(list(home.glob('*')))}")["index_id"])
    files = cli("kb", "add", index_id, str(document), "--wait")["files"]
    assert [f["status"] for f in files] == ["FILE_IS_READY"]  # type: ignore[index]
    with sqlite3.connect(home / "openbailian.db") as db:
        return db.execute(
            "SELECT text, terms, embedding FROM knowledge_chunks WHERE base_id = ? ORDER BY seq", (index_id,)
        ).fetchall()


def test_kb_add_stores_the_same_chunks_terms_and_vectors_with_the_kept_dictionary(tmp_path):
    document = tmp_path / "doc.txt"
    document.write_text("\n\n".join(TEXTS * 20), encoding="utf-8")
    home = tmp_path / "home"
    built = _kb_add(home, document)  # no kept dictionary yet: jieba's own load, then kept
    assert list((home / "models").glob("jieba-*.prefixes"))
    kept = _kb_add(home, document)  # loaded from the kept file
    assert [(t, terms) for t, terms, _ in kept] == [(t, terms) for t, terms, _ in built]
    own = jieba.Tokenizer()
    own.initialize()
    expected = [" ".join(w.lower() for w in own.cut_for_search(t) if w.strip() and any(c.isalnum() or c == "_" for c in w)) for t, _, _ in built]
    assert [terms for _, terms, _ in built] == expected
    for (_, _, a), (_, _, b) in zip(built, kept, strict=True):
        assert np.array_equal(np.frombuffer(a, np.float32), np.frombuffer(b, np.float32))
