"""the network (/24, /64) a session signed in from, indexed per account

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

"""
import ipaddress

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

BATCH = 5000


def _network(ip_address):
    """gatehouse.services.security_events.network, as of this revision."""
    try:
        ip = ipaddress.ip_address(ip_address or "")
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 64}", strict=False))


def upgrade():
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('network', sa.String(length=49), nullable=True))
    sessions = sa.table('sessions', sa.column('id', sa.String), sa.column('ip_address', sa.String),
                        sa.column('network', sa.String))
    bind = op.get_bind()
    after = ""
    while True:  # the sessions signed in so far, in primary-key batches
        rows = bind.execute(sa.select(sessions.c.id, sessions.c.ip_address)
                            .where(sessions.c.id > after, sessions.c.ip_address.is_not(None))
                            .order_by(sessions.c.id).limit(BATCH)).all()
        if not rows:
            break
        updates = [{"key": id_, "value": _network(ip)} for id_, ip in rows if _network(ip) is not None]
        if updates:
            bind.execute(sessions.update().where(sessions.c.id == sa.bindparam("key"))
                         .values(network=sa.bindparam("value")), updates)
        after = rows[-1][0]
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.create_index('ix_sessions_user_id_network', ['user_id', 'network', 'last_seen_at'], unique=False)


def downgrade():
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_sessions_user_id_network')
        batch_op.drop_column('network')
