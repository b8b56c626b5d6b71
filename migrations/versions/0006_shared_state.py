"""rate-limit windows and the presence roster, shared by the processes of an instance without Redis

Revision ID: 0006
Revises: 0002
Create Date: 2026-12-01

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('rate_limit_windows',
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('hits', sa.JSON(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_rate_limit_windows'))
    )
    with op.batch_alter_table('rate_limit_windows', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rate_limit_windows_expires_at'), ['expires_at'], unique=False)

    op.create_table('presence_connections',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('lapses_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_presence_connections_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_presence_connections'))
    )
    with op.batch_alter_table('presence_connections', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_presence_connections_lapses_at'), ['lapses_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_presence_connections_user_id'), ['user_id'], unique=False)


def downgrade():
    with op.batch_alter_table('presence_connections', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_presence_connections_user_id'))
        batch_op.drop_index(batch_op.f('ix_presence_connections_lapses_at'))
    op.drop_table('presence_connections')
    with op.batch_alter_table('rate_limit_windows', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rate_limit_windows_expires_at'))
    op.drop_table('rate_limit_windows')
