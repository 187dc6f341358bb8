"""Where the ledger lives: a `LedgerStore` — one SQLite file in a run directory
(`SqliteStore`), or the live platform's database (`server.ledger_store`, SQLite or PostgreSQL).

Three tables, whatever the backend:
- ``meta(key, value)``: the format version, the ledger id and the operator's public key (the
  GENESIS entry, inside the tree, is what `verify` trusts; meta only finds it);
- ``blocks(first, n, lengths, data)``: consecutive entries, stored together — `data` is the
  concatenation of entries ``first … first + n − 1``, zlib-compressed (level 1: it halves the
  file for ~10 µs per kB), and `lengths` their sizes as big-endian u32 — one row per signed
  tree head, so a year of 3.6 million entries is 35,040 rows. The Merkle leaves are the
  uncompressed entries;
- ``heads(tree_size, slot, head, signature)``: every signed tree head (`encoding.tree_head`).

Every stored value except meta is covered by the Merkle tree or by a signature, and meta is
checked against the GENESIS.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

_LEVEL = 1

#: A stored block: (first entry, number of entries, lengths, compressed data).
Block = tuple[int, int, bytes, bytes]
#: A stored tree head: (tree size, slot, head bytes, signature).
Head = tuple[int, int, bytes, bytes]


class StoreError(Exception):
    """The store could not be read or written (a damaged file, a lost connection)."""


@runtime_checkable
class LedgerStore(Protocol):
    """Persistence of a ledger: what `ledger.log.Ledger` writes and `verify` and the proofs
    read."""

    def put_meta(self, items: Mapping[str, bytes]) -> None:
        """Store the meta values (once, when the ledger is created)."""

    def meta(self) -> dict[str, bytes]:
        """Every meta value."""

    def write(self, blocks: Sequence[Block], heads: Sequence[Head]) -> None:
        """Append blocks and signed heads in one transaction, durably."""

    def iter_blocks(self) -> Iterator[Block]:
        """Every block in order of its first entry."""

    def heads(self) -> list[Head]:
        """Every signed tree head in order of its size."""

    def close(self) -> None:
        """Release the connection (the data stay)."""


SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE blocks (
  first INTEGER PRIMARY KEY, n INTEGER NOT NULL, lengths BLOB NOT NULL, data BLOB NOT NULL
);
CREATE TABLE heads (
  tree_size INTEGER PRIMARY KEY, slot INTEGER NOT NULL, head BLOB NOT NULL,
  signature BLOB NOT NULL
);
"""


