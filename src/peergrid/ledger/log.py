"""The append-only ledger: entries in order, a Merkle tree over them, signed tree heads.

`Ledger` is what a simulation run and (part 6) the live server append to:

- `submit_orders` verifies a participant's signature over its order message before the entry
  is appended; a bad signature is refused (`OrderRejected`) and the refusal is itself appended
  as a REJECTED entry, so the log shows what was submitted;
- `append` adds any other entry (clearing, meter readings, settlement with its postings);
- `sign_head` closes a block: the operator signs the tree head (size, slot, root), and the
  block's entries and the head are written to the store.

Appending is O(log n) per entry (`merkle.MerkleAccumulator`); nothing is read back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from peergrid.ledger import encoding as enc
from peergrid.ledger.keys import load_public_key, public_bytes, verify
from peergrid.ledger.merkle import MerkleAccumulator
from peergrid.ledger.store import LedgerStore, SqliteStore, pack_block

_LEAF_PREFIX = b"\x00"

#: Commit the SQLite transaction after this many blocks.
_COMMIT_EVERY = 2048


class OrderRejected(ValueError):
    """A submission whose signature did not verify (it was logged as REJECTED)."""

    def __init__(self, entry: int, participant: int, reason: str) -> None:
        super().__init__(f"orders of participant {participant} rejected: {reason}")
        self.entry = entry
        self.participant = participant
        self.reason = reason


def ledger_id_for(seed: int, scenario: str, start_unix_s: int) -> bytes:
    """A simulation's ledger id, derived from what identifies the run (16 bytes)."""
    h = hashlib.sha256(
        b"peergrid-ledger/v1" + seed.to_bytes(8, "big", signed=True) + scenario.encode("utf-8")
    )
    h.update(start_unix_s.to_bytes(8, "big", signed=True))
    return h.digest()[: enc.LEDGER_ID_SIZE]


def order_problem(
    keys: Sequence[Ed25519PublicKey],
    ledger_id: bytes,
    participant: int,
    message: bytes,
    signature: bytes,
) -> str | None:
    """Why the ledger refuses a submission (bad signature, another ledger, another
    participant, unknown participant), or None when it accepts it."""
    if not 0 <= participant < len(keys):
        return f"unknown participant {participant}"
    if not verify(keys[participant], signature, message):
        return "bad signature"
    tag = len(enc.ORDER_TAG)
    if message[tag : tag + enc.LEDGER_ID_SIZE] != ledger_id:
        return "signed for another ledger"
    named = message[tag + enc.LEDGER_ID_SIZE : tag + enc.LEDGER_ID_SIZE + 4]
    if int.from_bytes(named, "big") != participant:
        return "the message names another participant"
    return None


def check_orders(
    public_keys: Sequence[bytes],
    ledger_id: bytes,
    submissions: Sequence[tuple[int, bytes, bytes]],
) -> list[str | None]:
    """The ledger's verdict (`order_problem`) on each (participant, message, signature): what
    a worker process runs for `Ledger.submit_orders_batch(checked=...)`."""
    keys = [load_public_key(k) for k in public_keys]
    return [order_problem(keys, ledger_id, p, m, s) for p, m, s in submissions]


@dataclass(frozen=True)
class Snapshot:
    """Where a ledger stands after a signed head, enough to go on appending in another process
    (`Ledger.snapshot`, `Ledger.resume`): the live server keeps it in its database between
    market steps.

    Attributes:
        size: entries so far; frontier: the Merkle accumulator's perfect-subtree roots.
        n_blocks: blocks written; last_head: the last signed head's bytes (b"" before any).
        bytes_written: compressed bytes written so far.
    """

    size: int
    frontier: tuple[bytes, ...]
    n_blocks: int
    last_head: bytes
    bytes_written: int


