"""The live platform's tables, declared once (SQLAlchemy Core); Alembic migrations create them
(`server/migrations`), from the first table on.

Units and conventions as in docs/nomenclature.md; instants are UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from peergrid.server.constants import ROLES

__all__ = [
    "ROLES",
    "envelopes",
    "gates",
    "idempotency",
    "ledger_blocks",
    "ledger_heads",
    "ledger_meta",
    "market",
    "market_members",
    "market_state",
    "metadata",
    "meter_intervals",
    "orders",
    "participants",
    "readings",
    "slots",
]

#: A double-precision float on both backends.
Double = Float(precision=53)

metadata = MetaData()

participants = Table(
    "participants",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    # Ed25519 public key, 32 raw bytes (participants sign their orders; other roles may omit it)
    Column("public_key", LargeBinary(32), nullable=True),
    # SHA-256 of the API token, hex: tokens are 256-bit random secrets, not passwords, so a
    # fast hash is enough (no dictionary to guess from) and lets a request be checked in µs
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    CheckConstraint(
        "role IN ('participant', 'operator', 'network-operator')", name="ck_participants_role"
    ),
    CheckConstraint("role <> 'participant' OR public_key IS NOT NULL", name="ck_participants_key"),
)


# The community's ledger (`ledger.store`: the same three tables as a run's ledger.sqlite)
ledger_meta = Table(
    "ledger_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", LargeBinary, nullable=False),
)
ledger_blocks = Table(
    "ledger_blocks",
    metadata,
    Column("first", BigInteger, primary_key=True, autoincrement=False),
    Column("n", Integer, nullable=False),
    Column("lengths", LargeBinary, nullable=False),
    Column("data", LargeBinary, nullable=False),
)
ledger_heads = Table(
    "ledger_heads",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("slot", BigInteger, nullable=False),
    Column("head", LargeBinary, nullable=False),
    Column("signature", LargeBinary, nullable=False),
)


# The live market (revision 0003) ----------------------------------------------------------------

# The one market this database runs: its scenario, GENESIS, operator key and wall-clock calendar
market = Table(
    "market",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("scenario_toml", Text, nullable=False),
    Column("genesis", LargeBinary, nullable=False),
    # the operator's Ed25519 private key, 32 raw bytes (signs tree heads; see docs/live.md)
    Column("operator_key", LargeBinary(32), nullable=False),
    Column("start_unix_s", Double, nullable=False),
    Column("slot_seconds", Double, nullable=False),
    Column("settle_after_s", Double, nullable=False),
    Column("n_slots", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("id = 1", name="ck_market_one"),
)

# The ledger's participant indices: the participants in the GENESIS, in its order
market_members = Table(
    "market_members",
    metadata,
    Column("ledger_index", Integer, primary_key=True, autoincrement=False),
    Column("participant_id", Integer, ForeignKey("participants.id"), nullable=False, unique=True),
    Column("connection_kw", Double, nullable=False),
)

# Where the clock stands: the next step of `Calendar.steps` and the journal's state after the last
market_state = Table(
    "market_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("next_step", Integer, nullable=False),
    Column("journal", LargeBinary, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("id = 1", name="ck_market_state_one"),
)

# Each gate closed: cleared by the mechanism, or fallen back to the retail tariff (and why)
gates = Table(
    "gates",
    metadata,
    Column("gate", Integer, primary_key=True, autoincrement=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("n_orders", Integer, nullable=False),
    Column("clear_seconds", Double, nullable=False),
    Column("closed_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("status IN ('cleared', 'fallback')", name="ck_gates_status"),
)

# Each slot cleared (public prices, the book and result for settlement) and later settled
slots = Table(
    "slots",
    metadata,
    Column("slot", Integer, primary_key=True, autoincrement=False),
    Column("gate", Integer, nullable=False),
    Column("cleared", LargeBinary, nullable=False),  # engine.state_codec: (book, result)
    Column("committed", LargeBinary, nullable=False),  # (P,) float64 little-endian [kWh]
    Column("clearing_price", Double, nullable=True),
    Column("buy_price", Double, nullable=True),
    Column("sell_price", Double, nullable=True),
    Column("traded_kwh", Double, nullable=False),
    # what the public sees, after disclosure control (NULL: suppressed; status says why)
    Column("traded_public_kwh", Double, nullable=True),
    Column("traded_status", String(32), nullable=False),
    Column("n_orders", Integer, nullable=False),
    Column("metered", LargeBinary, nullable=True),  # (P,) float64 [kWh], once settled
    Column("cost", LargeBinary, nullable=True),  # (P,) float64 [currency], once settled
    Column("baseline_cost", LargeBinary, nullable=True),  # the same energy with the retailer
    Column("n_estimated", Integer, nullable=True),
    Column("net_public_kwh", Double, nullable=True),
    Column("net_status", String(32), nullable=True),
    Column("settled_at", DateTime(timezone=True), nullable=True),
)

# Signed orders as accepted: the canonical message and signature; a later submission for the
# same gate replaces the earlier one
orders = Table(
    "orders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("participant_id", Integer, ForeignKey("participants.id"), nullable=False),
    Column("ledger_index", Integer, nullable=False),
    Column("gate", Integer, nullable=False),
    Column("message", LargeBinary, nullable=False),
    Column("signature", LargeBinary(64), nullable=False),
    Column("n_orders", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("idempotency_key", String(128), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("status IN ('active', 'replaced')", name="ck_orders_status"),
    Index("ix_orders_gate", "gate", "status"),
    Index("ix_orders_participant", "participant_id", "gate"),
)

# Idempotency keys of order submissions: what a retry with the same key gets back
idempotency = Table(
    "idempotency",
    metadata,
    Column("participant_id", Integer, ForeignKey("participants.id"), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("request_sha256", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("response_code", Integer, nullable=True),
    Column("response_body", Text, nullable=True),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("status IN ('in-flight', 'done')", name="ck_idempotency_status"),
)

# Raw meter readings as received (registers at slot boundaries, in kWh after the declared unit)
readings = Table(
    "readings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("participant_id", Integer, ForeignKey("participants.id"), nullable=False),
    Column("boundary", Integer, nullable=False),  # the reading's instant: start of slot `boundary`
    Column("import_register_kwh", Double, nullable=False),
    Column("export_register_kwh", Double, nullable=False),
    Column("unit", String(8), nullable=False),
    Column("source", String(8), nullable=False),
    Column("late", Boolean, nullable=False),  # arrived after the slot it closes was settled
    Column("received_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("participant_id", "boundary", name="uq_readings_instant"),
)

# Validated interval values per participant and slot, as settled, with their quality
meter_intervals = Table(
    "meter_intervals",
    metadata,
    Column("participant_id", Integer, ForeignKey("participants.id"), primary_key=True),
    Column("slot", Integer, primary_key=True, autoincrement=False),
    Column("net_kwh", Double, nullable=False),
    Column("quality", String(16), nullable=False),
    CheckConstraint("quality IN ('measured', 'estimated', 'trued-up')", name="ck_interval_quality"),
)

# Operating envelopes the network operator sets per slot and participant [kWh in the slot]
envelopes = Table(
    "envelopes",
    metadata,
    Column("slot", Integer, primary_key=True, autoincrement=False),
    Column("participant_id", Integer, ForeignKey("participants.id"), primary_key=True),
    Column("import_limit_kwh", Double, nullable=True),
    Column("export_limit_kwh", Double, nullable=True),
    Column("set_at", DateTime(timezone=True), nullable=False),
)
