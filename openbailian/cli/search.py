"""``openbailian search reindex``: rebuild the knowledge search rows in PostgreSQL (pgvector).

(``openbailian kb reindex FILE_ID`` re-parses one document; this rebuilds the search
index of every base from the stored chunks, without re-embedding.)
"""

from __future__ import annotations

from typing import Any

import typer

from openbailian.cli._common import JsonOption, emit, fail, print_table, run_with_runtime
from openbailian.knowledge.search_pg import SearchUnavailable
from openbailian.knowledge.search_pg import reindex as rebuild_search
from openbailian.memory.vectors_pg import reindex_memory
from openbailian.runtime import Runtime

__all__ = ["app", "reindex"]

app = typer.Typer(help="Knowledge search in PostgreSQL (pgvector).", no_args_is_help=True)


@app.command("reindex")
def reindex(as_json: bool = JsonOption) -> None:
    """Rebuild every knowledge base's vectors (pgvector, HNSW) and keywords (tsvector, BM25
    statistics) from its chunks, and the memory items' vectors from their embeddings."""

    async def work(runtime: Runtime) -> dict[str, Any]:
        knowledge = runtime.knowledge
        try:
            counts = await rebuild_search(runtime.db, knowledge.embedder.dim)
        except SearchUnavailable as error:
            fail(str(error), code="SearchUnavailable")
        items = await reindex_memory(runtime.db, knowledge.embedder.dim)
        return {"dim": knowledge.embedder.dim, "bases": counts, "chunks": sum(counts.values()), "memory_items": items}

    result = run_with_runtime(work)
    emit(
        result,
        as_json,
        lambda: print_table(["base", "chunks"], sorted(result["bases"].items()))
        if result["bases"]
        else print(f"no knowledge bases; search tables ready (vector dimension {result['dim']})"),
    )
