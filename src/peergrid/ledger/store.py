"""Where the ledger lives: one SQLite file (`ledger.sqlite` in a run directory).

Tables:
- ``meta(key, value)``: the format version, the ledger id and the operator's public key (the
  GENESIS entry, inside the tree, is what `verify` trusts; meta only finds it);
- ``blocks(first, n, lengths, data)``: consecutive entries, stored together — `data` is the
  concatenation of entries ``first … first + n − 1``, zlib-compressed (level 1: it halves the
  file for ~10 µs per kB), and `lengths` their sizes as big-endian u32 — one row per signed
  tree head, so a year of 3.6 million entries is 35,040 rows. The Merkle leaves are the
  uncompressed entries;
- ``heads(tree_size, slot, head, signature)``: every signed tree head (`encoding.tree_head`).

Every stored value except meta is covered by the Merkle tree or by a signature.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

_LEVEL = 1

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


def create(path: str | Path) -> sqlite3.Connection:
    """A new, empty ledger database (the file must not exist)."""
    p = Path(path)
    if p.exists():
        raise FileExistsError(f"{p}: a ledger already exists here")
    conn = sqlite3.connect(p)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.executescript(SCHEMA)
    return conn


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """An existing ledger, read-only."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no ledger here")
    return sqlite3.connect(f"file:{p}?mode=ro", uri=True)


def pack_block(entries: list[bytes]) -> tuple[bytes, bytes]:
    """(lengths, compressed data) of a block."""
    lengths = np.fromiter((len(e) for e in entries), dtype=">u4", count=len(entries))
    return lengths.tobytes(), zlib.compress(b"".join(entries), _LEVEL)


def unpack_block(n: int, lengths: bytes, data: bytes) -> list[bytes]:
    """The entries of a block.

    Raises:
        ValueError: lengths and data disagree.
    """
    try:
        data = zlib.decompress(data)
    except zlib.error as e:
        raise ValueError(f"block data do not decompress ({e})") from e
    if len(lengths) != 4 * n:
        raise ValueError(f"a block of {n} entries has {len(lengths)} bytes of lengths")
    sizes = np.frombuffer(lengths, dtype=">u4").astype(np.int64)
    ends = np.cumsum(sizes)
    if n and int(ends[-1]) != len(data):
        raise ValueError(f"entry lengths sum to {int(ends[-1])} but the block has {len(data)}")
    if not n and data:
        raise ValueError("an empty block has data")
    starts = (ends - sizes).tolist()
    return [data[a:b] for a, b in zip(starts, ends.tolist(), strict=True)]


def iter_blocks(conn: sqlite3.Connection) -> Iterator[tuple[int, int, bytes, bytes]]:
    """Every block in order: (first, n, lengths, data)."""
    cur = conn.execute("SELECT first, n, lengths, data FROM blocks ORDER BY first")
    while rows := cur.fetchmany(256):
        yield from rows


def iter_entries(conn: sqlite3.Connection) -> Iterator[tuple[int, bytes]]:
    """Every entry in order, (index, bytes); a malformed block raises ValueError."""
    for first, n, lengths, data in iter_blocks(conn):
        for i, e in enumerate(unpack_block(n, lengths, data)):
            yield first + i, e


def heads(conn: sqlite3.Connection) -> list[tuple[int, int, bytes, bytes]]:
    """Every signed tree head in order: (tree_size, slot, head bytes, signature)."""
    return list(conn.execute("SELECT tree_size, slot, head, signature FROM heads ORDER BY 1"))


def meta(conn: sqlite3.Connection) -> dict[str, bytes]:
    return {k: bytes(v) for k, v in conn.execute("SELECT key, value FROM meta")}
