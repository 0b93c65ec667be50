"""pending data keys of re-keys

Revision ID: 0003
Revises: 0002
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('pending_data_key',
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('kek_version', sa.Integer(), nullable=False),
    sa.Column('wrapped', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('patient_id', name=op.f('pk_pending_data_key'))
    )
    with op.batch_alter_table('pending_data_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pending_data_key_kek_version'), ['kek_version'], unique=False)


def downgrade() -> None:
    op.drop_table('pending_data_key')
