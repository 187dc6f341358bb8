"""The community's ledger in the platform's database (SQLite or PostgreSQL): a
`ledger.store.LedgerStore` on the `ledger_*` tables, so the live server appends to the same
ledger, with the same code, as a simulation run (and `peergrid ledger verify` logic checks it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from peergrid.ledger.store import Block, Head, StoreError
from peergrid.server.schema import ledger_blocks, ledger_heads, ledger_meta

#: Blocks read per query when iterating.
_PAGE = 512


def insert_ledger(conn: Connection, blocks: Sequence[Block], heads: Sequence[Head]) -> None:
    """Insert blocks and signed heads on `conn`, in its transaction (the store's writes, and a
    market step's, which commit with the step's other rows)."""
    if blocks:
        conn.execute(
            insert(ledger_blocks),
            [{"first": f, "n": n, "lengths": ln, "data": d} for f, n, ln, d in blocks],
        )
    if heads:
        conn.execute(
            insert(ledger_heads),
            [{"tree_size": t, "slot": s, "head": h, "signature": g} for t, s, h, g in heads],
        )


class SqlLedgerStore:
    """A `LedgerStore` on an SQLAlchemy engine (the schema from `server.db.migrate`)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def put_meta(self, items: Mapping[str, bytes]) -> None:
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(ledger_meta), [{"key": k, "value": v} for k, v in items.items()]
                )
        except SQLAlchemyError as e:
            raise StoreError(f"cannot write the ledger's meta ({e})") from e

    def meta(self) -> dict[str, bytes]:
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(select(ledger_meta.c.key, ledger_meta.c.value)).all()
        except SQLAlchemyError as e:
            raise StoreError(f"cannot read the ledger ({e})") from e
        return {r.key: bytes(r.value) for r in rows}

    def write(self, blocks: Sequence[Block], heads: Sequence[Head]) -> None:
        """Blocks and heads in one transaction: a crash leaves both or neither."""
        try:
            with self._engine.begin() as conn:
                insert_ledger(conn, blocks, heads)
        except SQLAlchemyError as e:
            raise StoreError(f"cannot write the ledger ({e})") from e

    def iter_blocks(self) -> Iterator[Block]:
        c = ledger_blocks.c
        after = -1
        while True:
            try:
                with self._engine.connect() as conn:
                    rows = conn.execute(
                        select(c.first, c.n, c.lengths, c.data)
                        .where(c.first > after)
                        .order_by(c.first)
                        .limit(_PAGE)
                    ).all()
            except SQLAlchemyError as e:
                raise StoreError(f"cannot read the ledger ({e})") from e
            if not rows:
                return
            for r in rows:
                yield int(r.first), int(r.n), bytes(r.lengths), bytes(r.data)
            after = int(rows[-1].first)

    def heads(self) -> list[Head]:
        c = ledger_heads.c
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(
                    select(c.tree_size, c.slot, c.head, c.signature).order_by(c.tree_size)
                ).all()
        except SQLAlchemyError as e:
            raise StoreError(f"cannot read the ledger ({e})") from e
        return [(int(r.tree_size), int(r.slot), bytes(r.head), bytes(r.signature)) for r in rows]

    def close(self) -> None:
        """The engine belongs to the caller; nothing to release here."""
