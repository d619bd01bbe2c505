"""Every table module, imported once so Alembic (and anything that needs the
whole schema) sees all tables. A feature with its own tables adds one line here."""

from openbailian.storage import (
    console_models,  # noqa: F401
    files_models,  # noqa: F401
    knowledge_models,  # noqa: F401
    memory_models,  # noqa: F401
    models,  # noqa: F401
    prompt_models,  # noqa: F401
    usage_models,  # noqa: F401
)