class SqliteStore:
    """A ledger in its own SQLite file (a run directory's `ledger.sqlite`)."""

    def __init__(self, conn: sqlite3.Connection, writable: bool) -> None:
        self._conn = conn
        self._writable = writable

    @classmethod
    def create(cls, path: str | Path) -> SqliteStore:
        """A new, empty ledger file (it must not exist)."""
        p = Path(path)
        if p.exists():
            raise FileExistsError(f"{p}: a ledger already exists here")
        conn = sqlite3.connect(p)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(SCHEMA)
        return cls(conn, writable=True)

    @classmethod
    def open(cls, path: str | Path) -> SqliteStore:
        """An existing ledger file, read-only."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no ledger here")
        return cls(sqlite3.connect(f"file:{p}?mode=ro", uri=True), writable=False)

    def put_meta(self, items: Mapping[str, bytes]) -> None:
        self._conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", list(items.items()))
        self._conn.commit()

    def meta(self) -> dict[str, bytes]:
        try:
            return {k: bytes(v) for k, v in self._conn.execute("SELECT key, value FROM meta")}
        except sqlite3.DatabaseError as e:
            raise StoreError(f"not a readable ledger database ({e})") from e

    def write(self, blocks: Sequence[Block], heads: Sequence[Head]) -> None:
        self._conn.executemany(
            "INSERT INTO blocks (first, n, lengths, data) VALUES (?, ?, ?, ?)", blocks
        )
        self._conn.executemany(
            "INSERT INTO heads (tree_size, slot, head, signature) VALUES (?, ?, ?, ?)", heads
        )
        self._conn.commit()

    def iter_blocks(self) -> Iterator[Block]:
        try:
            cur = self._conn.execute("SELECT first, n, lengths, data FROM blocks ORDER BY first")
            while rows := cur.fetchmany(256):
                yield from rows
        except sqlite3.DatabaseError as e:
            raise StoreError(f"database unreadable ({e})") from e

    def heads(self) -> list[Head]:
        try:
            return list(
                self._conn.execute("SELECT tree_size, slot, head, signature FROM heads ORDER BY 1")
            )
        except sqlite3.DatabaseError as e:
            raise StoreError(f"not a readable ledger database ({e})") from e

    def close(self) -> None:
        if self._writable:
            # one self-contained file again: fold the write-ahead log back in
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.execute("PRAGMA journal_mode = DELETE")
        self._conn.close()


class MemoryStore:
    """A ledger held in memory: a replay's, or a live market step's blocks and heads on their
    way into the platform's database (`taken` hands them over)."""

    def __init__(self) -> None:
        self._meta: dict[str, bytes] = {}
        self._blocks: list[Block] = []
        self._heads: list[Head] = []
        self._new: tuple[list[Block], list[Head]] = ([], [])

    def put_meta(self, items: Mapping[str, bytes]) -> None:
        self._meta.update(items)

    def meta(self) -> dict[str, bytes]:
        return dict(self._meta)

    def write(self, blocks: Sequence[Block], heads: Sequence[Head]) -> None:
        self._blocks.extend(blocks)
        self._heads.extend(heads)
        self._new[0].extend(blocks)
        self._new[1].extend(heads)

    def taken(self) -> tuple[list[Block], list[Head]]:
        """The blocks and heads written since the last call."""
        out = self._new
        self._new = ([], [])
        return out

    def iter_blocks(self) -> Iterator[Block]:
        yield from self._blocks

    def heads(self) -> list[Head]:
        return list(self._heads)

    def close(self) -> None:
        """Nothing to release."""


def open_store(target: str | Path | LedgerStore) -> LedgerStore:
    """A store to read: a ledger file's path, or a store as it is."""
    if isinstance(target, LedgerStore):
        return target
    return SqliteStore.open(target)


def pack_block(entries: list[bytes]) -> tuple[bytes, bytes]:
    """(lengths, compressed data) of a block."""
    lengths = np.fromiter((len(e) for e in entries), dtype=">u4", count=len(entries))
    return lengths.tobytes(), zlib.compress(b"".join(entries), _LEVEL)


def unpack_block(n: int, lengths: bytes, data: bytes) -> list[bytes]:
    """The entries of a block.

    Raises:
        ValueError: lengths and data disagree, or the data do not decompress.
    """
    try:
        raw = zlib.decompress(data)
    except zlib.error as e:
        raise ValueError(f"block data do not decompress ({e})") from e
    if len(lengths) != 4 * n:
        raise ValueError(f"a block of {n} entries has {len(lengths)} bytes of lengths")
    sizes = np.frombuffer(lengths, dtype=">u4").astype(np.int64)
    ends = np.cumsum(sizes)
    if n and int(ends[-1]) != len(raw):
        raise ValueError(f"entry lengths sum to {int(ends[-1])} but the block has {len(raw)}")
    if not n and raw:
        raise ValueError("an empty block has data")
    starts = (ends - sizes).tolist()
    return [raw[a:b] for a, b in zip(starts, ends.tolist(), strict=True)]


def iter_entries(store: LedgerStore) -> Iterator[tuple[int, bytes]]:
    """Every entry in order, (index, bytes); a malformed block raises ValueError."""
    for first, n, lengths, data in store.iter_blocks():
        for i, e in enumerate(unpack_block(n, lengths, bytes(data))):
            yield first + i, e
