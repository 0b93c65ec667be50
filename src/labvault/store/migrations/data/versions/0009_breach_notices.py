"""breach: sealed findings of results and comments, notices to people, erasure certificates

Revision ID: 0009
Revises: 0008
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Scope documents are sealed from now on; one computed before cannot be opened (it fails
    # closed, naming the scope): compute it again.
    with op.batch_alter_table('incident_scope', schema=None) as batch_op:
        batch_op.alter_column('document', existing_type=sa.Text(), type_=sa.LargeBinary(),
                              existing_nullable=False,
                              postgresql_using='convert_to(document, \'UTF8\')')
    op.create_table('erasure_certificate',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('issued_by', sa.String(length=200), nullable=False),
    sa.Column('document', sa.Text(), nullable=False),
    sa.Column('digest', sa.LargeBinary(length=32), nullable=False),
    sa.Column('signature', sa.LargeBinary(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_erasure_certificate'))
    )
    op.create_table('breach_notice',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('incident_id', sa.Uuid(), nullable=True),
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.Column('channel', sa.String(length=10), nullable=False),
    sa.Column('code_tag', sa.LargeBinary(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('delivery', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], name=op.f('fk_breach_notice_incident_id_incident')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_breach_notice')),
    sa.UniqueConstraint('code_tag', name=op.f('uq_breach_notice_code_tag'))
    )
    with op.batch_alter_table('breach_notice', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_breach_notice_incident_id'), ['incident_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_breach_notice_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index('ix_breach_notice_queue', ['state', 'next_attempt_at'], unique=False)
        batch_op.create_index('uq_breach_notice_incident_pair',
                              ['incident_id', 'patient_id', 'channel'], unique=True,
                              sqlite_where=sa.text("kind = 'incident'"),
                              postgresql_where=sa.text("kind = 'incident'"))

    with op.batch_alter_table('comment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('findings', sa.LargeBinary(), nullable=True))

    with op.batch_alter_table('result', schema=None) as batch_op:
        batch_op.add_column(sa.Column('findings', sa.LargeBinary(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('incident_scope', schema=None) as batch_op:
        batch_op.alter_column('document', existing_type=sa.LargeBinary(), type_=sa.Text(),
                              existing_nullable=False,
                              postgresql_using='convert_from(document, \'UTF8\')')
    with op.batch_alter_table('result', schema=None) as batch_op:
        batch_op.drop_column('findings')

    with op.batch_alter_table('comment', schema=None) as batch_op:
        batch_op.drop_column('findings')

    with op.batch_alter_table('breach_notice', schema=None) as batch_op:
        batch_op.drop_index('uq_breach_notice_incident_pair')
        batch_op.drop_index('ix_breach_notice_queue')
        batch_op.drop_index(batch_op.f('ix_breach_notice_patient_id'))
        batch_op.drop_index(batch_op.f('ix_breach_notice_incident_id'))

    op.drop_table('breach_notice')
    op.drop_table('erasure_certificate')
