"""four eyes: who requested and who approved an account, a token's state

Revision ID: 0006
Revises: 0005
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('requested_by', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('approved_by', sa.String(length=200), nullable=True))

    # Tokens issued before this revision were in force at once: they stay active. The default
    # only fills them in; new rows always name their state.
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=20), nullable=False,
                                      server_default='active'))
        batch_op.add_column(sa.Column('approved_by', sa.String(length=200), nullable=True))

    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.alter_column('status', existing_type=sa.String(length=20),
                              existing_nullable=False, server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.drop_column('approved_by')
        batch_op.drop_column('status')

    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.drop_column('approved_by')
        batch_op.drop_column('requested_by')
