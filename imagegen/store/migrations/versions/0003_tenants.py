"""tenants: a tenant on every job, idempotency keys unique per tenant

Revision ID: 0003
Revises: 0002
Create Date: 2027-01-10
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
import sqlmodel


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

#: 0001 created the global UNIQUE(idempotency_key) without a name: PostgreSQL named it
#: jobs_idempotency_key_key, SQLite not at all. Batch mode names reflected unnamed constraints by this
#: convention, so the SQLite table copy can drop it (Alembic docs, "Dropping Unnamed or Named Foreign
#: Key Constraints" / batch "naming_convention").
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _key_constraint_name() -> str:
    """The name of the global UNIQUE(idempotency_key), as this database knows it."""
    for uq in sa.inspect(op.get_bind()).get_unique_constraints('jobs'):
        if uq['column_names'] == ['idempotency_key'] and uq.get('name'):
            return str(uq['name'])
    return 'uq_jobs_idempotency_key'


def upgrade() -> None:
    old = _key_constraint_name()
    with op.batch_alter_table('jobs', schema=None, naming_convention=_NAMING) as batch_op:
        # Existing rows get the server default: every job so far is tenant 'default'.
        batch_op.add_column(
            sa.Column('tenant', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False, server_default='default')
        )
        batch_op.drop_constraint(old, type_='unique')
        batch_op.create_unique_constraint('uq_jobs_tenant_idempotency_key', ['tenant', 'idempotency_key'])
        batch_op.create_index('ix_jobs_tenant_created_at', ['tenant', 'created_at', 'id'], unique=False)


def downgrade() -> None:
    # Fails (as it should) if two tenants now share an idempotency key.
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_tenant_created_at')
        batch_op.drop_constraint('uq_jobs_tenant_idempotency_key', type_='unique')
        batch_op.create_unique_constraint('uq_jobs_idempotency_key', ['idempotency_key'])
        batch_op.drop_column('tenant')
