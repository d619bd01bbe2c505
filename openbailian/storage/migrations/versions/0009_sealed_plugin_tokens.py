"""seal plugin service tokens stored in plaintext

Revision ID: 0009
Revises: 0001

Plugin service tokens are kept sealed with ``crypto.SecretBox`` (the server key); this
seals the ones written before. The server key comes from ``storage.db.migrate(url, box)``
(the runtime passes it); without one, a database holding plaintext tokens is an error
rather than a silent skip.
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0009"
down_revision = "0001"
branch_labels = None
depends_on = None  # on a fresh database 0004 may come later: nothing to seal then

SEALED_PREFIX = "fernet:"


def upgrade() -> None:
    connection = op.get_bind()
    if not sa.inspect(connection).has_table("plugins"):
        return  # created later (0004) with no rows to seal
    plugins = sa.table("plugins", sa.column("id", sa.String), sa.column("spec", sa.JSON))
    box = context.config.attributes.get("secret_box")
    for plugin_id, spec in connection.execute(sa.select(plugins.c.id, plugins.c.spec)).all():
        auth = dict((spec or {}).get("auth") or {})
        token = auth.get("token")
        if not token or str(token).startswith(SEALED_PREFIX):
            continue
        if box is None:
            raise RuntimeError("migration 0009 seals plugin tokens: run it through openbailian, which passes the server key")
        auth["token"] = box.seal(token)
        connection.execute(plugins.update().where(plugins.c.id == plugin_id).values(spec={**spec, "auth": auth}))


def downgrade() -> None:
    """Tokens stay sealed: opening them needs the server key, which a downgrade does not have."""
