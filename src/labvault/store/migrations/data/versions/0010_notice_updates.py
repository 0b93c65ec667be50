"""breach: the scope each notice speaks from, and one update per patient, channel and scope

Revision ID: 0010
Revises: 0009
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Notices recorded before keep NULL: their sealed delivery state names their scope.
    with op.batch_alter_table('breach_notice', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scope_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_breach_notice_scope_id_incident_scope'),
                                    'incident_scope', ['scope_id'], ['id'])
        batch_op.create_index('uq_breach_notice_update',
                              ['incident_id', 'patient_id', 'channel', 'scope_id'], unique=True,
                              sqlite_where=sa.text("kind = 'incident-update'"),
                              postgresql_where=sa.text("kind = 'incident-update'"))


def downgrade() -> None:
    # The code before this revision would send an update as an exposure answer: drop them.
    op.execute("DELETE FROM breach_notice WHERE kind = 'incident-update'")
    with op.batch_alter_table('breach_notice', schema=None) as batch_op:
        batch_op.drop_index('uq_breach_notice_update')
        batch_op.drop_constraint(batch_op.f('fk_breach_notice_scope_id_incident_scope'),
                                 type_='foreignkey')
        batch_op.drop_column('scope_id')
