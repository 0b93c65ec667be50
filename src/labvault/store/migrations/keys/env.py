from alembic import context

from labvault.store.schema import run_env

run_env(context)
