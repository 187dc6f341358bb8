"""A stateful model of the ledger (Hypothesis): whatever sequence of appends, rejected
submissions and signed heads, the log stays append-only, every entry has an inclusion proof
under every later head, every two heads are consistent, and the file verifies."""

from __future__ import annotations

import itertools
import shutil
import sqlite3
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from peergrid.ledger import encoding as enc
from peergrid.ledger import store
from peergrid.ledger.keys import operator_key, participant_keys, public_bytes
from peergrid.ledger.log import Ledger, OrderRejected
from peergrid.ledger.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from peergrid.ledger.verify import LedgerInvalid, verify_ledger

N_P = 3
LEDGER_ID = b"\x05" * 16


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp())
        self.path = self.dir / "l.sqlite"
        self.keys = participant_keys(3, N_P)
        op = operator_key(3)
        genesis = enc.Genesis(
            ledger_id=LEDGER_ID,
            operator_public_key=public_bytes(op),
            currency="EUR",
            minor_exponent=2,
            start_unix_s=0,
            slot_seconds=900,
            n_slots=100,
            scenario="model",
            names=tuple(f"p{i}" for i in range(N_P)),
            public_keys=tuple(public_bytes(k) for k in self.keys),
        )
        self.ledger = Ledger.create(self.path, operator_key=op, genesis=genesis)
        # the model: every entry, from the GENESIS on
        self.entries: list[bytes] = [enc.entry(enc.Kind.GENESIS, -1, genesis.encode())]
        self.heads: list[tuple[int, bytes]] = []
        self.slot = 0

    def _leaves(self) -> list[bytes]:
        return [leaf_hash(e) for e in self.entries]

    @rule(values=st.lists(st.floats(-5, 5, allow_nan=False), min_size=N_P, max_size=N_P))
    def meter(self, values: list[float]) -> None:
        data = enc.entry(enc.Kind.METER, self.slot, enc.meter_body(np.array(values)))
        assert self.ledger.append(data) == len(self.entries)
        self.entries.append(data)
        self.slot += 1

    @rule(p=st.integers(0, N_P - 1), forge=st.booleans())
    def orders(self, p: int, forge: bool) -> None:
        msg = enc.order_message(
            LEDGER_ID, p, self.slot, np.array([self.slot + 1]), np.array([1], dtype=np.int8),
            np.array([0.5]), np.array([0.1]),
        )  # fmt: skip
        signer = self.keys[(p + 1) % N_P] if forge else self.keys[p]
        sig = signer.sign(msg)
        try:
            self.ledger.submit_orders(p, self.slot, msg, sig)
            assert not forge
            body = enc.orders_body(msg, sig)
            self.entries.append(enc.entry(enc.Kind.ORDERS, self.slot, body))
        except OrderRejected as e:
            assert forge and e.entry == len(self.entries)
            body = enc.rejected_body(p, "bad signature", msg, sig)
            self.entries.append(enc.entry(enc.Kind.REJECTED, self.slot, body))

    @rule()
    def sign(self) -> None:
        head = self.ledger.sign_head(self.slot)
        size = enc.read_tree_head(head)[1]
        assert size == len(self.entries)
        if not self.heads or self.heads[-1][0] != size:
            self.heads.append((size, enc.read_tree_head(head)[3]))

    @invariant()
    def root_is_the_model_root(self) -> None:
        assert self.ledger.size == len(self.entries)
        assert self.ledger.root() == root(self._leaves())

    @precondition(lambda self: len(self.heads) >= 1)
    @rule(data=st.data())
    def proofs(self, data: st.DataObject) -> None:
        leaves = self._leaves()
        i = data.draw(st.integers(0, len(self.heads) - 1))
        size, r = self.heads[i]
        assert root(leaves[:size]) == r
        k = data.draw(st.integers(0, size - 1))
        assert verify_inclusion(leaves[k], k, size, inclusion_proof(leaves, k, size), r)
        j = data.draw(st.integers(i, len(self.heads) - 1))
        size2, r2 = self.heads[j]
        proof = consistency_proof(leaves, size, size2)
        assert verify_consistency(size, size2, r, r2, proof)

    def teardown(self) -> None:
        self.ledger.close(self.slot)
        rep = verify_ledger(self.path, workers=1)
        assert rep.entries == len(self.entries)
        # every entry has an inclusion proof under the last head
        leaves = self._leaves()
        size = len(leaves)
        top = root(leaves)
        for k in range(size):
            assert verify_inclusion(leaves[k], k, size, inclusion_proof(leaves, k, size), top)
        # and a changed byte anywhere in the stored entries is found
        conn = sqlite3.connect(self.path)
        first, n, lengths, data = conn.execute(
            "SELECT first, n, lengths, data FROM blocks ORDER BY first DESC LIMIT 1"
        ).fetchone()
        raw = bytearray(b"".join(store.unpack_block(n, lengths, data)))
        raw[(7 * size) % len(raw)] ^= 0x20
        sizes = np.frombuffer(lengths, dtype=">u4").tolist()
        cut = np.cumsum([0, *sizes]).tolist()
        entries = [bytes(raw[a:b]) for a, b in itertools.pairwise(cut)]
        new_lengths, new_data = store.pack_block(entries)
        conn.execute(
            "UPDATE blocks SET lengths = ?, data = ? WHERE first = ?",
            (new_lengths, new_data, first),
        )
        conn.commit()
        conn.close()
        with pytest.raises(LedgerInvalid):
            verify_ledger(self.path, workers=1)
        shutil.rmtree(self.dir, ignore_errors=True)


LedgerMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=30, deadline=None)
TestLedger = LedgerMachine.TestCase
