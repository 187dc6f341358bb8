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
) -> list[int]:
    """The entry indices whose signature does not verify (runs in a worker process)."""
    keys = [load_public_key(k) for k in public_keys]
    return [i for i, p, m, s in items if not verify(keys[p], s, m)]


class _Signatures:
    """Order signatures, checked in batches on every core while the main pass goes on.

    Signatures dominate a ledger's verification (≈ 120 µs each with OpenSSL's Ed25519 here);
    they are independent, so batches go to worker processes. Small ledgers are checked in the
    calling process."""

    def __init__(self, public_keys: tuple[bytes, ...], workers: int, batch: int = 8192) -> None:
        self._keys = public_keys
        self._workers = workers
        self._batch = batch
        self._items: list[tuple[int, int, bytes, bytes]] = []
        self._futures: list[Any] = []
        self._pool: Any = None
        self.count = 0

    def add(self, index: int, participant: int, message: bytes, signature: bytes) -> None:
        self._items.append((index, participant, message, signature))
        self.count += 1
        if len(self._items) >= self._batch:
            self._submit()

    def _submit(self) -> None:
        items, self._items = self._items, []
        if self._workers <= 1:
            self._futures.append(_verify_batch(self._keys, items))
            return
        if self._pool is None:
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(max_workers=self._workers)
        self._futures.append(self._pool.submit(_verify_batch, self._keys, items))

    def first_bad(self) -> int | None:
        """Wait for every batch; the first entry with a bad signature, or None."""
        if self._items:
            if self._pool is None:
                self._futures.append(_verify_batch(self._keys, self._items))
                self._items = []
            else:
                self._submit()
        bad: list[int] = []
        for f in self._futures:
            bad += f if isinstance(f, list) else f.result()
        self.close()
        return min(bad) if bad else None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def verify_ledger(path: str | Path, workers: int | None = None, batch: int = 8192) -> VerifyReport:
    """Check everything (module docstring).

    `workers`: processes that check the order signatures (default: the machine's cores), in
    batches of `batch` signatures.

    Raises:
        LedgerInvalid: the first check that fails.
        FileNotFoundError: no ledger at `path`.
    """
    t0 = time.perf_counter()
    conn = store.open_readonly(path)
    try:
        n = (os.cpu_count() or 1) if workers is None else workers
        report = _verify(conn, n, batch)
    finally:
        conn.close()
    report.seconds = time.perf_counter() - t0
    return report


def _verify(conn: object, workers: int, batch: int) -> VerifyReport:
    """The pass, then the order signatures checked alongside it: the first failure wins."""
    holder: list[_Signatures] = []
    try:
        try:
            rep = _scan(conn, workers, batch, holder)
        except LedgerInvalid as e:
            bad = holder[0].first_bad() if holder else None
            if bad is not None and (e.entry is None or bad < e.entry):
                raise _bad_signature(bad) from e
            raise
        bad = holder[0].first_bad() if holder else None
        if bad is not None:
            raise _bad_signature(bad)
        rep.signatures = holder[0].count if holder else 0
        return rep
    finally:
        for h in holder:
            h.close()


def _bad_signature(index: int) -> LedgerInvalid:
    return LedgerInvalid(index, "ORDERS: bad signature on the participant's order message")


