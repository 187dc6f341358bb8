"""Checking a whole ledger: what an auditor runs (`peergrid ledger verify`).

One pass over the entries in order:

- the structure: blocks contiguous from entry 0, every entry well-formed (strict decoding), the
  GENESIS first and only there, the meta table agreeing with it;
- the tree: every leaf rehashed from the stored bytes, the root at every stored tree head equal
  to the recomputed one, every head signed by the operator's key from the GENESIS, every entry
  covered by a signed head;
- the orders: every participant's signature over its order message, the message naming the
  ledger, the participant and the gate of its entry; a REJECTED entry must really be invalid;
- the market: each slot's book in the CLEARING equal to the signed orders for that slot, fills
  within their orders, Σ bought = Σ sold, payments − receipts = the operator's surplus;
- the settlement: deviation = metered − committed exactly, the postings of every entry summing
  to zero in money and in energy.

The first failure is reported with the entry's index and what is wrong; a changed byte
anywhere in a block or a head changes a leaf, a root or a signed message and is found.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from peergrid.ledger import encoding as enc
from peergrid.ledger import store
from peergrid.ledger.keys import load_public_key, verify
from peergrid.ledger.merkle import MerkleAccumulator, leaf_hash

#: Relative tolerance of the market's float identities (fills, surplus).
_REL = 1e-9


class LedgerInvalid(Exception):
    """A ledger failed a check: `entry` (or None for the file as a whole) and `reason`."""

    def __init__(self, entry: int | None, reason: str) -> None:
        where = "ledger" if entry is None else f"entry {entry}"
        super().__init__(f"{where}: {reason}")
        self.entry = entry
        self.reason = reason


@dataclass
class VerifyReport:
    """What `verify_ledger` checked."""

    entries: int = 0
    heads: int = 0
    signatures: int = 0
    rejected: int = 0
    postings: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    balances_minor: dict[int, int] = field(default_factory=dict)
    energy_wh: dict[int, int] = field(default_factory=dict)
    root: str = ""
    seconds: float = 0.0


def _verify_batch(
    public_keys: tuple[bytes, ...], items: list[tuple[int, int, bytes, bytes]]
) -> list[tuple[int, int]]:
    """(entry, signer) of every signature that does not verify (runs in a worker process)."""
    keys = [load_public_key(k) for k in public_keys]
    return [(i, p) for i, p, m, s in items if not verify(keys[p], s, m)]


class _Signatures:
    """Signatures (participants' orders, the operator's tree heads), checked in batches on
    every core while the main pass goes on.

    Signatures dominate a ledger's verification (≈ 120 µs each with OpenSSL's Ed25519 here);
    they are independent, so batches go to worker processes. With one worker they are checked
    in the calling process. Signer `len(participants)` is the operator."""

    def __init__(self, public_keys: tuple[bytes, ...], workers: int, batch: int) -> None:
        self._keys = public_keys
        self._workers = workers
        self._batch = batch
        self._items: list[tuple[int, int, bytes, bytes]] = []
        self._futures: list[Any] = []
        self._pool: Any = None
        self.count = 0

    def add(self, index: int, signer: int, message: bytes, signature: bytes) -> None:
        self._items.append((index, signer, message, signature))
        self.count += 1
        if len(self._items) >= self._batch:
            self._submit()

    def _submit(self) -> None:
        items, self._items = self._items, []
        if not items:
            return
        if self._workers <= 1:
            self._futures.append(_verify_batch(self._keys, items))
            return
        if self._pool is None:
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(max_workers=self._workers)
        self._futures.append(self._pool.submit(_verify_batch, self._keys, items))

    def first_bad(self) -> tuple[int, int] | None:
        """Wait for every batch; (entry, signer) of the first bad signature, or None."""
        self._submit()
        bad: list[tuple[int, int]] = []
        for f in self._futures:
            bad += f if isinstance(f, list) else f.result()
        self._futures = []
        self.close()
        return min(bad) if bad else None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def verify_ledger(
    path: str | Path | store.LedgerStore, workers: int | None = None, batch: int = 8192
) -> VerifyReport:
    """Check everything (module docstring).

    `workers`: processes that check the signatures (default: the machine's cores), in batches
    of `batch` signatures.

    Raises:
        LedgerInvalid: the first check that fails.
        FileNotFoundError: no ledger at `path`.
    """
    t0 = time.perf_counter()
    st = store.open_store(path)
    try:
        n = (os.cpu_count() or 1) if workers is None else workers
        report = _verify(st, n, batch)
    finally:
        if st is not path:
            st.close()
    report.seconds = time.perf_counter() - t0
    return report


def _verify(conn: store.LedgerStore, workers: int, batch: int) -> VerifyReport:
    """The pass, with the signatures checked alongside it: the first failure wins."""
    checker = _Checker(workers, batch)
    try:
        try:
            rep = checker.scan(conn)
        except LedgerInvalid as e:
            bad = checker.signatures.first_bad() if checker.signatures else None
            if bad is not None and (e.entry is None or bad[0] < e.entry):
                raise checker.bad_signature(bad) from e
            raise
        bad = checker.signatures.first_bad() if checker.signatures else None
        if bad is not None:
            raise checker.bad_signature(bad)
        return rep
    finally:
        if checker.signatures is not None:
            checker.signatures.close()


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= _REL * max(1.0, abs(a), abs(b))


#: Offset of account codes in the balance arrays: account a is at a + _OFFSET.
_OFFSET = -min(int(a) for a in enc.Account)


class _Checker:
    """The state of one verification pass."""

    def __init__(self, workers: int, batch: int) -> None:
        self.workers = workers
        self.batch = batch
        self.rep = VerifyReport()
        self.tree = MerkleAccumulator()
        self.genesis: enc.Genesis | None = None
        self.signatures: _Signatures | None = None
        self.rejected_keys: list[Ed25519PublicKey] = []
        # signed orders not yet cleared, columnar: chunks appended, consolidated at a clearing
        self._chunks: list[tuple[np.ndarray, ...]] = []
        self._seq = 0
        self.committed: dict[int, np.ndarray] = {}
        self.metered: dict[int, np.ndarray] = {}
        self.money = np.zeros(0, dtype=np.int64)
        self.energy = np.zeros(0, dtype=np.int64)
        self.cleared_upto = -(2**62)

    @property
    def n_p(self) -> int:
        return 0 if self.genesis is None else len(self.genesis.names)

    def bad_signature(self, bad: tuple[int, int]) -> LedgerInvalid:
        index, signer = bad
        if signer == self.n_p:
            return LedgerInvalid(index, "tree head: bad operator signature")
        return LedgerInvalid(index, "ORDERS: bad signature on the participant's order message")

    def scan(self, conn: store.LedgerStore) -> VerifyReport:
        try:
            meta = conn.meta()
            heads = conn.heads()
        except store.StoreError as e:
            raise LedgerInvalid(None, str(e)) from e
        rep, tree = self.rep, self.tree
        hi = 0
        expected = 0
        try:
            for first, n, lengths, data in conn.iter_blocks():
                if first != expected:
                    raise LedgerInvalid(
                        expected, f"missing: the next stored block starts at entry {first}"
                    )
                try:
                    entries = store.unpack_block(n, bytes(lengths), bytes(data))
                except ValueError as e:
                    raise LedgerInvalid(first, f"block malformed: {e}") from e
                for i, data_i in enumerate(entries):
                    idx = first + i
                    self.entry(idx, data_i, meta)
                    tree.append(leaf_hash(data_i))
                    while hi < len(heads) and heads[hi][0] == tree.size:
                        self.head(heads[hi])
                        rep.heads += 1
                        hi += 1
                    if hi < len(heads) and heads[hi][0] < tree.size:
                        raise LedgerInvalid(
                            idx, f"a tree head of size {heads[hi][0]} is out of order"
                        )
                expected = first + n
        except store.StoreError as e:
            raise LedgerInvalid(None, str(e)) from e
        rep.entries = tree.size
        if self.genesis is None:
            raise LedgerInvalid(None, "the ledger is empty")
        if hi < len(heads):
            raise LedgerInvalid(
                None, f"a tree head covers {heads[hi][0]} entries but the ledger has {tree.size}"
            )
        last = heads[-1][0] if heads else 0
        if last != tree.size:
            raise LedgerInvalid(last, "entries from here on are not covered by a signed tree head")
        touched = np.union1d(np.flatnonzero(self.money != 0), np.flatnonzero(self.energy != 0))
        for k in sorted(set(touched.tolist()) | set(range(_OFFSET, _OFFSET + self.n_p))):
            rep.balances_minor[k - _OFFSET] = int(self.money[k])
            rep.energy_wh[k - _OFFSET] = int(self.energy[k])
        rep.balances_minor = dict(sorted(rep.balances_minor.items()))
        rep.energy_wh = dict(sorted(rep.energy_wh.items()))
        rep.root = tree.root().hex()
        assert self.signatures is not None
        rep.signatures = self.signatures.count - rep.heads
        return rep

    def head(self, row: tuple[int, int, bytes, bytes]) -> None:
        size, slot, head, signature = row
        where = size - 1
        g = self.genesis
        if g is None or self.signatures is None:
            raise LedgerInvalid(where, "a tree head before the GENESIS")
        try:
            ledger_id, h_size, h_slot, root = enc.read_tree_head(bytes(head))
        except enc.FormatError as e:
            raise LedgerInvalid(where, f"tree head of size {size} malformed: {e}") from e
        if ledger_id != g.ledger_id:
            raise LedgerInvalid(where, f"tree head of size {size} names another ledger")
        if h_size != size or h_slot != slot:
            raise LedgerInvalid(
                where, f"tree head of size {size}: stored size/slot differ from its bytes"
            )
        if root != self.tree.root():
            raise LedgerInvalid(
                where,
                f"tree head of size {size}: root {root.hex()[:16]}… is not the entries' root",
            )
        self.signatures.add(where, self.n_p, bytes(head), bytes(signature))

    def entry(self, idx: int, data: bytes, meta: dict[str, bytes]) -> None:
        try:
            kind, slot, r = enc.read_header(data)
        except enc.FormatError as e:
            raise LedgerInvalid(idx, str(e)) from e
        self.rep.kinds[kind.name] = self.rep.kinds.get(kind.name, 0) + 1
        try:
            if idx == 0:
                self.first(kind, r, meta)
            elif kind is enc.Kind.GENESIS:
                raise ValueError("a second GENESIS")
            elif kind is enc.Kind.ORDERS:
                self.orders(idx, slot, r)
            elif kind is enc.Kind.REJECTED:
                self.rejected(r)
            elif kind is enc.Kind.CLEARING:
                self.clearing(slot, r)
            elif kind is enc.Kind.METER:
                self.meter(slot, r)
            else:
                self.settlement(kind, slot, r)
        except LedgerInvalid:
            raise
        except enc.FormatError as e:
            raise LedgerInvalid(idx, f"{kind.name} malformed: {e}") from e
        except ValueError as e:
            raise LedgerInvalid(idx, f"{kind.name}: {e}") from e

    def first(self, kind: enc.Kind, r: enc.Reader, meta: dict[str, bytes]) -> None:
        if kind is not enc.Kind.GENESIS:
            raise LedgerInvalid(0, "the first entry is not the GENESIS")
        g = enc.read_genesis(r)
        if meta.get("operator_public_key") != g.operator_public_key:
            raise LedgerInvalid(0, "meta's operator key is not the GENESIS's")
        if meta.get("ledger_id") != g.ledger_id:
            raise LedgerInvalid(0, "meta's ledger id is not the GENESIS's")
        if meta.get("format_version") != str(enc.FORMAT_VERSION).encode():
            raise LedgerInvalid(0, "meta's format version is not the entries' version")
        if set(meta) != {"format_version", "ledger_id", "operator_public_key"}:
            raise LedgerInvalid(0, f"meta has unexpected keys {sorted(meta)}")
        self.genesis = g
        self.rejected_keys = [load_public_key(k) for k in g.public_keys]
        load_public_key(g.operator_public_key)
        keys = (*g.public_keys, g.operator_public_key)
        self.signatures = _Signatures(keys, self.workers, self.batch)
        n = len(g.names) + _OFFSET
        self.money = np.zeros(n, dtype=np.int64)
        self.energy = np.zeros(n, dtype=np.int64)

    def orders(self, idx: int, slot: int, r: enc.Reader) -> None:
        g = self.genesis
        assert g is not None and self.signatures is not None
        message, signature = enc.read_orders(r)
        msg = enc.read_order_message(message)
        if not 0 <= msg.participant < len(g.names):
            raise ValueError(f"unknown participant {msg.participant}")
        self.signatures.add(idx, msg.participant, message, signature)
        if msg.ledger_id != g.ledger_id:
            raise ValueError("orders signed for another ledger")
        if msg.gate_slot != slot:
            raise ValueError(f"orders of gate {msg.gate_slot} filed under slot {slot}")
        if msg.slot.size and int(msg.slot.min()) <= self.cleared_upto:
            raise ValueError(f"orders for slot {int(msg.slot.min())}, which has cleared")
        n = msg.slot.shape[0]
        self._chunks.append(
            (
                msg.slot,
                np.full(n, msg.participant, dtype=np.int64),
                np.arange(self._seq, self._seq + n, dtype=np.int64),
                msg.side,
                msg.quantity_kwh,
            )
        )
        self._seq += n

    def _book(self, slot: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The signed orders for `slot` (participant, side, quantity), participant by
        participant in signing order; the others stay for later slots."""
        if not self._chunks:
            return np.zeros(0, np.int64), np.zeros(0, np.int8), np.zeros(0)
        cols = [np.concatenate(c) for c in zip(*self._chunks, strict=True)]
        s, p, seq, side, q = cols
        if np.any(s < slot):
            raise ValueError(f"signed orders for slot {int(s[s < slot][0])} were never cleared")
        mine = s == slot
        rest = ~mine
        self._chunks = [tuple(c[rest] for c in cols)] if rest.any() else []
        order = np.lexsort((seq[mine], p[mine]))
        return p[mine][order], side[mine][order], q[mine][order]

    def rejected(self, r: enc.Reader) -> None:
        g = self.genesis
        assert g is not None
        participant, reason, message, signature = enc.read_rejected(r)
        self.rep.rejected += 1
        if not reason:
            raise ValueError("a rejection without a reason")
        if (
            0 <= participant < len(g.names)
            and len(signature) == 64
            and verify(self.rejected_keys[participant], signature, message)
        ):
            try:
                m = enc.read_order_message(message)
            except enc.FormatError:
                return
            if m.ledger_id == g.ledger_id and m.participant == participant:
                raise ValueError("valid, correctly signed orders were rejected")

    def clearing(self, slot: int, r: enc.Reader) -> None:
        n_p = self.n_p
        c = enc.read_clearing(r)
        exp_p, exp_side, exp_q = self._book(slot)
        self.cleared_upto = max(self.cleared_upto, slot)
        if c.filled_kwh.shape[0] != exp_q.shape[0]:
            raise ValueError(
                f"slot {slot}: {c.filled_kwh.shape[0]} fills for {exp_q.shape[0]} signed orders"
            )
        if c.committed_kwh.shape[0] != n_p:
            raise ValueError(f"slot {slot}: commitments of {c.committed_kwh.shape[0]} participants")
        if np.any(c.filled_kwh < 0) or np.any(c.filled_kwh > exp_q * (1 + _REL) + 1e-12):
            raise ValueError(f"slot {slot}: a fill outside its order")
        buy = exp_side == 0
        if not _close(float(c.filled_kwh[buy].sum()), float(c.filled_kwh[~buy].sum())):
            raise ValueError(f"slot {slot}: energy bought ≠ energy sold")
        value = np.where(c.filled_kwh > 0, c.filled_kwh * c.price, 0.0)  # no fill: no price
        surplus = float(value[buy].sum() - value[~buy].sum())
        if np.any(c.filled_kwh > 0) and not _close(surplus, c.operator_surplus):
            raise ValueError(f"slot {slot}: payments − receipts ≠ the operator's surplus")
        signed_net = np.bincount(exp_p, weights=np.where(buy, -exp_q, exp_q), minlength=n_p)
        has = np.bincount(exp_p, minlength=n_p) > 0
        if not np.allclose(c.committed_kwh[has], signed_net[has], rtol=_REL, atol=1e-12):
            raise ValueError(f"slot {slot}: a commitment is not the net of its signed orders")
        self.committed[slot] = c.committed_kwh

    def meter(self, slot: int, r: enc.Reader) -> None:
        net = enc.read_meter(r)
        if net.shape[0] != self.n_p:
            raise ValueError(f"slot {slot}: meter readings of {net.shape[0]} participants")
        self.metered[slot] = net

    def settlement(self, kind: enc.Kind, slot: int, r: enc.Reader) -> None:
        postings: enc.Postings
        if kind is enc.Kind.SETTLEMENT:
            s = enc.read_settlement(r)
            if slot not in self.committed or slot not in self.metered:
                raise ValueError(f"slot {slot} settled before it was cleared and metered")
            dev = self.metered.pop(slot) - self.committed.pop(slot)
            if not np.array_equal(dev, s.deviation_kwh):
                raise ValueError(f"slot {slot}: deviation ≠ metered − committed")
            postings = s.postings
        elif kind is enc.Kind.CHARGES:
            postings = enc.read_charges(r)[3]
        else:
            postings = enc.read_period(r)[2]
        self.post(slot, postings)

    def post(self, slot: int, p: enc.Postings) -> None:
        n_p = self.n_p
        a = p.account
        bad = (a >= n_p) | ((a < 0) & ~np.isin(a, _ACCOUNTS))
        if np.any(bad):
            raise ValueError(f"slot {slot}: a posting to an unknown account {int(a[bad][0])}")
        money = int(p.amount_minor.sum())
        if money:
            raise ValueError(f"slot {slot}: postings do not sum to zero ({money} minor units)")
        wh = int(p.energy_wh.sum())
        if wh:
            raise ValueError(f"slot {slot}: energy postings do not sum to zero ({wh} Wh)")
        np.add.at(self.money, a + _OFFSET, p.amount_minor)
        np.add.at(self.energy, a + _OFFSET, p.energy_wh)
        self.rep.postings += p.n


_ACCOUNTS = np.array(sorted(int(a) for a in enc.Account), dtype=np.int64)