class Ledger:
    """An open ledger to append to (module docstring)."""

    def __init__(
        self,
        store: LedgerStore,
        genesis: enc.Genesis,
        operator_key: Ed25519PrivateKey,
    ) -> None:
        self._store = store
        self.genesis = genesis
        self._operator = operator_key
        self._keys = [load_public_key(k) for k in genesis.public_keys]
        self._tree = MerkleAccumulator()
        self._pending: list[bytes] = []
        self._first = 0
        self._blocks: list[tuple[int, int, bytes, bytes]] = []
        self._heads: list[tuple[int, int, bytes, bytes]] = []
        self._n_blocks = 0
        self._last_head: tuple[int, bytes] | None = None
        self.bytes_written = 0

    @classmethod
    def create(
        cls,
        target: str | Path | LedgerStore,
        *,
        operator_key: Ed25519PrivateKey,
        genesis: enc.Genesis,
    ) -> Ledger:
        """A new ledger whose first entry is its GENESIS, in a new SQLite file at `target` or
        in an empty store.

        Raises:
            ValueError: the GENESIS names another operator key, or a malformed field.
        """
        op = public_bytes(operator_key)
        if genesis.operator_public_key != op:
            raise ValueError("the GENESIS names another operator key than the one signing")
        body = genesis.encode()
        st = target if isinstance(target, LedgerStore) else SqliteStore.create(target)
        st.put_meta(
            {
                "format_version": str(enc.FORMAT_VERSION).encode(),
                "ledger_id": genesis.ledger_id,
                "operator_public_key": op,
            }
        )
        ledger = cls(st, genesis, operator_key)
        ledger.append(enc.entry(enc.Kind.GENESIS, -1, body))
        return ledger

    @classmethod
    def resume(
        cls,
        store: LedgerStore,
        *,
        operator_key: Ed25519PrivateKey,
        genesis: enc.Genesis,
        snapshot: Snapshot,
    ) -> Ledger:
        """The ledger at `snapshot`, appending to `store` (which holds everything up to it).

        Raises:
            ValueError: the snapshot's frontier does not fit its size, or the GENESIS names
                another operator key.
        """
        if genesis.operator_public_key != public_bytes(operator_key):
            raise ValueError("the GENESIS names another operator key than the one signing")
        ledger = cls(store, genesis, operator_key)
        ledger._tree = MerkleAccumulator.from_state(snapshot.size, snapshot.frontier)
        ledger._first = snapshot.size
        ledger._n_blocks = snapshot.n_blocks
        if snapshot.last_head:
            ledger._last_head = (snapshot.size, snapshot.last_head)
        ledger.bytes_written = snapshot.bytes_written
        return ledger

    def snapshot(self) -> Snapshot:
        """Where the ledger stands (`Snapshot`).

        Raises:
            ValueError: entries were appended since the last signed head (sign one first).
        """
        if self._pending:
            raise ValueError("entries appended since the last signed head: sign a head first")
        size, frontier = self._tree.state()
        last = b"" if self._last_head is None else self._last_head[1]
        return Snapshot(size, frontier, self._n_blocks, last, self.bytes_written)

    def flush(self) -> None:
        """Write the blocks and heads signed so far to the store (one transaction)."""
        if self._blocks or self._heads:
            self._write()

    @property
    def size(self) -> int:
        """Entries appended so far."""
        return self._tree.size

    def root(self) -> bytes:
        """The root of the tree over everything appended so far."""
        return self._tree.root()

    @property
    def n_participants(self) -> int:
        return len(self._keys)

    def append(self, data: bytes) -> int:
        """Append one entry; returns its index."""
        self._tree.append(hashlib.sha256(_LEAF_PREFIX + data).digest())
        self._pending.append(data)
        return self._tree.size - 1

    def append_many(self, entries: Sequence[bytes]) -> int:
        """Append entries in order; returns the index of the first."""
        first = self._tree.size
        sha = hashlib.sha256
        self._tree.extend([sha(_LEAF_PREFIX + d).digest() for d in entries])
        self._pending.extend(entries)
        return first

    def submit_orders(
        self, participant: int, gate_slot: int, message: bytes, signature: bytes
    ) -> int:
        """Verify and append one participant's signed orders of one gate closure.

        Raises:
            OrderRejected: the signature does not verify, the message is malformed or names
                another participant or ledger (a REJECTED entry was appended).
        """
        reason = self._check_orders(participant, message, signature)
        if reason is None:
            return self.append(
                enc.entry(enc.Kind.ORDERS, gate_slot, enc.orders_body(message, signature))
            )
        index = self.append(
            enc.entry(
                enc.Kind.REJECTED,
                gate_slot,
                enc.rejected_body(participant, reason, message, signature),
            )
        )
        raise OrderRejected(index, participant, reason)

    def submit_orders_batch(
        self,
        gate_slot: int,
        participants: Sequence[int],
        messages: Sequence[bytes],
        signatures: Sequence[bytes],
        checked: Sequence[str | None] | None = None,
    ) -> list[int]:
        """`submit_orders` for many participants of one gate; a rejected submission is logged
        and skipped. Returns the participants whose orders were rejected.

        `checked`: the verdicts of `check_orders` on exactly these submissions, when the
        ledger's checks ran in worker processes (`engine.ledger` does, on every core); None
        checks them here."""
        rejected = []
        ok_entries = []
        head = enc.HEADER.pack(enc.MAGIC, enc.FORMAT_VERSION, int(enc.Kind.ORDERS), gate_slot)
        if checked is None:
            checked = [
                self._check_orders(p, m, s)
                for p, m, s in zip(participants, messages, signatures, strict=True)
            ]
        for p, m, s, reason in zip(participants, messages, signatures, checked, strict=True):
            if reason is None:
                ok_entries.append(head + len(m).to_bytes(4, "big") + m + s)
            else:
                if ok_entries:
                    self.append_many(ok_entries)
                    ok_entries = []
                self.append(
                    enc.entry(enc.Kind.REJECTED, gate_slot, enc.rejected_body(p, reason, m, s))
                )
                rejected.append(p)
        if ok_entries:
            self.append_many(ok_entries)
        return rejected

    def _check_orders(self, participant: int, message: bytes, signature: bytes) -> str | None:
        """Why a submission is refused, or None."""
        return order_problem(self._keys, self.genesis.ledger_id, participant, message, signature)

    def sign_head(self, slot: int) -> bytes:
        """Sign the tree head over everything appended so far and store the block; returns
        the signed head's bytes. A tree that has not grown since the last head keeps that
        head (one signed head per tree size)."""
        if self._last_head is not None and self._last_head[0] == self._tree.size:
            return self._last_head[1]
        head = enc.tree_head(self.genesis.ledger_id, self._tree.size, slot, self._tree.root())
        signature = self._operator.sign(head)
        if self._pending:
            lengths, data = pack_block(self._pending)
            self._blocks.append((self._first, len(self._pending), lengths, data))
            self.bytes_written += len(data) + len(lengths)
            self._first += len(self._pending)
            self._pending = []
        self._heads.append((self._tree.size, slot, head, signature))
        self._last_head = (self._tree.size, head)
        self._n_blocks += 1
        if len(self._heads) >= _COMMIT_EVERY:
            self._write()
        return head

    def _write(self) -> None:
        self._store.write(self._blocks, self._heads)
        self._blocks, self._heads = [], []

    def close(self, slot: int | None = None) -> None:
        """Sign a last head over entries appended since the last one, write, close."""
        if self._pending:
            self.sign_head(-1 if slot is None else slot)
        self._write()
        self._store.close()
