"""The live market: the market, its members and clock, gates, slots, orders, idempotency keys,
meter readings and intervals, operating envelopes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gates",
        sa.Column("gate", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("n_orders", sa.Integer(), nullable=False),
        sa.Column("clear_seconds", sa.Float(precision=53), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('cleared', 'fallback')", name="ck_gates_status"),
        sa.PrimaryKeyConstraint("gate"),
    )
    op.create_table(
        "market",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("scenario_toml", sa.Text(), nullable=False),
        sa.Column("genesis", sa.LargeBinary(), nullable=False),
        sa.Column("operator_key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("start_unix_s", sa.Float(precision=53), nullable=False),
        sa.Column("slot_seconds", sa.Float(precision=53), nullable=False),
        sa.Column("settle_after_s", sa.Float(precision=53), nullable=False),
        sa.Column("n_slots", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_market_one"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "market_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("next_step", sa.Integer(), nullable=False),
        sa.Column("journal", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_market_state_one"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "slots",
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("gate", sa.Integer(), nullable=False),
        sa.Column("cleared", sa.LargeBinary(), nullable=False),
        sa.Column("committed", sa.LargeBinary(), nullable=False),
        sa.Column("clearing_price", sa.Float(precision=53), nullable=True),
        sa.Column("buy_price", sa.Float(precision=53), nullable=True),
        sa.Column("sell_price", sa.Float(precision=53), nullable=True),
        sa.Column("traded_kwh", sa.Float(precision=53), nullable=False),
        sa.Column("traded_public_kwh", sa.Float(precision=53), nullable=True),
        sa.Column("traded_status", sa.String(length=32), nullable=False),
        sa.Column("n_orders", sa.Integer(), nullable=False),
        sa.Column("metered", sa.LargeBinary(), nullable=True),
        sa.Column("cost", sa.LargeBinary(), nullable=True),
        sa.Column("baseline_cost", sa.LargeBinary(), nullable=True),
        sa.Column("n_estimated", sa.Integer(), nullable=True),
        sa.Column("net_public_kwh", sa.Float(precision=53), nullable=True),
        sa.Column("net_status", sa.String(length=32), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("slot"),
    )
    op.create_table(
        "envelopes",
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("import_limit_kwh", sa.Float(precision=53), nullable=True),
        sa.Column("export_limit_kwh", sa.Float(precision=53), nullable=True),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
        ),
        sa.PrimaryKeyConstraint("slot", "participant_id"),
    )
    op.create_table(
        "idempotency",
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("response_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('in-flight', 'done')", name="ck_idempotency_status"),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
        ),
        sa.PrimaryKeyConstraint("participant_id", "key"),
    )
    op.create_table(
        "market_members",
        sa.Column("ledger_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("connection_kw", sa.Float(precision=53), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
        ),
        sa.PrimaryKeyConstraint("ledger_index"),
        sa.UniqueConstraint("participant_id"),
    )
    op.create_table(
        "meter_intervals",
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("net_kwh", sa.Float(precision=53), nullable=False),
        sa.Column("quality", sa.String(length=16), nullable=False),
        sa.CheckConstraint(
            "quality IN ('measured', 'estimated', 'trued-up')", name="ck_interval_quality"
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
        ),
        sa.PrimaryKeyConstraint("participant_id", "slot"),
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("ledger_index", sa.Integer(), nullable=False),
        sa.Column("gate", sa.Integer(), nullable=False),
        sa.Column("message", sa.LargeBinary(), nullable=False),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
        sa.Column("n_orders", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('active', 'replaced')", name="ck_orders_status"),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_gate", ["gate", "status"], unique=False)
        batch_op.create_index("ix_orders_participant", ["participant_id", "gate"], unique=False)

    op.create_table(
        "readings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("boundary", sa.Integer(), nullable=False),
        sa.Column("import_register_kwh", sa.Float(precision=53), nullable=False),
        sa.Column("export_register_kwh", sa.Float(precision=53), nullable=False),
        sa.Column("unit", sa.String(length=8), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("participant_id", "boundary", name="uq_readings_instant"),
    )


def downgrade() -> None:
    op.drop_table("readings")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_participant")
        batch_op.drop_index("ix_orders_gate")

    op.drop_table("orders")
    op.drop_table("meter_intervals")
    op.drop_table("market_members")
    op.drop_table("idempotency")
    op.drop_table("envelopes")
    op.drop_table("slots")
    op.drop_table("market_state")
    op.drop_table("market")
    op.drop_table("gates")
