"""Every table module, imported once so Alembic (and anything that needs the
whole schema) sees all tables. A feature with its own tables adds one line here."""

from openbailian.storage import models  # noqa: F401
from openbailian.storage import knowledge_models  # noqa: F401
from openbailian.storage import files_models  # noqa: F401
from openbailian.storage import memory_models  # noqa: F401
