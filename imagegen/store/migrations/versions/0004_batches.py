"""batches: a row per batch (tenant, callback_url, batch.finished delivery state), batch deliveries

Revision ID: 0004
Revises: 0003
Create Date: 2027-02-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
import sqlmodel

import imagegen.store.models


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('batches',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('tenant', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('callback_url', sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=True),
    sa.Column('notify_status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('notify_attempts', sa.Integer(), nullable=False),
    sa.Column('notify_next_at', imagegen.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', imagegen.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', imagegen.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.create_index('ix_batches_notify', ['notify_status', 'notify_next_at'], unique=False,
                              sqlite_where=sa.text('callback_url IS NOT NULL'),
                              postgresql_where=sa.text('callback_url IS NOT NULL'))

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        # Existing jobs get the server default: no batch had a callback before this revision.
        batch_op.add_column(sa.Column('batch_callback', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_index('ix_jobs_batch_callback_status', ['batch_id', 'status'], unique=False,
                              sqlite_where=sa.text('batch_callback = 1'),
                              postgresql_where=sa.text('batch_callback'))

    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('batch_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True))
        batch_op.alter_column('job_id', existing_type=sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True)
        batch_op.create_index(batch_op.f('ix_deliveries_batch_id'), ['batch_id'], unique=False)

    # Batches queued before this revision get their row (no callback): every batch id names one.
    op.execute(
        "INSERT INTO batches (id, tenant, notify_attempts, created_at) "
        "SELECT batch_id, MIN(tenant), 0, MIN(created_at) FROM jobs WHERE batch_id IS NOT NULL GROUP BY batch_id"
    )


def downgrade() -> None:
    op.execute("DELETE FROM deliveries WHERE job_id IS NULL")
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deliveries_batch_id'))
        batch_op.alter_column('job_id', existing_type=sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False)
        batch_op.drop_column('batch_id')

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_batch_callback_status')
        batch_op.drop_column('batch_callback')

    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_index('ix_batches_notify')
    op.drop_table('batches')
