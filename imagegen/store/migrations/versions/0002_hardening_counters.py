"""hardening: ambiguous-submit and download budgets, parked-for-a-slot marker

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
import sqlmodel


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unknown_submits', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('download_errors', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('wait_reason', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('wait_reason')
        batch_op.drop_column('download_errors')
        batch_op.drop_column('unknown_submits')