def _scan(conn: object, workers: int, batch: int, holder: list[_Signatures]) -> VerifyReport:
    import sqlite3

    assert isinstance(conn, sqlite3.Connection)
    try:
        meta = store.meta(conn)
        heads = store.heads(conn)
    except sqlite3.DatabaseError as e:
        raise LedgerInvalid(None, f"not a readable ledger database ({e})") from e
    rep = VerifyReport()
    tree = MerkleAccumulator()
    hi = 0
    genesis: enc.Genesis | None = None
    keys: list[object] = []
    op_key = None
    orders: dict[int, dict[int, tuple[np.ndarray, ...]]] = {}
    committed: dict[int, np.ndarray] = {}
    metered: dict[int, np.ndarray] = {}
    balances: dict[int, int] = {}
    energy: dict[int, int] = {}
    expected = 0
    try:
        blocks = store.iter_blocks(conn)
        for first, n, lengths, data in blocks:
            if first != expected:
                raise LedgerInvalid(
                    expected, f"missing: the next stored block starts at entry {first}"
                )
            try:
                entries = store.unpack_block(n, lengths, data)
            except ValueError as e:
                raise LedgerInvalid(first, f"block malformed: {e}") from e
            for i, data_i in enumerate(entries):
                idx = first + i
                try:
                    kind, slot, r = enc.read_header(data_i)
                except enc.FormatError as e:
                    raise LedgerInvalid(idx, str(e)) from e
                rep.kinds[kind.name] = rep.kinds.get(kind.name, 0) + 1
                try:
                    if idx == 0:
                        if kind is not enc.Kind.GENESIS:
                            raise LedgerInvalid(0, "the first entry is not the GENESIS")
                        genesis = enc.read_genesis(r)
                        if meta.get("operator_public_key") != genesis.operator_public_key:
                            raise LedgerInvalid(0, "meta's operator key is not the GENESIS's")
                        if meta.get("ledger_id") != genesis.ledger_id:
                            raise LedgerInvalid(0, "meta's ledger id is not the GENESIS's")
                        op_key = load_public_key(genesis.operator_public_key)
                        keys = [load_public_key(k) for k in genesis.public_keys]
                        holder.append(_Signatures(genesis.public_keys, workers, batch))
                    else:
                        assert genesis is not None
                        _check_entry(
                            idx, kind, slot, r, genesis, keys, orders, committed, metered,
                            balances, energy, rep, holder[0],
                        )  # fmt: skip
                except enc.FormatError as e:
                    raise LedgerInvalid(idx, f"{kind.name} malformed: {e}") from e
                except ValueError as e:
                    raise LedgerInvalid(idx, f"{kind.name}: {e}") from e
                tree.append(leaf_hash(data_i))
                while hi < len(heads) and heads[hi][0] == tree.size:
                    _check_head(heads[hi], genesis, op_key, tree)
                    rep.heads += 1
                    hi += 1
                if hi < len(heads) and heads[hi][0] < tree.size:
                    raise LedgerInvalid(idx, f"a tree head of size {heads[hi][0]} is out of order")
            expected = first + n
    except sqlite3.DatabaseError as e:
        raise LedgerInvalid(None, f"database unreadable ({e})") from e
    rep.entries = tree.size
    if genesis is None:
        raise LedgerInvalid(None, "the ledger is empty")
    if hi < len(heads):
        raise LedgerInvalid(
            None,
            f"a tree head covers {heads[hi][0]} entries but the ledger has {tree.size}",
        )
    last = heads[-1][0] if heads else 0
    if last != tree.size:
        raise LedgerInvalid(last, "entries from here on are not covered by a signed tree head")
    rep.balances_minor = dict(sorted(balances.items()))
    rep.energy_wh = dict(sorted(energy.items()))
    rep.root = tree.root().hex()
    return rep


def _check_head(
    row: tuple[int, int, bytes, bytes],
    genesis: enc.Genesis | None,
    op_key: object,
    tree: MerkleAccumulator,
) -> None:
    size, slot, head, signature = row
    where = size - 1
    if genesis is None or op_key is None:
        raise LedgerInvalid(where, "a tree head before the GENESIS")
    try:
        ledger_id, h_size, h_slot, root = enc.read_tree_head(bytes(head))
    except enc.FormatError as e:
        raise LedgerInvalid(where, f"tree head of size {size} malformed: {e}") from e
    if ledger_id != genesis.ledger_id:
        raise LedgerInvalid(where, f"tree head of size {size} names another ledger")
    if h_size != size or h_slot != slot:
        raise LedgerInvalid(
            where, f"tree head of size {size}: stored size/slot differ from its bytes"
        )
    if root != tree.root():
        raise LedgerInvalid(
            where, f"tree head of size {size}: root {root.hex()[:16]}… is not the entries' root"
        )
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    assert isinstance(op_key, Ed25519PublicKey)
    if not verify(op_key, bytes(signature), bytes(head)):
        raise LedgerInvalid(where, f"tree head of size {size}: bad operator signature")


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= _REL * max(1.0, abs(a), abs(b))


