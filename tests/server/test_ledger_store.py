"""The community's ledger in the platform's database: a run written there equals, byte for
byte, the same run written to a ledger file, verifies, proves, and a changed value is found —
on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update

from peergrid.engine.simulate import simulate
from peergrid.ledger import store
from peergrid.ledger.proof import check_proof, prove
from peergrid.ledger.verify import LedgerInvalid, verify_ledger
from peergrid.server.db import engine_for, migrate
from peergrid.server.ledger_store import SqlLedgerStore
from peergrid.server.schema import ledger_blocks
from tests.engine.conftest import small_scenario


def test_a_run_in_the_database_equals_the_run_in_a_file(db_url: str, tmp_path: Path) -> None:
    sc = small_scenario(n=5, days=1, forecast="persistence", gate_closure="intraday 2")
    in_file = simulate(sc, ledger_path=tmp_path / "ledger.sqlite").summary["ledger"]
    engine = engine_for(db_url)
    migrate(engine)
    st = SqlLedgerStore(engine)
    in_db = simulate(sc, ledger_path=st).summary["ledger"]
    assert in_db["root"] == in_file["root"] and in_db["entries"] == in_file["entries"]
    file_store = store.SqliteStore.open(tmp_path / "ledger.sqlite")
    assert list(st.iter_blocks()) == list(file_store.iter_blocks())
    assert st.heads() == file_store.heads() and st.meta() == file_store.meta()
    file_store.close()
    rep = verify_ledger(st, workers=1)
    assert rep.entries == in_db["entries"]
    assert check_proof(prove(st, rep.entries // 2)).startswith("included")
    # one changed value in the database is found
    with engine.begin() as conn:
        first, n, lengths, data = conn.execute(
            select(ledger_blocks).order_by(ledger_blocks.c.first).limit(1).offset(20)
        ).one()
        entries = store.unpack_block(n, bytes(lengths), bytes(data))
        raw = bytearray(entries[-1])
        raw[-9] ^= 0x08
        new_lengths, new_data = store.pack_block([*entries[:-1], bytes(raw)])
        conn.execute(
            update(ledger_blocks)
            .where(ledger_blocks.c.first == first)
            .values(lengths=new_lengths, data=new_data)
        )
    with pytest.raises(LedgerInvalid):
        verify_ledger(st, workers=1)
    engine.dispose()
