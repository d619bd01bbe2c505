"""Long-term memory: memory bodies (``memory_id``) whose items are facts about a user.

- ``extract``: the extraction prompt and a parser tolerant of small-model output.
- ``store``: ``MemoryStore(db, embedder)`` — save with dedup/update, recall by
  similarity and recency within a token budget.
- ``source``: ``MemorySource(store)`` (``ContextSource``) and
  ``MemoryObserver(store, models, settings)`` (``TurnObserver``).
Management use cases (create/list/delete memories and items) are in
``openbailian.services.memory``.
"""

from openbailian.memory.extract import Fact, parse_facts
from openbailian.memory.source import MemoryObserver, MemorySource
from openbailian.memory.store import Embedder, MemoryStore, Recalled

__all__ = [
    "Embedder",
    "Fact",
    "MemoryObserver",
    "MemorySource",
    "MemoryStore",
    "Recalled",
    "parse_facts",
]
