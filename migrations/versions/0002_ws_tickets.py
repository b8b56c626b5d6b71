"""ws tickets

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('ws_tickets',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('ticket_hash', sa.String(length=64), nullable=False),
    sa.Column('session_id', sa.String(length=36), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_ws_tickets_session_id_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ws_tickets')),
    sa.UniqueConstraint('ticket_hash', name=op.f('uq_ws_tickets_ticket_hash'))
    )
    with op.batch_alter_table('ws_tickets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ws_tickets_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_ws_tickets_session_id'), ['session_id'], unique=False)


def downgrade():
    with op.batch_alter_table('ws_tickets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ws_tickets_session_id'))
        batch_op.drop_index(batch_op.f('ix_ws_tickets_expires_at'))

    op.drop_table('ws_tickets')