def _check_entry(
    idx: int,
    kind: enc.Kind,
    slot: int,
    r: enc.Reader,
    genesis: enc.Genesis,
    keys: list[object],
    orders: dict[int, dict[int, tuple[np.ndarray, ...]]],
    committed: dict[int, np.ndarray],
    metered: dict[int, np.ndarray],
    balances: dict[int, int],
    energy: dict[int, int],
    rep: VerifyReport,
    signatures: _Signatures,
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    n_p = len(genesis.names)
    if kind is enc.Kind.GENESIS:
        raise ValueError("a second GENESIS")
    if kind is enc.Kind.ORDERS:
        message, signature = enc.read_orders(r)
        msg = enc.read_order_message(message)
        if not 0 <= msg.participant < n_p:
            raise ValueError(f"unknown participant {msg.participant}")
        signatures.add(idx, msg.participant, message, signature)
        if msg.ledger_id != genesis.ledger_id:
            raise ValueError("orders signed for another ledger")
        if msg.gate_slot != slot:
            raise ValueError(f"orders of gate {msg.gate_slot} filed under slot {slot}")
        for s in np.unique(msg.slot).tolist():
            sel = msg.slot == s
            book = orders.setdefault(int(s), {})
            mine = (msg.side[sel], msg.quantity_kwh[sel], msg.limit_price[sel])
            if msg.participant in book:
                # a later message for the same slot adds orders (they are all in the book)
                book[msg.participant] = tuple(
                    np.concatenate([a, b]) for a, b in zip(book[msg.participant], mine, strict=True)
                )
            else:
                book[msg.participant] = mine
        return
    if kind is enc.Kind.REJECTED:
        participant, reason, message, signature = enc.read_rejected(r)
        rep.rejected += 1
        if not reason:
            raise ValueError("a rejection without a reason")
        if 0 <= participant < n_p and len(signature) == 64:
            key = keys[participant]
            assert isinstance(key, Ed25519PublicKey)
            if verify(key, signature, message):
                try:
                    m = enc.read_order_message(message)
                except enc.FormatError:
                    return
                if m.ledger_id == genesis.ledger_id and m.participant == participant:
                    raise ValueError("valid, correctly signed orders were rejected")
        return
    if kind is enc.Kind.CLEARING:
        c = enc.read_clearing(r)
        book = orders.pop(slot, {})
        who = sorted(book)
        if who:
            exp_p = np.concatenate([np.full(book[p][0].shape[0], p) for p in who])
            exp_side = np.concatenate([book[p][0] for p in who])
            exp_q = np.concatenate([book[p][1] for p in who])
        else:
            exp_p = np.zeros(0, dtype=np.int64)
            exp_side = np.zeros(0, dtype=np.int8)
            exp_q = np.zeros(0)
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
        committed[slot] = c.committed_kwh
        return
    if kind is enc.Kind.METER:
        net = enc.read_meter(r)
        if net.shape[0] != n_p:
            raise ValueError(f"slot {slot}: meter readings of {net.shape[0]} participants")
        metered[slot] = net
        return
    postings: enc.Postings
    if kind is enc.Kind.SETTLEMENT:
        s = enc.read_settlement(r)
        if slot not in committed or slot not in metered:
            raise ValueError(f"slot {slot} settled before it was cleared and metered")
        dev = metered.pop(slot) - committed.pop(slot)
        if not np.array_equal(dev, s.deviation_kwh):
            raise ValueError(f"slot {slot}: deviation ≠ metered − committed")
        postings = s.postings
    elif kind is enc.Kind.CHARGES:
        postings = enc.read_charges(r)[3]
    else:
        postings = enc.read_period(r)[2]
    _check_postings(slot, postings, n_p, balances, energy)
    rep.postings += postings.n


_ACCOUNTS = {int(a) for a in enc.Account}


def _check_postings(
    slot: int, p: enc.Postings, n_p: int, balances: dict[int, int], energy: dict[int, int]
) -> None:
    bad = (p.account >= n_p) | ((p.account < 0) & ~np.isin(p.account, list(_ACCOUNTS)))
    if np.any(bad):
        raise ValueError(f"slot {slot}: a posting to an unknown account {int(p.account[bad][0])}")
    money = int(p.amount_minor.sum())
    if money:
        raise ValueError(f"slot {slot}: postings do not sum to zero ({money} minor units)")
    wh = int(p.energy_wh.sum())
    if wh:
        raise ValueError(f"slot {slot}: energy postings do not sum to zero ({wh} Wh)")
    for a, m, e in zip(
        p.account.tolist(), p.amount_minor.tolist(), p.energy_wh.tolist(), strict=True
    ):
        balances[a] = balances.get(a, 0) + m
        energy[a] = energy.get(a, 0) + e
