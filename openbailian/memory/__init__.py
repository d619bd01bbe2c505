"""Long-term memory: memory bodies (``memory_id``) whose items are facts about a user.

- ``extract``: the extraction prompt and a parser tolerant of small-model output.
- ``store``: ``MemoryStore(db, embedder)`` — save with dedup/update, recall by
  similarity and recency within a token budget.
- ``queue``: ``ExtractionQueue`` — extraction jobs kept in the database
  (``memory_extractions``), run by any process that runs background work.
- ``source``: ``MemorySource(store)`` (``ContextSource``) and
  ``MemoryObserver(queue)`` (``TurnObserver``: queues the turn's extraction).
Management use cases (create/list/delete memories and items) are in
``openbailian.services.memory``.
"""

from openbailian.memory.extract import Fact, parse_facts
from openbailian.memory.queue import ExtractionQueue
from openbailian.memory.source import MemoryObserver, MemorySource
from openbailian.memory.store import Embedder, MemoryStore, Recalled

__all__ = [
    "Embedder",
    "ExtractionQueue",
    "Fact",
    "MemoryObserver",
    "MemorySource",
    "MemoryStore",
    "Recalled",
    "parse_facts",
]
