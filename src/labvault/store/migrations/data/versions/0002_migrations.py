"""migration bookkeeping: plans, import units, provenance, quarantine, reports

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
    op.create_table('migration',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('plan_sha256', sa.LargeBinary(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('staging_deadline', sa.DateTime(timezone=True), nullable=False),
    sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_migration'))
    )
    op.create_table('import_unit',
    sa.Column('migration_id', sa.Uuid(), nullable=False),
    sa.Column('file_index', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('outcome', sa.String(length=12), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=True),
    sa.Column('content_digest', sa.LargeBinary(length=16), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['migration_id'], ['migration.id'], name=op.f('fk_import_unit_migration_id_migration')),
    sa.PrimaryKeyConstraint('migration_id', 'file_index', 'seq', name=op.f('pk_import_unit'))
    )
    with op.batch_alter_table('import_unit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_import_unit_content_digest'), ['content_digest'], unique=False)

    op.create_table('migration_report',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('migration_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['migration_id'], ['migration.id'], name=op.f('fk_migration_report_migration_id_migration')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_migration_report'))
    )
    with op.batch_alter_table('migration_report', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_migration_report_migration_id'), ['migration_id'], unique=False)

    op.create_table('quarantine',
    sa.Column('migration_id', sa.Uuid(), nullable=False),
    sa.Column('file_index', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('line', sa.Integer(), nullable=True),
    sa.Column('segment', sa.String(length=200), nullable=True),
    sa.Column('field', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['migration_id'], ['migration.id'], name=op.f('fk_quarantine_migration_id_migration')),
    sa.PrimaryKeyConstraint('migration_id', 'file_index', 'seq', name=op.f('pk_quarantine'))
    )
    op.create_table('source_patient',
    sa.Column('migration_id', sa.Uuid(), nullable=False),
    sa.Column('code_bidx', sa.LargeBinary(length=16), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['migration_id'], ['migration.id'], name=op.f('fk_source_patient_migration_id_migration')),
    sa.PrimaryKeyConstraint('migration_id', 'code_bidx', name=op.f('pk_source_patient'))
    )
    op.create_table('order_provenance',
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('migration_id', sa.Uuid(), nullable=False),
    sa.Column('file_index', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['migration_id'], ['migration.id'], name=op.f('fk_order_provenance_migration_id_migration')),
    sa.ForeignKeyConstraint(['order_id'], ['lab_order.id'], name=op.f('fk_order_provenance_order_id_lab_order'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('order_id', name=op.f('pk_order_provenance'))
    )
    with op.batch_alter_table('order_provenance', schema=None) as batch_op:
        batch_op.create_index('ix_order_provenance_unit', ['migration_id', 'file_index', 'seq'], unique=False)


def downgrade() -> None:
    for table in ('order_provenance', 'source_patient', 'quarantine', 'migration_report',
                  'import_unit', 'migration'):
        op.drop_table(table)
