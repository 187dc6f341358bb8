"""Same code, same result: a live market's recorded inputs replayed in one process.

`recording_of` reads what the market's database recorded as its inputs — each gate's accepted
submissions (signed messages as received), which gates fell back and why, and each settled
slot's meter values as settled — and `check_replay` runs them through the lifecycle's steps
again (`engine.live.replay`: the same `clear`, `settle` and ledger journal as the simulator) and
compares the commitments, the costs, the ledger bills and the ledger root with the database's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Engine

from peergrid.engine.live import JournalState, Recording, Submission, replay
from peergrid.ledger.merkle import MerkleAccumulator, leaf_hash
from peergrid.ledger.postings import Accrual
from peergrid.ledger.store import iter_entries
from peergrid.server.clock import f64_array
from peergrid.server.ledger_store import SqlLedgerStore
from peergrid.server.market import MarketSetup
from peergrid.server.schema import gates, market_state, orders, slots


def recording_of(engine: Engine, setup: MarketSetup) -> Recording:
    """The market's inputs as its database recorded them (module docstring)."""
    o = orders.c
    with engine.connect() as conn:
        n_steps = int(conn.execute(select(market_state.c.next_step)).scalar_one())
        closed = {
            int(r.gate): r.reason
            for r in conn.execute(select(gates.c.gate, gates.c.status, gates.c.reason))
        }
        subs: dict[int, list[Submission]] = {}
        for r in conn.execute(
            select(o.gate, o.ledger_index, o.message, o.signature)
            .where(o.status == "active")
            .order_by(o.gate, o.ledger_index)
        ):
            if int(r.gate) in closed:
                subs.setdefault(int(r.gate), []).append(
                    Submission(int(r.ledger_index), bytes(r.message), bytes(r.signature))
                )
        metered = {
            int(r.slot): f64_array(r.metered)
            for r in conn.execute(
                select(slots.c.slot, slots.c.metered).where(slots.c.metered.is_not(None))
            )
        }
    fallback = {g: reason for g, reason in closed.items() if reason is not None}
    return Recording(subs, fallback, metered, n_steps)


@dataclass(frozen=True)
class ReplayCheck:
    """A replay against the database: the two roots and what differs (empty: nothing)."""

    root_database: str
    root_replay: str
    entries: int
    slots_settled: int
    differences: list[str]

    @property
    def equal(self) -> bool:
        return not self.differences


def database_root(engine: Engine) -> tuple[bytes, int]:
    """The root over every entry in the database's ledger, recomputed from the entries."""
    acc = MerkleAccumulator()
    for _, data in iter_entries(SqlLedgerStore(engine)):
        acc.append(leaf_hash(data))
    return acc.root(), acc.size


def check_replay(engine: Engine, setup: MarketSetup) -> ReplayCheck:
    """Replay the database's market and compare (module docstring)."""
    rec = recording_of(engine, setup)
    out = replay(
        setup.market,
        setup.calendar,
        setup.genesis,
        setup.operator_key,
        rec,
        setup.daily_charge,
        setup.day_starts,
    )
    root, size = database_root(engine)
    diffs: list[str] = []
    if root != out.root or size != out.size:
        diffs.append(
            f"ledger: database {size} entries {root.hex()}, replay {out.size} {out.root.hex()}"
        )
    with engine.connect() as conn:
        rows = conn.execute(select(slots.c.slot, slots.c.committed, slots.c.cost)).all()
        journal = bytes(conn.execute(select(market_state.c.journal)).scalar_one())
    state = JournalState.decode(journal)
    bills = Accrual.from_state(
        setup.n_participants, setup.genesis.minor_exponent, state.accrual
    ).participant_totals()
    if bills != out.bill_minor:
        diffs.append(f"ledger bills: database {bills}, replay {out.bill_minor}")
    for r in rows:
        s = int(r.slot)
        c = out.committed_kwh.get(s)
        if c is None or not np.array_equal(c, f64_array(r.committed)):
            diffs.append(f"slot {s}: commitments differ")
        if r.cost is not None:
            k = out.cost.get(s)
            if k is None or not np.array_equal(k, f64_array(r.cost)):
                diffs.append(f"slot {s}: costs differ")
    return ReplayCheck(root.hex(), out.root.hex(), size, len(rec.metered_net_kwh), diffs)
