"""The live platform's tables, declared once (SQLAlchemy Core); Alembic migrations create them
(`server/migrations`), from the first table on.

Units and conventions as in docs/nomenclature.md; instants are UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
)

from peergrid.server.constants import ROLES

__all__ = ["ROLES", "ledger_blocks", "ledger_heads", "ledger_meta", "metadata", "participants"]

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
