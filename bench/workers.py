"""Ingestion throughput with one and with two ``openbailian worker`` processes, in one run.

    .venv/bin/python bench/workers.py --postgres-url postgresql://postgres@127.0.0.1:55515/postgres \
        [--documents 24] [--workers 1 2]

For each worker count: a throwaway database on that server; a real ``openbailian serve
--workers 1 --no-workers`` queues the same ``--documents`` Markdown documents (generated
from bench/knowledge.py's sentences, ~3,000 characters each) in a new knowledge base and
stops; then that many ``openbailian worker`` processes start together on the database and
the server's home, with the settings' defaults (the bundled embedder on every core, four
documents at a time per worker). Timed from the workers' start to the last document's
``FILE_IS_READY`` (wall), and from the first document's claim to the last one ready
(work, without the workers' start-up), both read from the documents' status history.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.knowledge import SENTENCES  # noqa: E402
from bench.serving import command, serving, stop  # noqa: E402

ADMIN = "ob-admin-bench-workers"
TERMINAL = {"FILE_IS_READY", "PARSE_FAILED", "INDEX_BUILDING_FAILED", "SAFE_CHECK_FAILED"}


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def documents(count: int) -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(15)
    out = []
    for i in range(count):
        sections = [f"## Section {s + 1}\n\n" + " ".join(rng.choice(SENTENCES, 8)) for s in range(6)]
        out.append((f"handbook-{i}.md", (f"# Handbook {i}\n\n" + "\n\n".join(sections)).encode()))
    return out


def queue(env: dict[str, str], home: Path, files: list[tuple[str, bytes]]) -> str:
    """The documents uploaded to a new base by a server that runs no background work."""
    with serving(env, home, admin=ADMIN, workspace="bench") as (_, client):
        base = client.post("/manage/v1/knowledge/bases", json={"name": "handbooks"})
        base.raise_for_status()
        base_id = str(base.json()["index_id"])
        for start in range(0, len(files), 8):
            added = client.post(f"/manage/v1/knowledge/bases/{base_id}/files",
                                files=[("files", f) for f in files[start : start + 8]])
            added.raise_for_status()
        return base_id


def _statuses(url: str, base_id: str) -> list[tuple[str, list[dict[str, Any]], int]]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from openbailian.storage.db import sync_url

    engine = create_engine(sync_url(url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT status, history, chunk_count FROM knowledge_documents WHERE base_id = :b"), {"b": base_id}
            )
            return [(status, history if isinstance(history, list) else [], int(chunks)) for status, history, chunks in rows]
    finally:
        engine.dispose()


def _timestamp(iso: str) -> float:
    at = datetime.fromisoformat(iso)
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).timestamp()  # stored in UTC


def ingest(url: str, env: dict[str, str], home: Path, base_id: str, workers: int, timeout: float) -> dict[str, Any]:
    start_wall, started = time.time(), time.perf_counter()
    logs = [(home / f"worker-{w}.log").open("wb") for w in range(workers)]
    processes = [subprocess.Popen(command("worker", "--log-level", "info"), env=env, stdout=log, stderr=subprocess.STDOUT)
                 for log in logs]
    try:
        while True:
            rows = _statuses(url, base_id)
            if all(status in TERMINAL for status, _, _ in rows):
                break
            if time.perf_counter() - started > timeout or any(p.poll() is not None for p in processes):
                raise RuntimeError(f"ingestion did not finish: {[s for s, _, _ in rows]}")
            time.sleep(0.5)
        wall = time.perf_counter() - started
    finally:
        for process in processes:
            stop(process)
        for log in logs:
            log.close()
    times = [(entry["status"], _timestamp(entry["at"])) for _, history, _ in rows for entry in history]
    claimed = min(at for status, at in times if status != "INIT")
    ready = max(at for status, at in times if status == "FILE_IS_READY")
    return {
        "ready": sum(status == "FILE_IS_READY" for status, _, _ in rows), "documents": len(rows),
        "chunks": sum(chunks for _, _, chunks in rows), "wall": wall, "startup": claimed - start_wall,
        "work": ready - claimed,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres-url", required=True, help="a PostgreSQL server (a database is made and dropped per run)")
    parser.add_argument("--documents", type=int, default=24)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    from tests.support import PostgresDatabase

    files = documents(args.documents)
    lines = []
    _log(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for workers in args.workers:
        database = PostgresDatabase(args.postgres_url)
        url = database.create()
        try:
            with tempfile.TemporaryDirectory(prefix="bench-workers-") as folder:
                home = Path(folder)
                env = {
                    **{k: v for k, v in os.environ.items() if not k.startswith("OPENBAILIAN_")},
                    "OPENBAILIAN_HOME": str(home / "home"), "OPENBAILIAN_DATABASE_URL": url,
                    "OPENBAILIAN_ADMIN_TOKEN": ADMIN, "OPENBAILIAN_DEFAULT_MODEL": "echo",
                    "OPENBAILIAN_WORKER_POLL_SECONDS": "0.5",
                }
                base_id = queue(env, home, files)
                _log(f"{args.documents} documents queued; {workers} worker(s) start")
                result = ingest(url, env, home, base_id, workers, args.timeout)
                _log(f"{workers} worker(s): {result}")
        finally:
            database.drop()
        lines.append(
            f"| {workers} | {result['ready']}/{result['documents']} | {result['chunks']} | {result['wall']:.1f} | "
            f"{result['startup']:.1f} | {result['work']:.1f} | {result['documents'] / result['work']:.2f} | "
            f"{result['chunks'] / result['work']:.1f} |"
        )
    print("| worker processes | documents ready | chunks | wall (s) | start-up to first claim (s) | "
          "first claim to last ready (s) | documents/s | chunks/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(lines), flush=True)
    _log(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
