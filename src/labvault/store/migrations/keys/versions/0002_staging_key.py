"""staging keys of migrations

Revision ID: 0002
Revises: 0001
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('staging_key',
    sa.Column('migration_id', sa.Uuid(), nullable=False),
    sa.Column('kek_version', sa.Integer(), nullable=False),
    sa.Column('wrapped', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('migration_id', name=op.f('pk_staging_key'))
    )
    with op.batch_alter_table('staging_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staging_key_kek_version'), ['kek_version'], unique=False)


def downgrade() -> None:
    op.drop_table('staging_key')
